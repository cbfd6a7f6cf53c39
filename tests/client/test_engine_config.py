"""`labbatch token` and `labbatch engine-config` against the real local API Gateway front, with the
token check of labbatch_contract.tokens on /ga4gh/ and a small in-memory API behind it: the CLI
mints, lists and revokes through signed requests, and each engine's printed config has the URL
form that engine expects (checked against where `<url>/v1/tasks` or the tasks URL lands), the
token as its auth, and the lab's TES work prefix."""

from __future__ import annotations

import base64
import json
import shlex
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib.request

from labbatch.client.cli import main
from labbatch.client.engine_config import MINTED_TOKEN_DAYS, engine_config
from labbatch.local.apigateway import LocalApiGateway
from labbatch_contract import tokens

from tests.client.conftest import ACCOUNT, CALLER, KEY, REGION, SECRET

RESULTS = "labbatch-example-results-123456789012-eu-central-1"


class TokenApi:
    """POST/GET/DELETE /tokens over a dict of ledger records, and TES service-info."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.tes_events: list[dict] = []

    def check(self, token):
        return tokens.check(token, self.records.get)

    def __call__(self, event: dict, _context: object) -> dict:
        method, path = event["httpMethod"], event["path"]
        if path.startswith("/ga4gh/"):
            self.tes_events.append(event)
            return _ok(200, {"id": "labbatch-example", "storage": [f"s3://{RESULTS}/tes/"]})
        assert event["requestContext"]["identity"]["userArn"] == CALLER  # SigV4 everywhere else
        if path == "/tokens" and method == "POST":
            body = json.loads(event["body"] or "{}")
            token, record = tokens.new_token(owner=CALLER, name=body.get("name"), expires_days=body.get("expires_days"))
            self.records[record["job_id"]] = record
            return _ok(201, {**tokens.public_view(record), "token": token})
        if path == "/tokens" and method == "GET":
            return _ok(200, {"tokens": [tokens.public_view(r) for r in self.records.values()]})
        if path.startswith("/tokens/") and method == "DELETE":
            record = self.records[tokens.token_key(path.rsplit("/", 1)[1])]
            record["revoked_at"] = "2026-11-30T00:00:00.000000Z"
            return _ok(200, tokens.public_view(record))
        return _ok(404, {"error": {"code": "no_such_route", "message": path, "details": {}}})


def _ok(status: int, body: Any) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


@pytest.fixture
def token_lab(write_local_state):
    api = TokenApi()
    with LocalApiGateway(api, region=REGION, credentials=(KEY, SECRET), caller_arn=CALLER, account_id=ACCOUNT,
                         token_check=api.check) as gateway:
        write_local_state("example", gateway.url)
        gateway.api = api
        yield gateway


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def get(url: str, authorization: str | None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_token_create_list_revoke_through_the_cli(token_lab, capsys):
    code, out, err = run(capsys, "token", "create", "--name", "hpc", "--expires-days", "9")
    assert code == 0, err
    token = out.strip()
    token_id, _ = tokens.parse(token)
    assert f"token {token_id}" in err and "shown once" in err
    info = f"{token_lab.url}/ga4gh/tes/v1/service-info"
    assert get(info, f"Bearer {token}") == 200
    assert get(info, "Basic " + base64.b64encode(f"None:{token}".encode()).decode()) == 200
    event = token_lab.api.tes_events[-1]
    assert event["requestContext"]["authorizer"]["owner"] == CALLER
    assert event["requestContext"]["identity"]["userArn"] is None

    code, out, _ = run(capsys, "token", "list")
    header, row = out.strip().splitlines()
    assert header.split("\t")[:3] == ["id", "name", "owner"] and row.split("\t")[:3] == [token_id, "hpc", CALLER]
    assert token[len(f"lbt_{token_id}_"):] not in out  # the secret itself may hold "_"

    code, out, _ = run(capsys, "token", "revoke", token_id)
    assert code == 0 and f"token {token_id} revoked" in out
    assert get(info, f"Bearer {token}") == 403
    assert get(info, None) == 401
    assert get(info, "Bearer lbt_nonsense") == 403


def tasks_url_of(engine: str, url: str) -> str:
    """Where each engine sends POST tasks, given the URL it was configured with."""
    if engine == "py-tes":
        return url + "/ga4gh/tes/v1/tasks"  # py-tes 1.x tries <url>/ga4gh/tes/v1 first
    if engine in ("snakemake", "toil", "nextflow"):
        return url + "/v1/tasks"  # py-tes 0.4 and nf-ga4gh append /v1/tasks
    return url  # Cromwell: the full tasks URL


@pytest.mark.parametrize("engine,expected", [
    ("snakemake", ["--executor tes", "--tes-url {api}/ga4gh/tes ", "--tes-user labbatch --tes-password {token}",
                   "--default-storage-prefix s3://{results}/tes/snakemake",
                   # the lab is local (write_local_state): the driver reaches its S3 emulator
                   "--storage-s3-endpoint-url http://127.0.0.1:1", f"AWS_ACCESS_KEY_ID={KEY} ",
                   f"AWS_SECRET_ACCESS_KEY={SECRET} ", f"AWS_DEFAULT_REGION={REGION}",
                   f"--storage-s3-region {REGION}",
                   # local mode pulls nothing: the plugin's default snakemake/snakemake image is not here
                   "--container-image labbatch-snakemake:local"]),
    ("nextflow", ["process.executor = 'tes'", "tes.endpoint = '{api}/ga4gh/tes'", "tes.oauthToken = '{token}'",
                  "workDir = 's3://{results}/tes/nextflow/work'", "id 'nf-ga4gh@1.4.2'"]),
    ("toil", ["--batchSystem tes", "--tesEndpoint {api}/ga4gh/tes ", "--tesUser labbatch --tesPassword {token}",
              "s3://{results}/tes/toil/"]),
    ("cromwell", ['endpoint = "{api}/ga4gh/tes/v1/tasks"', 'root = "s3://{results}/tes/cromwell"',
                  "TesBackendLifecycleActorFactory", "labbatch tes-proxy"]),
    ("py-tes", ["tes.HTTPClient('{api}', token='{token}')"]),
])
def test_engine_config_prints_each_engines_url_form_token_and_work_prefix(token_lab, capsys, engine, expected):
    token, record = tokens.new_token(owner=CALLER)
    token_lab.api.records[record["job_id"]] = record
    tes = ("--tes",) if engine == "nextflow" else ()  # nextflow's TES form; its native one is tested apart
    code, out, err = run(capsys, "engine-config", engine, *tes, "--token", token)
    assert code == 0, err
    for fragment in expected:
        assert fragment.format(api=token_lab.url, token=token, results=RESULTS) in out
    code, out, _ = run(capsys, "engine-config", engine, *tes, "--token", token, "--json")
    config = json.loads(out)
    assert config["work_prefix"] == f"s3://{RESULTS}/tes/"
    assert tasks_url_of(engine, config["url"]) == f"{token_lab.url}/ga4gh/tes/v1/tasks"


def test_snakemake_config_is_one_command_and_a_workspace_the_plugin_can_read(token_lab, capsys, labbatch_home):
    """The text is the JSON's env and argv as a shell would run them, and GITHUB_WORKSPACE holds the
    funnel.log the TES plugin opens when a task fails (it dies of a KeyError or a missing file
    otherwise)."""
    token, record = tokens.new_token(owner=CALLER)
    token_lab.api.records[record["job_id"]] = record
    code, out, _ = run(capsys, "engine-config", "snakemake", "--token", token, "--json")
    config = json.loads(out)
    export, command = config["config"].splitlines()[-2:]
    assert shlex.split(command) == config["command"] and config["command"][0] == "snakemake"
    assert dict(item.split("=", 1) for item in shlex.split(export)[1:]) == config["env"]
    workspace = Path(config["env"]["GITHUB_WORKSPACE"])
    assert workspace.is_relative_to(labbatch_home) and (workspace / "funnel.log").is_file()


def test_engine_config_mints_a_token_when_none_is_given(token_lab, capsys):
    code, out, err = run(capsys, "engine-config", "snakemake", "--json")
    assert code == 0, err
    config = json.loads(out)
    (record,) = token_lab.api.records.values()
    assert config["minted_token_id"] == record["token_id"] and record["name"] == "engine-config snakemake"
    created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(record["expires_at_iso"].replace("Z", "+00:00"))
    assert expires - created == timedelta(days=MINTED_TOKEN_DAYS)  # never a token that lasts forever unasked
    assert tokens.check(config["auth"]["bearer"], token_lab.api.records.get)[1] == "ok"


def test_engine_config_refuses_a_dead_token(token_lab, capsys):
    code, _, err = run(capsys, "engine-config", "toil", "--token", "lbt_x")
    assert code != 0 and "403" in err and "not accepted" in err


def test_engine_config_against_a_deployed_api_url():
    config = engine_config("nextflow", "https://abc.execute-api.eu-west-1.amazonaws.com/v1/", "T", "bucket")
    assert config["url"] == "https://abc.execute-api.eu-west-1.amazonaws.com/v1/ga4gh/tes"


class TesOffApi(TokenApi):
    """A lab whose lab file lists no tes.allowed_images: its handler answers every TES path with
    403 tes_disabled (lambda/labbatch_api/tes_routes.py), and its front has no token routes (SigV4 only)."""

    def __call__(self, event: dict, _context: object) -> dict:
        if event["path"].startswith("/ga4gh/"):
            return _ok(403, {"error": {"code": "tes_disabled", "message": "lab example has no TES endpoint: "
                                       "tes.allowed_images is empty in its lab file (labs/example.yaml)",
                                       "details": {"field": "tes.allowed_images"}}})
        return super().__call__(event, _context)


@pytest.mark.parametrize("engine", ["snakemake", "toil"])
def test_engine_config_on_a_lab_without_tes_names_tes_allowed_images_and_mints_nothing(write_local_state, capsys,
                                                                                      engine):
    api = TesOffApi()
    with LocalApiGateway(api, region=REGION, credentials=(KEY, SECRET), caller_arn=CALLER,
                         account_id=ACCOUNT) as gateway:  # no token_check: TES is off
        write_local_state("example", gateway.url)
        code, out, err = run(capsys, "engine-config", engine)
    assert code != 0 and out == ""
    assert "tes_disabled" in err and "tes.allowed_images" in err and "allowed_images: [" in err, err
    assert "Bearer" not in err and "AWS4-HMAC-SHA256" not in err
    assert api.records == {}  # no token minted for a lab that cannot use it
