"""Reading lab files: YAML in, validated `Lab` models out, or every problem at once.

A wrong file is refused whole, with each problem as `file: field: problem (allowed: ...)`,
so nothing is ever synthesized from a half-valid lab.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from labbatch.lab.api_settings import SettingsTooLarge, check_size
from labbatch.lab.instance_prices import NoPrice
from labbatch.lab.batch_layout import layout
from labbatch.lab.config import FieldProblems, Lab, Pipeline, cross_field_problems

# AWS Batch quotas per account and Region; a lab uses up to two of each per pool.
MAX_COMPUTE_ENVIRONMENTS = 50
MAX_JOB_QUEUES = 50
COMPUTE_ENVIRONMENTS_PER_LAB = 2
JOB_QUEUES_PER_LAB = 2


class LabConfigError(Exception):
    """One or more problems in lab files; `problems` holds one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid lab configuration:\n" + "\n".join(f"  {p}" for p in problems))


# A lab file is a few KB; these bound what a hostile or broken one can cost to read.
MAX_LAB_FILE_BYTES = 256 * 1024
MAX_YAML_DEPTH = 32


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a lab file with a duplicated pipeline must fail instead.

    Aliases are refused (`*name` can expand a small file exponentially: "billion laughs"), and
    so is nesting deeper than any lab file needs (PyYAML composes recursively).
    """

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} is not allowed in lab files (write the value out; "
                "aliases can expand a small file into a huge one)", event.start_mark)
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a {type(key).__name__} as a key (allowed: plain keys)", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _field_path(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _allowed_for(loc: tuple, model: type[BaseModel]) -> str | None:
    """What the schema allows at `loc`, for errors pydantic words without it (wrong type, unknown key)."""
    current: Any = model
    field = None
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        else:
            # Inside a dict or list: step into the value type.
            args = getattr(current, "__args__", ())
            current = args[-1] if args else None
    if field is not None and isinstance(field.json_schema_extra, dict):
        return field.json_schema_extra.get("allowed")
    return None


def _known_keys(loc: tuple, model: type[BaseModel]) -> list[str]:
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        else:
            args = getattr(current, "__args__", ())
            current = args[-1] if args else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _line(source: str, loc: tuple, message: str) -> str:
    allowed = _allowed_for(loc, Lab)
    if allowed and "(allowed:" not in message:
        message += f" (allowed: {allowed})"
    return f"{source}: {_field_path(loc)}: {message}"


def _format(source: str, err: dict) -> list[str]:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return [f"{source}: {_field_path(loc)}: unknown key (allowed: {', '.join(_known_keys(loc, Lab))})"]
    if kind == "missing":
        return [f"{source}: {_field_path(loc)}: required but missing"]
    error = err.get("ctx", {}).get("error")
    if isinstance(error, FieldProblems):
        return [_line(source, loc + path, problem) for path, problem in error.problems]
    return [_line(source, loc, err["msg"].removeprefix("Value error, "))]


def _validated_fields(data: dict, errors: list[dict]) -> dict[str, Any]:
    """Lab's fields that validated in a file that failed elsewhere, and every pipeline that did.

    A field without errors is validated again by its type alone: the whole-file pass already ran
    its validators, and this gives the same value (YAML's "8" as the int 8, say)."""
    failed = {err["loc"][0] for err in errors if err["loc"]}
    fields: dict[str, Any] = {}
    for name, field in Lab.model_fields.items():
        if name not in failed and name in data:
            fields[name] = TypeAdapter(Annotated[field.annotation, field]).validate_python(data[name])
        elif name not in failed and not field.is_required():
            fields[name] = field.get_default(call_default_factory=True)
    if "pipelines" in failed and isinstance(data.get("pipelines"), dict):
        fields["pipelines"] = {}
        for name, pipeline in data["pipelines"].items():
            try:
                fields["pipelines"][name] = Pipeline.model_validate(pipeline)
            except ValidationError:
                pass  # its own errors are reported already
    return fields


def _problems(source: str, data: dict, errors: list[dict]) -> list[str]:
    lines = [line for err in errors for line in _format(source, err)]
    if any(err["loc"] for err in errors):
        # Some field failed, so Lab's cross-field rules did not run: run them on what validated,
        # lest a typo in one section hide (until fixed) a pipeline that fits no instance type.
        lines += [_line(source, path, problem)
                  for path, problem in cross_field_problems(_validated_fields(data, errors))]
    return lines


def parse_lab(data: Any, source: str) -> Lab:
    """Validate already-parsed YAML data; raise LabConfigError listing every problem."""
    if not isinstance(data, dict):
        raise LabConfigError([f"{source}: (top level): expected a mapping of lab settings, "
                              f"got {type(data).__name__}"])
    try:
        lab = Lab.model_validate(data)
    except ValidationError as exc:
        raise LabConfigError(_problems(source, data, exc.errors())) from None
    try:
        check_size(lab)
    except SettingsTooLarge as exc:
        raise LabConfigError([f"{source}: pipelines: {exc}"]) from None
    except NoPrice as exc:
        raise LabConfigError([f"{source}: {exc}"]) from None
    return lab


def load_lab(path: Path) -> Lab:
    source = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_LAB_FILE_BYTES + 1)
        if len(raw) > MAX_LAB_FILE_BYTES:
            raise LabConfigError([f"{source}: larger than {MAX_LAB_FILE_BYTES // 1024} KiB (allowed: a lab file "
                                  "of a few KB; is this the right file?)"])
        data = yaml.load(raw.decode("utf-8"), Loader=_UniqueKeyLoader)
    except OSError as exc:
        raise LabConfigError([f"{source}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise LabConfigError([f"{source}: not UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise LabConfigError([f"{source}: {where}invalid YAML: {problem}"]) from None
    lab = parse_lab(data, source)
    if lab.name != path.stem:
        raise LabConfigError([f"{source}: name: {lab.name!r} differs from the file name "
                              f"(allowed: {path.stem!r}, so that -c lab=NAME finds it)"])
    return lab


def check_shared_quotas(labs: list[Lab]) -> list[str]:
    """Labs deployed to the same account and Region share Batch's per-Region quotas."""
    by_env: dict[tuple[str, str], list[Lab]] = defaultdict(list)
    for lab in labs:
        if lab.account and lab.region:
            by_env[(lab.account, lab.region)].append(lab)
    problems = []
    for (account, region), env_labs in sorted(by_env.items()):
        plans = [layout(lab) for lab in env_labs]
        ces = sum(len(plan.environments) for plan in plans)
        queues = sum(len(plan.queues) for plan in plans)
        if ces > MAX_COMPUTE_ENVIRONMENTS or queues > MAX_JOB_QUEUES:
            pools = sum(len(lab.pools) for lab in env_labs)
            problems.append(
                f"account {account} region {region}: {len(env_labs)} labs with {pools} pools need {ces} compute "
                f"environments and {queues} job queues (allowed: at most {MAX_COMPUTE_ENVIRONMENTS} of each per "
                f"account and Region, up to {COMPUTE_ENVIRONMENTS_PER_LAB} per pool, so at most "
                f"{MAX_COMPUTE_ENVIRONMENTS // COMPUTE_ENVIRONMENTS_PER_LAB} pools in all; "
                f"labs: {', '.join(sorted(lab.name for lab in env_labs))})")
    return problems


def _could_share_region(a: Lab, b: Lab) -> bool:
    """Two labs may land in one account and Region unless their files say otherwise."""
    return all(x is None or y is None or x == y for x, y in ((a.account, b.account), (a.region, b.region)))


def check_name_overlaps(labs: list[Lab]) -> list[str]:
    """Every resource is `labbatch-<lab>-<rest>` (names.py), and the API's IAM grants reach
    `labbatch-<lab>-*`. Lab `a` beside lab `a-b` would share names (a's pipeline `b-x` and a-b's
    pipeline `x` are both job definition `labbatch-a-b-x`) and a's grants would cover a-b's job
    definitions. Refusing one lab name followed by `-` as the start of another rules out both."""
    problems = []
    for a in labs:
        for b in labs:
            if a is not b and b.name.startswith(f"{a.name}-") and _could_share_region(a, b):
                problems.append(
                    f"lab {b.name!r}: its name starts with lab {a.name!r} and a hyphen, so its AWS resource "
                    f"names (labbatch-{b.name}-...) fall inside lab {a.name}'s (labbatch-{a.name}-*) when both are "
                    "deployed to one account and Region (allowed: rename one, or give them different "
                    "account or region)")
    return problems


def load_labs(directory: Path, only: str | None = None) -> list[Lab]:
    """Every lab in `directory` (all validated, so shared quotas are checked), or just `only`."""
    paths = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not paths:
        raise LabConfigError([f"{directory}: no lab files (*.yaml)"])
    labs, problems = [], []
    for path in paths:
        try:
            labs.append(load_lab(path))
        except LabConfigError as exc:
            problems.extend(exc.problems)
    seen: dict[str, int] = defaultdict(int)
    for lab in labs:
        seen[lab.name] += 1
    problems += [f"{directory}: lab {n!r} is defined {c} times" for n, c in seen.items() if c > 1]
    problems += check_shared_quotas(labs)
    problems += check_name_overlaps(labs)
    if problems:
        raise LabConfigError(problems)
    if only is not None:
        chosen = [lab for lab in labs if lab.name == only]
        if not chosen:
            raise LabConfigError([f"-c lab={only}: no such lab (allowed: {', '.join(sorted(l.name for l in labs))})"])
        return chosen
    return labs


def _project_labs() -> Path:
    """The project's own lab files, what `labbatch local`, `demo`, `cost` and `report` read unless
    told otherwise: labs/ of a checkout, or where a wheel installs them (pyproject's data-files)."""
    checkout = Path(__file__).resolve().parents[2] / "labs"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "labbatch" / "labs"


DEFAULT_LABS_DIR = _project_labs()


def load_one_lab(labs_dir: Path, name: str) -> tuple[Lab | None, str | None]:
    """The lab, or a one-line reason why not (every problem of a bad file, joined)."""
    try:
        return load_labs(labs_dir, only=name)[0], None
    except LabConfigError as exc:
        return None, "; ".join(exc.problems)
