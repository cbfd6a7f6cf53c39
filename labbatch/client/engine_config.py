"""`labbatch token create|list|revoke` and `labbatch engine-config ENGINE`.

Tokens let workflow engines reach a lab's TES endpoint without SigV4 (labbatch_contract.tokens):
minted, listed and revoked through the job API with your AWS credentials. `engine-config`
prints what each engine needs for this lab: the URL in the form it expects, its auth settings
and the lab's TES work prefix (`s3://<results bucket>/tes/`, where task outputs must go).

URL forms (from the clients' code): py-tes 1.x takes the API's base URL (it tries
`<url>/ga4gh/tes/v1` first); the Snakemake and Toil plugins (py-tes 0.4) and Nextflow's nf-ga4gh
append `/v1/tasks` to what they are given, so they get `<api>/ga4gh/tes`; Cromwell takes the
full tasks URL.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, NamedTuple

import urllib.error
import urllib.request

from labbatch.client import nextflow_config
from labbatch.client.command_base import connection_of
from labbatch.client.sdk import LabBatchError, local_lab_state
from labbatch_contract.local_state import labbatch_home
from labbatch_contract.tes import TES_BASE

ENGINES = ("snakemake", "nextflow", "toil", "cromwell", "py-tes")


MINTED_TOKEN_DAYS = 90
# Rule jobs Snakemake keeps in flight (its --jobs, required for remote executors).
SNAKEMAKE_JOBS = 8
# What a local lab's Snakemake tasks run in (containers/snakemake/, built by `make images`).
LOCAL_SNAKEMAKE_IMAGE = "labbatch-snakemake:local"


class LocalS3(NamedTuple):
    """A local lab's S3 emulator, as an engine on this host reaches it."""
    endpoint: str
    region: str
    access_key_id: str
    secret_access_key: str


# -- labbatch token ---------------------------------------------------------------------------

def token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("create", "list", "revoke"))
    parser.add_argument("token_id", nargs="?", metavar="ID", help="the token to revoke (from `labbatch token list`)")
    parser.add_argument("--name", help="what the token is for (create)")
    parser.add_argument("--expires-days", type=int, metavar="D", help="days until it stops working (create; "
                        "default: never)")


def run_token(args: argparse.Namespace) -> int:
    connection = connection_of(args)
    with connection.client() as client:
        if args.action == "create":
            body: dict[str, Any] = {}
            if args.name:
                body["name"] = args.name
            if args.expires_days is not None:
                body["expires_days"] = args.expires_days
            made = client.request("POST", "/tokens", body=body)
            if args.json:
                print(json.dumps(made))
            else:
                print(made["token"])
                print(f"token {made['id']} for {made['owner']}, expires {made['expires_at'] or 'never'}: "
                      "shown once, keep it secret (revoke with `labbatch token revoke "
                      f"{made['id']}`)", file=sys.stderr)
            return 0
        if args.action == "list":
            found = client.request("GET", "/tokens")["tokens"]
            if args.json:
                print(json.dumps(found))
                return 0
            columns = ("id", "name", "owner", "created_at", "expires_at", "last_used_at", "revoked_at")
            print("\t".join(columns))
            for token in found:
                print("\t".join(str(token.get(c) or "-") for c in columns))
            return 0
        if not args.token_id:
            raise LabBatchError("missing_token_id", "which token? `labbatch token revoke ID` (ids from "
                                "`labbatch token list`)")
        revoked = client.request("DELETE", f"/tokens/{args.token_id}")
        print(json.dumps(revoked) if args.json else f"token {revoked['id']} revoked at {revoked['revoked_at']}")
        return 0


# -- labbatch engine-config -------------------------------------------------------------------

def engine_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("--tes", action="store_true", help="nextflow: the nf-ga4gh (TES) form instead of "
                        "Nextflow's own AWS Batch executor")
    parser.add_argument("--token", help="the token to put in the config (default: a running local lab's "
                        "tes_token; otherwise a new one is minted with your AWS credentials)")


