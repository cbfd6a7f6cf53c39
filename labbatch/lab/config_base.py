"""What every part of the lab config model shares: strict models, the `allowed` hint, and
problems that name the field at fault below the model that found them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def allowed(text: str) -> dict:
    return {"allowed": text}


FieldPath = tuple[str, ...]


class FieldProblems(ValueError):
    """Problems found by a validator that spans fields, each with the path of the field at fault
    below the validated value, so that the loader names `pipelines.align.memory_mib` rather than
    the model that checked it (pydantic would place them all at the validator's own field)."""

    def __init__(self, problems: list[tuple[FieldPath, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(path)}: {problem}" if path else problem
                                   for path, problem in problems))
