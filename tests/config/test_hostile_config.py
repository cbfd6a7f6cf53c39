"""Hostile lab config: names or values that would make invalid or colliding AWS resource names,
YAML built to explode, and files too big or too deep are refused at synth with a clear message."""

from __future__ import annotations

import copy
import inspect
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labbatch_contract import names
from labbatch.lab.config import LAB_NAME_RE, MAX_LAB_NAME, MAX_PIPELINE_NAME, PIPELINE_NAME_RE
from labbatch.lab.loader import (
    MAX_LAB_FILE_BYTES,
    LabConfigError,
    check_name_overlaps,
    load_lab,
    load_labs,
    parse_lab,
)

from tests.conftest import LABS_DIR

EXAMPLE = yaml.safe_load((LABS_DIR / "example.yaml").read_text())
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def lab_data(name: str = "example", **changes) -> dict:
    data = copy.deepcopy(EXAMPLE)
    data["name"] = name
    data.update(changes)
    return data


def refused(data: dict) -> str:
    with pytest.raises(LabConfigError) as caught:
        parse_lab(data, "labs/bad.yaml")
    return "\n".join(caught.value.problems)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_refused(path: Path) -> str:
    with pytest.raises(LabConfigError) as caught:
        load_lab(path)
    message = "\n".join(caught.value.problems)
    assert message.startswith(str(path)), message
    assert "Traceback" not in message
    return message


# --- names that cannot name AWS resources ------------------------------------------------

HOSTILE_NAMES = [
    "lab\n",                 # `$` in a Python regex also matches before a trailing newline
    "\u0430bc",              # Cyrillic а, looks like a
    "l\u0430b",
    "lab\u200b",             # zero-width space
    "ｌａｂ",                 # fullwidth
    "Lab", "LAB", "lab_1", "lab--x", "-lab", "lab-", "1lab", "lab.x", "lab x", "", "x" * (MAX_LAB_NAME + 1),
    "lab\u0000", "lab/../x",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_lab_names_that_cannot_name_resources_are_refused(name):
    message = refused(lab_data(name))
    assert "name: " in message and "cannot name AWS resources" in message


@pytest.mark.parametrize("name", ["align\n", "\u0430lign", "Align", "al_ign", "al--ign", "x" * (MAX_PIPELINE_NAME + 1)],
                         ids=repr)
def test_pipeline_names_that_cannot_name_a_job_definition_are_refused(name):
    data = lab_data()
    data["pipelines"] = {name: EXAMPLE["pipelines"]["fastq-stats"]}
    assert "cannot name a job definition" in refused(data)


@pytest.mark.parametrize("field, value", [
    ("account", "123456789012\n"),
    ("account", "١٢٣٤٥٦٧٨٩٠١٢"),        # Arabic-Indic digits are \d to Python, not to AWS
    ("region", "us-east-1\n"),
    ("region", "us-east-١"),
])
def test_account_and_region_are_ascii_and_whole(field, value):
    data = lab_data(account="123456789012", region="us-east-1", availability_zones=["us-east-1a"])
    data[field] = value
    assert f"{field}: " in refused(data)


def test_zones_must_be_whole_zone_names():
    data = lab_data(account="123456789012", region="us-east-1", availability_zones=["us-east-1a\n"])
    assert "not zones of us-east-1" in refused(data)


@pytest.mark.parametrize("key", ["preset\n", "pr\u0435set", "a;b", "$(x)", "--flag", "{output_dir}"], ids=repr)
def test_parameter_names_are_refused_whole(key):
    data = lab_data()
    data["pipelines"]["align"]["parameters"] = {"reference": None, key: "x"}
    assert "parameter name(s)" in refused(data)


@pytest.mark.parametrize("field, value", [
    ("api.principals", ["arn:aws:iam::123456789012:role/Lab\n"]),
    ("api.principals", ["arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:root"]),
    ("api.principals", ["arn:aws:iam::123456789012:role/Lаb"]),   # Cyrillic а: IAM names are ASCII
    ("compute.ami_id", "ami-0123456789abcdef0\n"),
    ("pipelines.fastq-stats.image", "public.ecr.aws/x/y:latest\n"),
    ("pipelines.fastq-stats.image", "public.ecr.aws/x/y:l\u0430test"),
])
def test_identifiers_with_trailing_newlines_or_lookalikes_are_refused(field, value):
    data = lab_data()
    *parents, last = field.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    assert refused(data)


# --- tags ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("project", "x\n"),
    ("project", "a\u0000b"),
    ("project", "a\u0007"),
    ("project", "a\tb"),
    ("project", "\u202eevil"),          # right-to-left override
    ("pro\nject", "x"),
    ("aws:createdBy", "x"),
    ("AWS:x", "x"),
    ("labbatch:lab", "another-lab"),    # would relabel the lab's resources for IAM tag conditions
    ("LabBatch:anything", "x"),
    ("", "x"),
    ("k" * 129, "x"),
    ("project", "v" * 257),
])
def test_tags_with_control_characters_or_reserved_keys_are_refused(key, value):
    message = refused(lab_data(tags={key: value}))
    assert "tags" in message


