"""The `labbatch` command in-process: sub-commands, --json output, exit codes, one-line errors."""

from __future__ import annotations

import json
import socket

import pytest

from labbatch.client.cli import COMMANDS, main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def submit(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, "submit", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    # Tables wrap at 80 columns when not on a terminal; keep job ids on one line.
    monkeypatch.setenv("COLUMNS", "200")


def test_submit_prints_the_job_as_json(local_lab, api, capsys):
    job = submit(capsys, "align", "s3://in/r1.fq", "s3://in/r2.fq", "--param", "reference=s3://ref/g.fa",
                 "-p", "mode=a=b", "--queue", "on-demand", "--vcpus", "2", "--memory-mib", "4096",
                 "--name", "first run", "--idempotency-key", "k-1")

    assert job["job_id"] in api.jobs and job["status"] == "SUBMITTED"
    request = api.requests[-1]
    assert json.loads(request["body"]) == {
        "pipeline": "align", "inputs": ["s3://in/r1.fq", "s3://in/r2.fq"],
        "parameters": {"reference": "s3://ref/g.fa", "mode": "a=b"}, "queue": "on-demand", "vcpus": 2,
        "memory_mib": 4096, "name": "first run"}
    assert request["headers"]["Idempotency-Key"] == "k-1"


def test_submit_asks_for_gpus(local_lab, api, capsys):
    submit(capsys, "fastq-stats", "s3://in/a.fq", "--gpus", "2")
    assert json.loads(api.requests[-1]["body"]) == {"pipeline": "fastq-stats", "inputs": ["s3://in/a.fq"], "gpus": 2}


def test_submit_without_json_says_what_was_submitted(local_lab, capsys):
    code, out, _ = run(capsys, "submit", "fastq-stats", "s3://in/a.fq")

    assert code == 0
    assert out.startswith("Submitted j-") and "s3://results/jobs/j-" in out


def test_submit_reads_samples_from_a_csv_sheet(local_lab, api, capsys, tmp_path):
    sheet = tmp_path / "samples.csv"
    sheet.write_text("name,inputs,min_quality\nS1,s3://in/1.fq;s3://in/1b.fq,20\nS2,s3://in/2.fq,\n\n")

    job = submit(capsys, "fastq-stats", "--samples", str(sheet))

    assert job["array_size"] == 2
    assert json.loads(api.requests[-1]["body"]) == {"pipeline": "fastq-stats", "inputs": [], "samples": [
        {"name": "S1", "inputs": ["s3://in/1.fq", "s3://in/1b.fq"], "parameters": {"min_quality": "20"}},
        {"name": "S2", "inputs": ["s3://in/2.fq"]}]}


def test_submit_reads_samples_from_json(local_lab, api, capsys, tmp_path):
    samples = [{"name": "S1", "inputs": ["s3://in/1.fq"], "parameters": {"k": "v"}}]
    (tmp_path / "samples.json").write_text(json.dumps({"samples": samples}))

    submit(capsys, "align", "s3://ref/shared.fa", "--samples", str(tmp_path / "samples.json"))

    assert json.loads(api.requests[-1]["body"])["samples"] == samples


@pytest.mark.parametrize(("argv", "words"), [
    (["submit", "fastq-stats", "s3://in/a.fq", "--param", "novalue"], "KEY=VALUE"),
    (["submit", "fastq-stats"], "at least one INPUT"),
    (["submit", "fastq-stats", "--samples", "missing.csv"], "cannot read --samples"),
])
def test_bad_command_lines_exit_2_with_one_line(local_lab, api, capsys, argv, words):
    code, out, err = run(capsys, *argv)

    assert code == 2
    assert err.startswith("labbatch: usage: ") and words in err and err.count("\n") == 1
    assert api.requests == []


def test_bad_sample_sheet_names_the_row_as_in_the_file(local_lab, capsys, tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("name,inputs\nS1,s3://in/1.fq\n\n,s3://in/2.fq\nS4,\n")

    code, _, err = run(capsys, "submit", "fastq-stats", "--samples", str(sheet))
    assert code == 2 and "row 4: the sample has no name" in err  # the blank row 3 counts

    sheet.write_text("name,inputs\nS1,s3://in/1.fq\nS4,\n")
    code, _, err = run(capsys, "submit", "fastq-stats", "--samples", str(sheet))
    assert code == 2 and "row 3 (sample S4): no input" in err


def test_an_api_refusal_of_a_sample_names_its_row_and_name_not_an_index(local_lab, api, capsys, tmp_path):
    sheet = tmp_path / "plate.csv"
    sheet.write_text("name,inputs\nS1,s3://in/1.fq\n\nS2,s3://in/2.fq;s3://elsewhere/2b.fq\n")

    code, out, err = run(capsys, "submit", "fastq-stats", "--samples", str(sheet))

    assert code == 1 and out == ""
    assert err == ("labbatch: input_outside_lab: row 4 of plate.csv (sample S2).inputs[1]: s3://elsewhere/2b.fq "
                   "is not in this lab's buckets\n")
    assert "samples[" not in err


def test_argparse_errors_return_2_instead_of_exiting(capsys):
    code, _, err = run(capsys, "submit", "fastq-stats", "--vcpus", "two")

    assert code == 2 and "invalid int value" in err


def test_api_refusal_exits_1_with_code_message_and_details_on_one_line(local_lab, api, capsys):
    code, out, err = run(capsys, "submit", "fastq-stats", "s3://in/a.fq", "--vcpus", "64")

    assert code == 1 and out == ""
    # Details the message says already (vcpus, 64) are not repeated after it.
    assert err == "labbatch: does_not_fit: 64 vCPUs do not fit this lab's instance types (available=8)\n"
    assert api.jobs == {}


def test_api_refusal_with_json_also_prints_the_error_body(local_lab, capsys):
    code, out, err = run(capsys, "submit", "nope", "s3://in/a.fq", "--json")

    assert code == 1
    assert json.loads(out)["error"]["code"] == "unknown_pipeline"
    assert err == "labbatch: unknown_pipeline: no pipeline 'nope' (allowed=[\"fastq-stats\", \"align\"])\n"


def test_status_prints_the_record(local_lab, capsys):
    job_id = submit(capsys, "fastq-stats", "s3://in/a.fq")["job_id"]

    code, out, _ = run(capsys, "status", job_id, "--json")
    assert code == 0 and json.loads(out)["job_id"] == job_id

    code, out, _ = run(capsys, "status", job_id)
    assert code == 0 and job_id in out and "SUBMITTED" in out and "local-scientist" in out


def test_status_of_unknown_job_exits_1(local_lab, capsys):
    code, _, err = run(capsys, "status", "j-00000000000000000000000042")

    assert code == 1
    assert err.startswith("labbatch: job_not_found: no job j-00000000000000000000000042")


def test_list_filters_and_follows_pages_with_all(local_lab, api, capsys):
    ids = [submit(capsys, "fastq-stats" if i % 2 else "align", "s3://in/a.fq")["job_id"] for i in range(4)]

    code, out, _ = run(capsys, "list", "--pipeline", "align", "--json")
    assert code == 0 and [j["job_id"] for j in json.loads(out)["jobs"]] == [ids[2], ids[0]]
    assert api.requests[-1]["queryStringParameters"] == {"pipeline": "align"}

    code, out, _ = run(capsys, "list", "--all", "--limit", "1", "--json")
    assert code == 0 and [j["job_id"] for j in json.loads(out)["jobs"]] == list(reversed(ids))

    code, out, err = run(capsys, "list", "--limit", "1")
    assert code == 0 and ids[3] in out and ids[0] not in out and "--all" in err


def test_cancel_then_cancel_again_is_a_conflict(local_lab, capsys):
    job_id = submit(capsys, "fastq-stats", "s3://in/a.fq")["job_id"]

    code, out, _ = run(capsys, "cancel", job_id)
    assert code == 0 and job_id in out

    code, _, err = run(capsys, "cancel", job_id, "--json")
    assert code == 1 and err.startswith(f"labbatch: job_finished: job {job_id} already FAILED")


def test_pipelines_as_table_and_json(local_lab, capsys):
    code, out, _ = run(capsys, "pipelines")
    assert code == 0 and "fastq-stats" in out and "align" in out and "reference*" in out

    code, out, _ = run(capsys, "pipelines", "--json")
    assert code == 0 and [p["name"] for p in json.loads(out)["pipelines"]] == ["fastq-stats", "align"]


def test_wait_exits_0_when_a_running_job_succeeds(local_lab, api, capsys):
    job_id = submit(capsys, "fastq-stats", "s3://in/a.fq")["job_id"]
    api.scripts[job_id] = [{"status": "RUNNING"}, {"status": "RUNNING"}, {"status": "SUCCEEDED"}]

    code, out, _ = run(capsys, "wait", job_id, "--interval", "0.01", "--json")

    assert code == 0
    assert [j["status"] for j in json.loads(out)["jobs"]] == ["SUCCEEDED"]
    assert api.scripts[job_id] == []


def test_wait_shows_progress_over_array_children_and_exits_1_when_one_failed(local_lab, api, capsys, tmp_path):
    sheet = tmp_path / "samples.json"
    sheet.write_text(json.dumps([{"name": f"s{i}", "inputs": [f"s3://in/{i}.fq"]} for i in range(4)]))
    plain = submit(capsys, "fastq-stats", "s3://in/a.fq")["job_id"]
    array = submit(capsys, "fastq-stats", "--samples", str(sheet))["job_id"]
    api.scripts[plain] = [{"status": "RUNNING"}, {"status": "SUCCEEDED"}]
    api.scripts[array] = [{"status": "RUNNING", "children": {"RUNNING": 4}},
                          {"status": "RUNNING", "children": {"SUCCEEDED": 2, "RUNNING": 2}},
                          {"status": "FAILED", "children": {"SUCCEEDED": 3, "FAILED": 1}}]

    code, out, err = run(capsys, "wait", plain, array, "--interval", "0.01")

    assert code == 1
    assert f"{array} FAILED (1 failed)" in err and "4/4" in err
    assert f"{plain} SUCCEEDED" in err and "1/1" in err
    assert plain in out and array in out


def test_wait_timeout_exits_124(local_lab, capsys):
    job_id = submit(capsys, "fastq-stats", "s3://in/a.fq")["job_id"]

    code, _, err = run(capsys, "wait", job_id, "--interval", "0.02", "--timeout", "0.1", "--json")

    assert code == 124
    assert err.startswith("labbatch: timeout: 1 job(s) not finished after 0.1 s")


def test_unreachable_endpoint_is_one_line_and_exit_1(labbatch_home, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    code, out, err = run(capsys, "list", "--endpoint", f"http://127.0.0.1:{port}", "--region", "eu-west-1")

    assert code == 1 and out == ""
    assert err == f"labbatch: unreachable: cannot reach http://127.0.0.1:{port}: Connection refused\n"


def test_no_lab_anywhere_says_how_to_name_one(labbatch_home, capsys):
    code, _, err = run(capsys, "pipelines")

    assert code == 1
    assert err.startswith("labbatch: no_endpoint: no lab to talk to: pass --endpoint URL")


def test_no_sub_command_prints_help_and_exits_2(capsys):
    code, _, err = run(capsys)

    assert code == 2 and "submit" in err and "wait" in err


def test_every_sub_command_is_registered_once_in_the_table():
    names = [command.name for command in COMMANDS]

    assert names == ["submit", "status", "list", "cancel", "wait", "pipelines", "why", "upload", "results", "download",
                     "report", "logs", "doctor", "tes-proxy", "token", "engine-config", "local", "demo", "cost"]
    assert len(set(names)) == len(names)


def test_a_narrow_terminal_never_cuts_or_folds_ids_and_uris(local_lab, api, capsys, monkeypatch):
    job_id = submit(capsys, "fastq-stats", "s3://in/a.fq", "--name", "a rather long job name")["job_id"]
    api.jobs[job_id].update(status="FAILED", failure="out_of_memory", output_prefix=(
        f"s3://labbatch-example-results-123456789012-us-east-1/jobs/{job_id}/"))
    monkeypatch.setenv("COLUMNS", "40")

    for command in (["status", job_id], ["list"]):
        code, out, _ = run(capsys, *command)
        assert code == 0
        assert "…" not in out
        assert any(job_id in line for line in out.splitlines()), out
        if command[0] == "status":
            assert any(api.jobs[job_id]["output_prefix"] in line for line in out.splitlines()), out
