"""Finding a lab's API: --endpoint, $LABBATCH_ENDPOINT, a running local lab, the deployed stack's output."""

from __future__ import annotations

import json
import socket

import boto3
import pytest
from moto import mock_aws

from labbatch.client.cli import main
from labbatch.client.sdk import LabBatchError, local_state_path, resolve_connection

DEPLOYED_URL = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod/"


def _closed_port_url() -> str:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{unused.getsockname()[1]}"


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials and no shared config, so nothing reaches a real account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_state_file_lives_under_labbatch_home(labbatch_home):
    assert local_state_path("example") == labbatch_home / "local" / "example.json"


def test_running_local_lab_is_found_with_its_credentials_and_region(local_lab, labbatch_home):
    connection = resolve_connection()

    assert connection.endpoint == local_lab.url
    assert connection.region == "eu-central-1"
    assert connection.credentials.access_key == "AKIACLIENTTESTKEY001"
    assert connection.found_by == "the running local lab"


def test_cli_talks_to_the_local_lab_with_no_flags(local_lab, api, capsys):
    assert main(["pipelines", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pipelines"]
    assert api.requests[-1]["requestContext"]["identity"]["accessKey"] == "AKIACLIENTTESTKEY001"


def test_endpoint_of_a_local_lab_signs_with_its_credentials(local_lab, api, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTTHELOCALKEY01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")

    assert main(["pipelines", "--json", "--endpoint", local_lab.url + "/"]) == 0
    assert api.requests[-1]["requestContext"]["identity"]["accessKey"] == "AKIACLIENTTESTKEY001"


def test_labbatch_endpoint_environment_variable_comes_before_local_labs(local_lab, write_local_state, monkeypatch):
    monkeypatch.setenv("LABBATCH_ENDPOINT", DEPLOYED_URL)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")

    connection = resolve_connection()

    assert (connection.endpoint, connection.region, connection.found_by) == (
        DEPLOYED_URL, "eu-west-1", "LABBATCH_ENDPOINT")
    assert connection.credentials is None  # the user's own credential chain signs


def test_endpoint_flag_comes_before_the_environment(local_lab, monkeypatch):
    monkeypatch.setenv("LABBATCH_ENDPOINT", DEPLOYED_URL)

    assert resolve_connection(endpoint=local_lab.url).endpoint == local_lab.url


def test_several_running_local_labs_need_lab(local_lab, write_local_state):
    write_local_state("other", local_lab.url)

    with pytest.raises(LabBatchError) as ambiguous:
        resolve_connection()

    assert ambiguous.value.code == "ambiguous_lab"
    assert "example, other" in ambiguous.value.message
    assert resolve_connection(lab="other").found_by == "local lab other"


def test_stale_state_file_is_not_a_running_lab(labbatch_home, write_local_state):
    write_local_state("example", _closed_port_url())

    with pytest.raises(LabBatchError) as nothing:
        resolve_connection()

    assert nothing.value.code == "no_endpoint"


def test_broken_state_files_are_skipped(local_lab, labbatch_home):
    (labbatch_home / "local" / "half.json").write_text('{"api": "http://127.0.0.1:1"')
    (labbatch_home / "local" / "nokeys.json").write_text(json.dumps({"api": local_lab.url}))

    assert resolve_connection().endpoint == local_lab.url


@mock_aws
def test_deployed_lab_is_found_from_its_api_stacks_output(labbatch_home, aws_env):
    boto3.client("cloudformation", region_name="eu-west-1").create_stack(
        StackName="LabBatch-genomics-Api",
        TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                                 "Outputs": {"ApiEndpoint": {"Value": DEPLOYED_URL}}}))

    connection = resolve_connection(lab="genomics", region="eu-west-1")

    assert (connection.endpoint, connection.region, connection.found_by) == (
        DEPLOYED_URL, "eu-west-1", "stack LabBatch-genomics-Api")


@mock_aws
def test_lab_that_is_not_deployed_says_which_stack_was_missing(labbatch_home, aws_env, capsys):
    assert main(["list", "--lab", "ghost", "--region", "eu-west-1"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("labbatch: no_endpoint: cannot read stack LabBatch-ghost-Api in eu-west-1: ")
    assert err.count("\n") == 1


@mock_aws
def test_stale_local_lab_is_named_when_the_deployed_lookup_fails_too(labbatch_home, aws_env, write_local_state):
    write_local_state("example", _closed_port_url())

    with pytest.raises(LabBatchError) as failed:
        resolve_connection(lab="example", region="eu-west-1")

    assert "local lab example is not running" in failed.value.message
    assert "LabBatch-example-Api" in failed.value.message


def test_deployed_lookup_without_a_region_asks_for_one(labbatch_home, aws_env):
    with pytest.raises(LabBatchError) as failed:
        resolve_connection(lab="genomics")

    assert failed.value.code == "no_region"


def test_unknown_profile_is_one_line_not_a_traceback(labbatch_home, aws_env, capsys):
    assert main(["list", "--endpoint", DEPLOYED_URL, "--profile", "no-such-profile"]) == 1

    assert capsys.readouterr().err == (
        "labbatch: bad_profile: The config profile (no-such-profile) could not be found\n")