def test_unicode_letters_are_fine_in_tags():
    lab = parse_lab(lab_data(tags={"équipe": "génomique", "チーム": "解析"}), "labs/example.yaml")
    assert lab.tags["équipe"] == "génomique"


def test_too_many_tags_are_refused():
    message = refused(lab_data(tags={f"t{i}": "x" for i in range(50)}))
    assert "50 tags (allowed: at most 49" in message


def test_alert_emails_with_control_characters_are_refused():
    data = lab_data()
    data["alerts"] = {"emails": ["ops@example.org\n"]}
    assert "not an email address" in refused(data)


# --- YAML built to explode, and files too big or too deep --------------------------------

BILLION_LAUGHS = """\
name: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
tags: *i
"""


def test_billion_laughs_is_refused_at_once(tmp_path):
    started = time.monotonic()
    message = load_refused(write(tmp_path, "bomb", BILLION_LAUGHS))

    assert time.monotonic() - started < 2
    assert "alias *a is not allowed" in message and "line 3" in message


def test_any_alias_is_refused_even_a_merge_key(tmp_path):
    text = (LABS_DIR / "example.yaml").read_text().replace(
        "pipelines:\n", "defaults: &defaults\n  vcpus: 1\npipelines:\n  x:\n    <<: *defaults\n    image: demo\n"
        "    command: [\"true\"]\n", 1)
    assert "alias *defaults is not allowed" in load_refused(write(tmp_path, "example", text))


@pytest.mark.parametrize("depth", [33, 200, 100_000])
def test_deep_nesting_is_refused(tmp_path, depth):
    text = "name: deep\ntags: " + "[" * depth + "]" * depth + "\n"
    assert f"nested more than 32 levels deep" in load_refused(write(tmp_path, "deep", text))


def test_complex_keys_are_refused(tmp_path):
    text = "name: keys\n? [a, b]\n: x\npipelines: {}\n"
    assert "a list as a key" in load_refused(write(tmp_path, "keys", text))


def test_python_tags_are_refused(tmp_path):
    text = "name: tags\npipelines: !!python/object/apply:os.system ['true']\n"
    assert "invalid YAML" in load_refused(write(tmp_path, "tags", text))