def snakemake_invocation(url: str, token: str, work: str, local_s3: LocalS3 | None,
                         region: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The `snakemake` argv and environment that send a workflow's rules to the lab as TES tasks.

    Snakemake inside each task reads and writes the storage prefix itself (its task has no
    outputs), so the prefix must be one the lab's job role may read and write: the TES work
    prefix. The plugin (0.1.3) reads $GITHUB_WORKSPACE/funnel.log when a task fails and dies of a
    KeyError without it, so the environment names a directory that `prepare_snakemake_workspace`
    gives an empty funnel.log."""
    argv = ["snakemake", "--executor", "tes", "--tes-url", url, "--tes-user", "labbatch", "--tes-password", token,
            "--default-storage-provider", "s3", "--default-storage-prefix", f"{work}snakemake",
            # Snakemake refuses to start a remote executor without it; raise it to what the lab's queues hold.
            "--jobs", str(SNAKEMAKE_JOBS)]
    if region:
        # Into each task's script too: a task's container need not know its Region.
        argv += ["--storage-s3-region", region]
    env = {"GITHUB_WORKSPACE": str(snakemake_workspace())}
    if local_s3 is not None:
        # The plugin's default image, snakemake/snakemake:v<version>, is on no local engine (no
        # registry here): every task would fail to start. `make images` builds this stand-in.
        argv += ["--container-image", LOCAL_SNAKEMAKE_IMAGE]
        # Local mode's S3 is its emulator: the driver needs its address and keys. The address goes
        # into each task's script (tasks share the host's network); the keys do not, the lab
        # gives every task container its own.
        argv += ["--storage-s3-endpoint-url", local_s3.endpoint]
        env.update({"AWS_ACCESS_KEY_ID": local_s3.access_key_id, "AWS_SECRET_ACCESS_KEY": local_s3.secret_access_key,
                    "AWS_DEFAULT_REGION": local_s3.region})
    return argv, env


def snakemake_workspace() -> Path:
    return labbatch_home() / "snakemake"


def prepare_snakemake_workspace() -> None:
    workspace = snakemake_workspace()
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "funnel.log").touch()


def engine_config(engine: str, api: str, token: str, results_bucket: str,
                  local_s3: LocalS3 | None = None, region: str | None = None) -> dict[str, Any]:
    """What `engine` needs to send tasks to the lab whose API is at `api`."""
    api = api.rstrip("/")
    appends_v1_tasks = api + "/ga4gh/tes"  # <this>/v1/tasks is the TES tasks route
    work = f"s3://{results_bucket}/tes/"
    extra: dict[str, Any] = {}
    if engine == "py-tes":
        url = api
        text = f"import tes\nclient = tes.HTTPClient({url!r}, token={token!r})  # py-tes 1.x tries {url}{TES_BASE}"
    elif engine == "snakemake":
        url = appends_v1_tasks
        argv, env = snakemake_invocation(url, token, work, local_s3, region)
        extra = {"command": argv, "env": env}
        text = "\n".join([
            "# Snakemake 9 with snakemake-executor-plugin-tes and snakemake-storage-plugin-s3. Each rule runs in",
            *([f"# {LOCAL_SNAKEMAKE_IMAGE} (local mode pulls nothing: the plugin's default snakemake/snakemake",
               "# image is not here); the lab must allow it (tes.allowed_images)."] if local_s3 else
              ["# snakemake/snakemake:v<your version> unless --container-image names another; the lab must allow",
               "# it (tes.allowed_images)."]),
            "# The workflow's files, outputs included, live under the storage prefix (not under jobs/, so",
            "# `labbatch results` has none): add a folder of its own to it for each workflow",
            "# (…/tes/snakemake/<workflow>), or their files mix. The plugin's `--- Logging error ---`",
            "# tracebacks at each submit and a final `DeleteBucket ... BucketNotEmpty` line are its own and harmless.",
            *(["# This lab is local: the storage settings and keys are its S3 emulator's."] if local_s3 else
              ["# Your own AWS credentials (AWS_PROFILE) read and write the prefix from this machine."]),
            "export " + " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items()),
            shlex.join(argv)])
    elif engine == "nextflow":
        url = appends_v1_tasks
        text = nextflow_config.tes_config(url, token, work)
    elif engine == "toil":
        url = appends_v1_tasks
        text = (f"# Toil's TES batch system exists only in Toil 5.x (5.12.0 is the last; Toil 6 removed it). Its\n"
                f"# tasks reach the job store themselves: a file: job store only where the TES server lists a\n"
                f"# shared file system in its storage (a lab lists s3:// only), an aws: job store through\n"
                f"# SimpleDB, which a lab's job role may not use. So Toil does not run on a lab yet.\n"
                f"toil-cwl-runner --batchSystem tes --tesEndpoint {url} --tesUser labbatch --tesPassword {token} \\\n"
                f"  --outdir out workflow.cwl inputs.yaml   # task outputs under {work}toil/")
    elif engine == "cromwell":
        url = api + TES_BASE + "/tasks"
        text = (f"# cromwell.conf\nbackend.default = TES\nbackend.providers.TES {{\n"
                f"  actor-factory = \"cromwell.backend.impl.tes.TesBackendLifecycleActorFactory\"\n"
                f"  config {{\n    root = \"{work}cromwell\"\n    endpoint = \"{url}\"\n  }}\n}}\n"
                f"# Auth: Cromwell's TES config has no Basic/Bearer setting LabBatch has checked. If it is\n"
                f"# refused (401), run `labbatch tes-proxy` and set endpoint = "
                f"\"http://127.0.0.1:8765{TES_BASE}/tasks\".")
    else:
        raise LabBatchError("unknown_engine", f"{engine}: one of {', '.join(ENGINES)}")
    return {"engine": engine, "url": url, "auth": {"basic_user": "labbatch", "basic_password": token,
                                                     "bearer": token},
            "work_prefix": work, "config": text, **extra}


def run_engine_config(args: argparse.Namespace) -> int:
    connection = connection_of(args)
    local = local_lab_state(connection.endpoint)
    if args.engine == "nextflow" and not args.tes:
        return _print_native_nextflow(args, connection, local)
    if args.tes and args.engine != "nextflow":
        raise LabBatchError("bad_option", f"--tes is for nextflow only: {args.engine} always uses TES")
    _require_tes(connection)
    token = args.token or (local or {}).get("tes_token")
    minted = None
    if not token:
        with connection.client() as client:
            # Never one that lasts forever unasked: long enough for a multi-week workflow.
            minted = client.request("POST", "/tokens", body={"name": f"engine-config {args.engine}",
                                                              "expires_days": MINTED_TOKEN_DAYS})
        token = minted["token"]
    info = _service_info(connection.endpoint, token)
    results = next((s[len("s3://"):].split("/", 1)[0] for s in info.get("storage", []) if s.endswith("/tes/")), None)
    if results is None:
        raise LabBatchError("no_tes_storage", f"the lab's service-info names no s3://.../tes/ prefix: {info}")
    local_s3 = None
    if local is not None and local.get("aws_endpoint"):
        keys = local["credentials"]
        local_s3 = LocalS3(local["aws_endpoint"], local.get("region") or "us-east-1", keys["access_key_id"],
                           keys["secret_access_key"])
    config = engine_config(args.engine, connection.endpoint, token, results, local_s3, connection.region)
    if args.engine == "snakemake":
        prepare_snakemake_workspace()
    if minted:
        config["minted_token_id"] = minted["id"]
    if args.json:
        print(json.dumps(config))
    else:
        print(config["config"])
        if minted:
            print(f"# (token {minted['id']} was minted for this, valid until {minted.get('expires_at')}; "
                  f"`labbatch token revoke {minted['id']}` ends it sooner)", file=sys.stderr)
    return 0


def _print_native_nextflow(args: argparse.Namespace, connection: Any, local: dict[str, Any] | None) -> int:
    if local is not None:
        # A local lab's Batch is an emulator that Nextflow's AWS SDK would need its own endpoint
        # settings for, and its tasks' `aws` the emulator's S3: not a path LabBatch has tested.
        raise LabBatchError("local_lab", "Nextflow's own AWS Batch executor needs a deployed lab; on a local lab "
                            "use nf-ga4gh over TES: `labbatch engine-config nextflow --tes`")
    if not connection.region:
        raise LabBatchError("no_region", "which Region is the lab in? give --region (aws.region needs it)")
    with connection.client() as client:
        view = client.lab()
    config = nextflow_config.native_config(view, connection.region)
    print(json.dumps(config) if args.json else config["config"])
    return 0


def _require_tes(connection: Any) -> None:
    """Fails with the lab's own `tes_disabled` answer (naming tes.allowed_images) before any token
    is minted. Asked with SigV4: a deployed lab without TES has no token routes, so a bearer
    request would only get API Gateway's 403 about the signature."""
    with connection.client() as client:
        try:
            client.request("GET", TES_BASE + "/service-info")
        except LabBatchError as error:
            if error.code == "tes_disabled":
                raise LabBatchError("tes_disabled", f"{error.message}. To turn it on, list the images tasks may "
                                    "run in the lab file, e.g. `tes: {allowed_images: [snakemake/snakemake:, "
                                    "quay.io/biocontainers/]}`, and deploy (or restart `labbatch local`)") from None
            # Any other answer (a TES lab refuses SigV4 on its token routes) means TES is there.


def _service_info(api: str, token: str) -> dict[str, Any]:
    url = api.rstrip("/") + TES_BASE + "/service-info"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the lab's own API URL
            return json.loads(answer.read())
    except urllib.error.HTTPError as failed:
        text = failed.read().decode("utf-8", "replace")
        try:
            error = json.loads(text).get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        raise LabBatchError(error.get("code") or f"http_{failed.code}",
                            f"{url} answered {failed.code}: {error.get('message') or text[:200]}") from None
    except (urllib.error.URLError, OSError) as error:
        raise LabBatchError("unreachable", f"cannot reach {url}: {error}") from None
