"""Expanding `{inputs}`, `{input}`, `{shared_inputs}`, `{shared_input}`, `{output_dir}`,
`{work_dir}` and `{param:NAME}` in argv.

`{input}`/`{inputs}` are always the job's own inputs; for an array child, its sample's. Inputs
that every sample of an array request shares are only ever `{shared_input}` (the first) or
`{shared_inputs}` (all), so that a child can never run on a shared file by accident.

Expansion is per argument and never goes through a shell, so paths with spaces or quotes
reach the tool intact. `{{` and `}}` stand for literal braces; any other `{word}` or
`{word:...}` must be a known placeholder, so that a typo fails before stage-in instead of
reaching the tool as text.
"""

from __future__ import annotations

import re
from typing import Mapping

from labbatch_contract import runner_env
from labbatch_contract.outcome import ExitCode

from .errors import RunnerError

_TOKEN = re.compile(runner_env.PLACEHOLDER_TOKEN)
_SIMPLE = ("input", "shared_input", "output_dir", "work_dir")
_LISTS = {"{inputs}": "inputs", "{shared_inputs}": "shared_inputs"}


def expand_argv(
    template: list[str],
    *,
    inputs: list[str],
    parameters: Mapping[str, str],
    output_dir: str,
    work_dir: str,
    shared_inputs: list[str] = (),
) -> list[str]:
    lists = {"inputs": list(inputs), "shared_inputs": list(shared_inputs)}
    values = {"input": inputs[0] if inputs else None, "shared_input": shared_inputs[0] if shared_inputs else None,
              "output_dir": output_dir, "work_dir": work_dir}
    argv: list[str] = []
    for position, argument in enumerate(template):
        if argument in _LISTS:
            argv.extend(lists[_LISTS[argument]])
            continue

        def substitute(match: re.Match[str]) -> str:
            token = match.group(0)
            if token in ("{{", "}}"):
                return token[0]
            name, detail = match.group(1), match.group(2)
            where = f"argument {position} {argument!r}"
            if name == "param":
                if not detail:
                    raise RunnerError(ExitCode.CONTRACT, f"{where}: {{param}} needs a name, as in {{param:reference}}")
                if detail not in parameters:
                    known = ", ".join(sorted(parameters)) or "none"
                    raise RunnerError(ExitCode.CONTRACT, f"{where}: parameter {detail!r} is not set (parameters: {known})")
                return parameters[detail]
            if name in ("inputs", "shared_inputs"):
                raise RunnerError(ExitCode.CONTRACT, f"{where}: {{{name}}} must be a whole argument")
            if name in _SIMPLE and detail is None:
                value = values[name]
                if value is None:
                    what = "shared inputs" if name == "shared_input" else "inputs"
                    raise RunnerError(ExitCode.CONTRACT, f"{where}: {{{name}}} used but the job has no {what}")
                return value
            raise RunnerError(
                ExitCode.CONTRACT,
                f"{where}: unknown placeholder {token} (known: {{inputs}}, {{input}}, {{shared_inputs}}, "
                "{shared_input}, {output_dir}, {work_dir}, {param:NAME}; write {{ and }} for literal braces)",
            )

        argv.append(_TOKEN.sub(substitute, argument))
    return argv