def test_a_very_large_file_is_refused_without_parsing_it(tmp_path):
    path = write(tmp_path, "big", "name: big\n" + "# padding\n" * (MAX_LAB_FILE_BYTES // 10))
    assert "larger than 256 KiB" in load_refused(path)


def test_binary_and_non_utf8_files_are_refused(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"name: bin\n\xff\xfe\x00")
    assert "not UTF-8 text" in load_refused(path)
    path.write_bytes(b"name: bin\ntags: {a: \"\x07\"}\n")
    assert load_refused(path)


# --- resource names of two labs never collide --------------------------------------------

def _hyphenated(max_len: int, first: str = "ab", rest: str = "ab0") -> st.SearchStrategy[str]:
    """Valid names over a tiny alphabet, so that two draws often share prefixes and segments."""
    words = st.text(alphabet=rest, min_size=1, max_size=4)
    return st.builds(lambda head, tail, more: "-".join([head + tail, *more]), st.sampled_from(first),
                     st.text(alphabet=rest, max_size=3), st.lists(words, max_size=3)).filter(lambda n: len(n) <= max_len)


lab_names = _hyphenated(MAX_LAB_NAME)
pipeline_names = _hyphenated(MAX_PIPELINE_NAME, first="abjs", rest="ab0jobsptn")
# Every argument a names.py function takes besides the lab, with the values LabBatch uses.
ARGUMENTS = {
    "kind": names.BUCKET_KINDS,
    "account": ("123456789012",),
    "region": ("us-east-1",),
    "part": ("Storage", "Compute", "Api", "Operations"),
    "queue": ("spot", "on-demand"),
    "pool": ("default", "gpu", "high-mem"),
}


def resource_names(lab: str, pipelines: list[str]) -> dict[str, set[str]]:
    """name-giving function -> every name it gives this lab (each function is one namespace)."""
    given = {}
    for function_name, function in inspect.getmembers(names, inspect.isfunction):
        signature = inspect.signature(function)
        parameters = list(signature.parameters)
        if parameters[:1] != ["lab"] or signature.return_annotation not in (str, "str"):
            continue  # not a name (longest_bucket_name is a length)
        rest = parameters[1:]
        unknown = [p for p in rest if p not in ARGUMENTS and p != "pipeline"]
        assert not unknown, f"names.{function_name} takes {unknown}: add their values to ARGUMENTS"
        combos: list[dict] = [{}]
        for p in rest:
            values = pipelines if p == "pipeline" else ARGUMENTS[p]
            combos = [{**c, p: v} for c in combos for v in values]
        given[function_name] = {str(function(lab, **c)) for c in combos}
    return given


def hyphen_prefixed(a: str, b: str) -> bool:
    return a.startswith(f"{b}-") or b.startswith(f"{a}-")


@PROPERTY
@given(a=lab_names, b=lab_names, pipelines_a=st.lists(pipeline_names, min_size=1, max_size=3, unique=True),
       pipelines_b=st.lists(pipeline_names, min_size=1, max_size=3, unique=True))
def test_resource_names_of_two_labs_never_collide(a, b, pipelines_a, pipelines_b):
    assert all(LAB_NAME_RE.match(n) for n in (a, b))
    assert all(PIPELINE_NAME_RE.match(p) for p in pipelines_a + pipelines_b)
    assume(a != b and not hyphen_prefixed(a, b))
    names_a, names_b = resource_names(a, pipelines_a), resource_names(b, pipelines_b)

    for namespace in names_a:
        assert not names_a[namespace] & names_b[namespace], namespace
        # ...and neither lab's `labbatch-<lab>-*` IAM pattern reaches the other's names.
        assert not any(n.startswith(f"{names.PREFIX}-{a}-") for n in names_b[namespace])


@PROPERTY
@given(a=lab_names, rest=_hyphenated(MAX_LAB_NAME), pipeline=pipeline_names)
def test_a_lab_name_that_extends_another_with_a_hyphen_is_refused(a, rest, pipeline):
    b = f"{a}-{rest}"
    assume(len(b) <= MAX_LAB_NAME)
    lab_a = parse_lab(_minimal(a, [f"{rest}-{pipeline}"]), f"labs/{a}.yaml")
    lab_b = parse_lab(_minimal(b, [pipeline]), f"labs/{b}.yaml")
    # What the check prevents: the two labs would register the same job definition.
    assert names.job_definition(a, f"{rest}-{pipeline}") == names.job_definition(b, pipeline)

    (problem,) = check_name_overlaps([lab_a, lab_b])
    assert f"lab {b!r}: its name starts with lab {a!r} and a hyphen" in problem


def _minimal(name: str, pipelines: list[str], **extra) -> dict:
    return {"name": name, "pipelines": {p: {"image": "demo", "command": ["true"]} for p in pipelines}, **extra}


def test_overlapping_lab_names_are_refused_by_load_labs(tmp_path):
    for name in ("core", "core-rna"):
        write(tmp_path, name, yaml.safe_dump(_minimal(name, ["align"])))

    with pytest.raises(LabConfigError) as caught:
        load_labs(tmp_path)
    (problem,) = caught.value.problems
    assert "lab 'core-rna': its name starts with lab 'core' and a hyphen" in problem
    assert "rename one, or give them different account or region" in problem


def test_overlapping_lab_names_in_different_accounts_are_fine(tmp_path):
    env = {"region": "us-east-1", "availability_zones": ["us-east-1a"]}
    write(tmp_path, "core", yaml.safe_dump(_minimal("core", ["align"], account="111111111111", **env)))
    write(tmp_path, "core-rna", yaml.safe_dump(_minimal("core-rna", ["align"], account="222222222222", **env)))

    assert {lab.name for lab in load_labs(tmp_path)} == {"core", "core-rna"}


def test_lab_names_that_merely_share_a_prefix_are_fine(tmp_path):
    for name in ("core", "corerna", "cor"):
        write(tmp_path, name, yaml.safe_dump(_minimal(name, ["align"])))

    assert len(load_labs(tmp_path)) == 3
