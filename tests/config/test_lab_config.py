"""Lab files: the shipped ones load, and every kind of bad file is refused with a precise message."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from labbatch.lab import instance_types
from labbatch_contract import names
from labbatch.lab.config import Lab
from labbatch.lab.loader import LabConfigError, load_lab, load_labs, parse_lab

from tests.conftest import LABS_DIR

EXAMPLE = yaml.safe_load((LABS_DIR / "example.yaml").read_text())
LINE = re.compile(r"^(?P<file>[^:]+): (?P<field>[^:]+): (?P<problem>.+)$")


def problems_of(data: dict) -> list[str]:
    with pytest.raises(LabConfigError) as exc:
        parse_lab(data, "labs/bad.yaml")
    for line in exc.value.problems:
        assert LINE.match(line), f"not file: field: problem -> {line}"
    return exc.value.problems


def changed(path: str, value) -> dict:
    """The example lab with one dotted path set to `value` (or removed when value is ...)."""
    data = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


def test_shipped_labs_load_and_differ():
    labs = {lab.name: lab for lab in load_labs(LABS_DIR)}
    assert set(labs) == {"example", "genomics-core"}
    example, core = labs["example"], labs["genomics-core"]
    assert set(example.pipelines) == {"fastq-stats", "align"}
    assert example.network.mode == "public" and example.compute.ami_id is None
    assert core.network.mode == "private-nat" and core.pools["default"].ami_id.startswith("ami-")
    assert list(example.pools) == ["default"] and list(core.pools) == ["default", "memory", "gpu"]
    assert len(core.pipelines) > len(example.pipelines)


def test_defaults_make_a_cheap_lab():
    lab = parse_lab({"name": "tiny", "pipelines": {"p": {"image": "demo", "command": ["true"]}}}, "tiny.yaml")
    assert lab.network.mode == "public"
    assert lab.compute.scratch.size_gib == 100 and lab.compute.scratch.iops == 3000
    assert lab.log_retention_days == 30


@pytest.mark.parametrize("path,value,field,words", [
    ("surprise", 1, "surprise", "unknown key (allowed: name, account"),
    ("compute.scratch.sizegib", 10, "compute.scratch.sizegib", "unknown key (allowed: size_gib, iops, throughput_mibps)"),
    ("pipelines.align.vcpus", "two", "pipelines.align.vcpus", "valid integer"),
    ("pipelines.align.vcpus", -2, "pipelines.align.vcpus", "(allowed: 1-192)"),
    ("compute.scratch.size_gib", 0, "compute.scratch.size_gib", "(allowed: 1-65,536 GiB (gp3))"),
    ("compute.scratch.size_gib", 65_537, "compute.scratch.size_gib", "(allowed: 1-65,536 GiB (gp3))"),
    ("compute.scratch.iops", 2_999, "compute.scratch.iops", "(allowed: 3,000-80,000 (gp3))"),
    ("compute.scratch.iops", 80_001, "compute.scratch.iops", "(allowed: 3,000-80,000 (gp3))"),
    ("compute.scratch.throughput_mibps", 124, "compute.scratch.throughput_mibps", "(allowed: 125-2,000 MiB/s (gp3))"),
    ("compute.scratch.throughput_mibps", 2_001, "compute.scratch.throughput_mibps", "(allowed: 125-2,000 MiB/s (gp3))"),
    ("name", "Smith_Lab", "name", "cannot name AWS resources"),
    ("name", "a-very-long-lab-name", "name", "at most 15 characters"),
    ("name", "double--hyphen", "name", "cannot name AWS resources"),
    ("network.mode", "vpn", "network.mode", "'public', 'private-nat' or 'existing'"),
    ("compute.spot_max_vcpus", -1, "compute.spot_max_vcpus", "(allowed: 0-100,000)"),
    ("pipelines.align.image", ..., "pipelines.align.image", "required but missing"),
    ("pipelines.align.image", "Not An Image!", "pipelines.align.image", "not an image reference"),
    ("pipelines.align.attempts", 0, "pipelines.align.attempts", "(allowed: 1-10 (AWS Batch retry attempts))"),
    ("pipelines.align.attempts", 11, "pipelines.align.attempts", "(allowed: 1-10 (AWS Batch retry attempts))"),
    ("compute.instance_types", ["m6i.large", "x9z.huge"], "compute.instance_types", "unknown instance type(s) x9z.huge"),
    ("compute.instance_types", ["m6i.large", "m7g.large"], "compute.instance_types", "mix x86_64 and arm64"),
    ("compute.ami_id", "ubuntu-22", "compute.ami_id", "not an AMI id"),
    ("log_retention_days", 10, "log_retention_days", "not a CloudWatch Logs retention"),
    ("account", "12345", "account", "not an AWS account id"),
    ("api.principals", ["arn:aws:iam::123:role/x"], "api.principals", "not an IAM principal ARN"),
    ("tags", {"aws:owner": "x"}, "tags", "reserved"),
    ("compute.spot_allocation_strategy", "BEST_FIT", "compute.spot_allocation_strategy", "SPOT_PRICE_CAPACITY_OPTIMIZED"),
])
def test_bad_field_is_refused_naming_file_field_and_allowed(path, value, field, words):
    problems = problems_of(changed(path, value))
    matching = [p for p in problems if p.startswith(f"labs/bad.yaml: {field}: ")]
    assert matching, problems
    assert any(words in p for p in matching), matching


def test_iops_above_500_per_gib_is_refused():
    data = changed("compute.scratch", {"size_gib": 10, "iops": 6000, "throughput_mibps": 125})
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: compute.scratch: ")
    assert "more than 500 per GiB" in problem and "at most 5,000" in problem


def test_throughput_above_quarter_of_iops_is_refused():
    data = changed("compute.scratch", {"size_gib": 500, "iops": 3000, "throughput_mibps": 1000})
    [problem] = problems_of(data)
    assert "at most 750" in problem


def test_pipeline_memory_that_no_instance_can_hold_is_refused():
    # An m6i.2xlarge has 32 GiB nominal; ECS registers less, so asking for all of it can never run.
    nominal = instance_types.lookup("m6i.2xlarge").memory_mib
    [problem] = problems_of(changed("pipelines.align.memory_mib", nominal))
    assert problem.startswith("labs/bad.yaml: pipelines.align.memory_mib: 2 vCPUs and 32,768 MiB fit no "
                              "configured instance type")
    usable = instance_types.lookup("m6i.2xlarge").job_memory_mib
    assert f"{usable:,} MiB" in problem


def test_pipeline_vcpus_that_no_instance_has_are_refused_naming_vcpus():
    data = changed("pipelines.align.vcpus", 64)
    data["compute"]["spot_max_vcpus"] = 512
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: pipelines.align.vcpus: 64 vCPUs and 4,096 MiB fit no configured")


def test_a_typo_in_one_section_and_a_pipeline_too_big_for_any_instance_are_reported_together():
    # Each alone would be caught; before issue 23 the memory came to light only once the typo was fixed.
    nominal = instance_types.lookup("m6i.2xlarge").memory_mib
    data = changed("pipelines.align.memory_mib", nominal)
    data["budget"] = {"monthly_usd": 50, "alert_at_pct": [90]}
    problems = problems_of(data)
    fields = [LINE.match(p).group("field") for p in problems]
    assert fields == ["budget.alert_at_pct", "pipelines.align.memory_mib"], problems
    assert "fit no configured instance type" in problems[1]


def test_a_broken_pipeline_does_not_hide_another_that_fits_no_instance():
    data = changed("pipelines.align.default_queue", "tomorrow")
    data["pipelines"]["fastq-stats"]["memory_mib"] = 64 * 1024
    data["region"] = "eu-west-1"
    data["availability_zones"] = ["us-east-1a"]
    data["audit"] = True
    problems = problems_of(data)
    fields = {LINE.match(p).group("field") for p in problems}
    assert fields == {"pipelines.align.default_queue", "pipelines.fastq-stats.memory_mib",
                      "availability_zones", "audit"}, problems
    assert any("us-east-1a are not zones of eu-west-1" in p for p in problems)


def test_cross_field_rules_wait_for_the_fields_they_read():
    # With compute itself wrong, whether a pipeline fits is unknowable, so only compute is reported.
    data = changed("pipelines.align.memory_mib", 500_000)
    data["compute"]["instance_types"] = ["m6i.huge"]
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: compute.instance_types: unknown instance type(s) m6i.huge")


def test_a_parameter_the_command_never_passes_is_refused():
    data = changed("pipelines.align.command", ["labbatch-align", "--reference", "{param:reference}", "--preset", "sr",
                                               "--output-dir", "{output_dir}", "{input}"])
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: pipelines.align.parameters.preset: declared, but the command never "
                              "passes it")
    assert "silently ignored" in problem and "(allowed: pass it in command as {param:preset}" in problem


def test_a_parameter_only_inside_escaped_braces_is_not_passed():
    data = changed("pipelines.fastq-stats.command", ["tool", "{{param:depth}}", "{input}"])
    data["pipelines"]["fastq-stats"]["parameters"] = {"depth": "10"}
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: pipelines.fastq-stats.parameters.depth: declared, but")


def test_a_parameter_the_command_passes_inside_an_argument_is_accepted():
    data = changed("pipelines.fastq-stats.command", ["tool", "--depth={param:depth}", "{input}"])
    data["pipelines"]["fastq-stats"]["parameters"] = {"depth": "10"}
    lab = parse_lab(data, "labs/example.yaml")
    assert lab.pipelines["fastq-stats"].parameters == {"depth": "10"}


def test_salmon_quant_passes_its_library_type():
    core = load_labs(LABS_DIR, only="genomics-core")[0]
    salmon = core.pipelines["salmon-quant"]
    assert salmon.parameters["libtype"] == "A"
    assert salmon.command[salmon.command.index("-l") + 1] == "{param:libtype}"


def test_pipeline_at_the_usable_memory_limit_is_accepted():
    usable = instance_types.lookup("m6i.2xlarge").job_memory_mib
    lab = parse_lab(changed("pipelines.align.memory_mib", usable), "labs/ok.yaml")
    assert lab.pipelines["align"].memory_mib == usable


def test_pipeline_vcpus_beyond_the_queue_are_refused():
    data = changed("compute.on_demand_max_vcpus", 1)
    data["pipelines"]["align"]["default_queue"] = "on-demand"
    assert any("exceed the on-demand queue's 1 max vCPUs" in p for p in problems_of(data))


def test_no_capacity_at_all_is_refused():
    data = changed("compute.on_demand_max_vcpus", 0)
    data["compute"]["spot_max_vcpus"] = 0
    assert any("no job could ever run" in p for p in problems_of(data))


def test_bad_parameter_name_is_refused():
    problems = problems_of(changed("pipelines.align.parameters", {"ref; rm -rf": None}))
    assert any("pipelines.align.parameters" in p and "not allowed" in p for p in problems)


def test_existing_network_needs_ids():
    problems = problems_of(changed("network", {"mode": "existing"}))
    assert any("mode existing needs vpc_id, subnet_ids, availability_zones" in p for p in problems)


def test_account_and_region_need_zones():
    data = changed("account", "123456789012")
    data["region"] = "eu-west-1"
    assert any("availability_zones must list the zones" in p for p in problems_of(data))


def test_zones_must_belong_to_region():
    data = changed("region", "eu-west-1")
    data["account"] = "123456789012"
    data["availability_zones"] = ["us-east-1a"]
    assert any("not zones of eu-west-1" in p for p in problems_of(data))


def test_every_problem_is_listed_at_once():
    data = changed("compute.scratch.iops", 1)
    data["pipelines"]["align"]["vcpus"] = -1
    data["surprise"] = True
    problems = problems_of(data)
    fields = {LINE.match(p).group("field") for p in problems}
    assert {"compute.scratch.iops", "pipelines.align.vcpus", "surprise"} <= fields


def test_no_pipelines_is_refused():
    problems = problems_of(changed("pipelines", {}))
    assert any(p.startswith("labs/bad.yaml: pipelines: ") for p in problems)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_duplicate_pipeline_in_yaml_is_refused(tmp_path):
    text = (LABS_DIR / "example.yaml").read_text()
    text = text.replace("pipelines:\n", "pipelines:\n  align:\n    image: demo\n    command: [x]\n", 1)
    with pytest.raises(LabConfigError) as exc:
        load_lab(write(tmp_path, "example.yaml", text))
    [problem] = exc.value.problems
    assert problem.startswith(f"{tmp_path}/example.yaml: line ") and "duplicate key 'align'" in problem


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(LabConfigError) as exc:
        load_lab(write(tmp_path, "x.yaml", "name: x\npipelines: [unclosed\n"))
    assert re.match(rf"^{tmp_path}/x.yaml: line \d+: invalid YAML", exc.value.problems[0])


def test_a_list_instead_of_a_mapping_is_refused(tmp_path):
    with pytest.raises(LabConfigError) as exc:
        load_lab(write(tmp_path, "x.yaml", "- a\n- b\n"))
    assert "expected a mapping of lab settings, got list" in exc.value.problems[0]


def test_file_name_must_match_lab_name(tmp_path):
    path = write(tmp_path, "other.yaml", (LABS_DIR / "example.yaml").read_text())
    with pytest.raises(LabConfigError) as exc:
        load_lab(path)
    assert "differs from the file name" in exc.value.problems[0]


def test_one_bad_lab_fails_the_whole_folder(tmp_path):
    write(tmp_path, "example.yaml", (LABS_DIR / "example.yaml").read_text())
    write(tmp_path, "broken.yaml", "name: broken\npipelines: {}\n")
    with pytest.raises(LabConfigError) as exc:
        load_labs(tmp_path)
    assert all(p.startswith(f"{tmp_path}/broken.yaml") for p in exc.value.problems)


def test_unknown_lab_selection_lists_the_labs():
    with pytest.raises(LabConfigError) as exc:
        load_labs(LABS_DIR, only="nope")
    assert "no such lab (allowed: example, genomics-core)" in exc.value.problems[0]


def test_labs_sharing_an_account_and_region_are_checked_against_batch_quotas(tmp_path):
    base = copy.deepcopy(EXAMPLE)
    base.update(account="123456789012", region="us-east-1", availability_zones=["us-east-1a"])
    for i in range(26):  # 26 labs x 2 = 52 compute environments, over the 50 quota
        data = dict(base, name=f"lab{i}")
        write(tmp_path, f"lab{i}.yaml", yaml.safe_dump(data))
    with pytest.raises(LabConfigError) as exc:
        load_labs(tmp_path)
    [problem] = exc.value.problems
    assert "account 123456789012 region us-east-1: 26 labs with 26 pools need 52 compute environments" in problem
    assert "at most 25 pools in all" in problem


def test_25_labs_in_one_region_fit(tmp_path):
    base = copy.deepcopy(EXAMPLE)
    base.update(account="123456789012", region="us-east-1", availability_zones=["us-east-1a"])
    for i in range(25):
        write(tmp_path, f"lab{i}.yaml", yaml.safe_dump(dict(base, name=f"lab{i}")))
    assert len(load_labs(tmp_path)) == 25


def test_longest_lab_name_keeps_bucket_names_valid():
    longest = "a" * 15
    Lab.model_validate(dict(EXAMPLE, name=longest))
    assert names.longest_bucket_name(longest) <= names.MAX_BUCKET_NAME


def test_usable_memory_is_below_what_ecs_registers_for_every_type():
    # AWS Batch docs: an 8 GiB m4.large registers 7,985 MiB (97.5%); the agent may keep 32 MiB more.
    for t in instance_types.INSTANCE_TYPES.values():
        registered = int(t.memory_mib * 7985 / 8192) - 32
        assert t.job_memory_mib <= registered, t.name


@pytest.mark.parametrize(("command", "use"), [
    (["fastq-stats", "{input}"], "none"),
    (["tool", "{inputs}", "{shared_inputs}"], "optional"),
    (["tool", "--ref={shared_input}", "{input}"], "required"),
    (["tool", "{shared_input}", "{shared_inputs}"], "required"),
])
def test_the_handler_learns_how_a_pipeline_uses_shared_inputs(command, use):
    from labbatch.lab.api_settings import handler_settings

    lab = parse_lab(changed("pipelines.fastq-stats.command", command), "labs/example.yaml")
    rendered = handler_settings(lab, "123456789012", "us-east-1")["pipelines"]["fastq-stats"]
    assert lab.pipelines["fastq-stats"].shared_inputs == use
    # "none" stays out of Lambda's 4 KB environment; the handler defaults to it.
    assert rendered.get("shared_inputs", "none") == use and ("shared_inputs" in rendered) == (use != "none")


def test_the_compliance_tier_is_opt_in_and_genomics_core_takes_it():
    example = parse_lab(EXAMPLE, "labs/example.yaml")
    assert (example.encryption, example.audit) == ("managed", False)
    core = load_labs(LABS_DIR, only="genomics-core")[0]
    assert (core.encryption, core.audit) == ("kms", True)
    assert parse_lab(changed("encryption", "kms"), "labs/example.yaml").encryption == "kms"


def test_unknown_encryption_is_refused_naming_what_is_allowed():
    [problem] = problems_of(changed("encryption", "sse-c"))
    assert problem.startswith("labs/bad.yaml: encryption: ") and "'managed' or 'kms'" in problem


def test_audit_without_the_labs_key_is_refused():
    [problem] = problems_of(changed("audit", True))
    assert "audit: true needs encryption: kms" in problem and "(allowed:" in problem


def test_escaped_braces_are_not_shared_inputs_and_list_placeholders_must_be_whole_arguments():
    escaped = parse_lab(changed("pipelines.fastq-stats.command", ["tool", "{{shared_input}}", "{input}"]),
                        "labs/example.yaml")
    assert escaped.pipelines["fastq-stats"].shared_inputs == "none"
    for command in (["tool", "--refs={shared_inputs}"], ["tool", "--in={inputs}"]):
        [problem] = problems_of(changed("pipelines.fastq-stats.command", command))
        assert "pipelines.fastq-stats.command" in problem and "must be a whole argument" in problem
