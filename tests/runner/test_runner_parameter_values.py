"""Hostile parameter VALUES reach the tool literally: the runner expands placeholders only in
the pipeline's own argv, never inside a value substituted into it, and never through a shell."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labbatch_runner.placeholders import expand_argv

HOSTILE_VALUES = [
    "{output_dir}",
    "{work_dir}/../../etc/passwd",
    "{param:x}",
    "{param:other}",
    "{inputs}",
    "{input}",
    "{{output_dir}}",
    "{unknown}",
    "a; rm -rf /",
    "$(id)",
    "`id`",
    "line\nnext",
    "--flag=1",
    "-o /etc/x",
    "' \" \\",
    "",
]


def _expand(template, parameters):
    return expand_argv(template, inputs=["/in/a.fq"], parameters=parameters, output_dir="/out", work_dir="/work")


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_a_parameter_value_is_passed_through_literally(value):
    argv = _expand(["tool", "{param:x}", "--x={param:x}", "{output_dir}"], {"x": value, "other": "SECRET"})

    assert argv == ["tool", value, f"--x={value}", "/out"]


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(alphabet=st.sampled_from("{}:_param xoutput_dir$;`\n-"), max_size=40) | st.text(max_size=40))
def test_any_parameter_value_is_one_literal_argument(value):
    argv = _expand(["tool", "{param:x}", "pre{param:x}post"], {"x": value, "other": "SECRET"})

    assert argv == ["tool", value, f"pre{value}post"]
