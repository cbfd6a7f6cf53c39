"""`labbatch doctor`: check a deployed or local lab end to end, one line per check, a fix for each failure.

Checks, in order (a check that cannot run because an earlier one failed is not run):
1. the API answers (GET /lab) and the caller is authorised (IAM, SigV4);
2. every job queue, and every compute environment behind it, is ENABLED and VALID (GET /lab,
   from Batch's DescribeJobQueues / DescribeComputeEnvironments);
2b. with a TES endpoint: its routes ask for a token (401 without one), and in local mode the
   lab's own token gets service-info;
3. every pipeline's image: in local mode the command's executable is on this machine's PATH; in
   AWS the job definition is ACTIVE, and its image is the one the canary pulled (images of other
   pipelines are pulled when their first job runs: doctor reports the reference);
4. a canary job on each queue of every pool: a tiny generated FASTQ is uploaded to the inputs bucket, the
   `fastq-stats` pipeline reads it, writes its results (and the runner's manifest) to the
   results bucket and logs; doctor reads both back. On a GPU pool the canary asks for a GPU, and
   the runner's GPU check must find it (labbatch/client/doctor_gpus.py). Uploading and reading back use the local
   lab's own credentials, or the caller's AWS profile for a deployed lab;
5. in AWS, after the canaries: instances a compute environment launched that never joined its
   ECS cluster, with the reason their boot wrote on the console (labbatch/client/boot_reasons.py).

Exit 0 when every check passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from labbatch.lab.batch_layout import RUNNER_COMMAND, on_host
from labbatch.client.doctor_gpus import gpu_pool_notes, refused_here
from labbatch.client.command_base import connection_of
from labbatch.client.sdk import LabBatchApiError, LabBatchConnectionError, LabBatchError, local_lab_state
from labbatch.client.doctor_canary import CANARY_PIPELINE, canary_checks
from labbatch.client.doctor_target import Check, Target, where
from labbatch_contract import batch_reasons

EXIT_OK, EXIT_FAILED = 0, 1


def doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="how long the canary jobs may take (default: 120 s locally, 900 s in AWS)")
    parser.add_argument("--no-canary", action="store_true", help="skip the canary jobs (checks only what Batch reports)")
    parser.add_argument("--canary-pipeline", default=CANARY_PIPELINE, metavar="PIPELINE",
                        help=f"the pipeline the canaries run; it must read one FASTQ (default: {CANARY_PIPELINE})")


def run_doctor(args: argparse.Namespace) -> int:
    emit: Callable[[Check], None] = (lambda check: None) if args.json else (lambda check: print(check.line(), flush=True))
    checks = diagnose(args, emit)
    if args.json:
        sys.stdout.write(json.dumps({"ok": all(c.ok for c in checks), "checks": [c.as_json() for c in checks]},
                                    indent=2) + "\n")
    else:
        failed = sum(not c.ok for c in checks)
        print(f"{len(checks) - failed} of {len(checks)} checks passed" + (f"; {failed} failed" if failed else ""))
    return EXIT_OK if checks and all(c.ok for c in checks) else EXIT_FAILED


def diagnose(args: argparse.Namespace, emit: Callable[[Check], None]) -> list[Check]:
    checks: list[Check] = []

    def add(check: Check) -> Check:
        checks.append(check)
        emit(check)
        return check

    try:
        connection = connection_of(args)
    except LabBatchError as error:
        add(Check("API reachable", False, error.message, _no_endpoint_fix(args.lab)))
        return checks
    local = local_lab_state(connection.endpoint)
    target = Target(connection, local, (local or {}).get("lab") or args.lab, profile=args.profile)

    view = _api_checks(target, add)
    if view is None:
        return checks
    _batch_checks(target, view, add)
    if view.get("tes"):
        _tes_checks(target, view["tes"], add)
    canary = None if args.no_canary else canary_checks(target, view, args, add)
    _image_checks(target, view, canary, add)
    if target.local is None:  # a local lab has no instances
        _boot_checks(target, add)
    for name, detail in gpu_pool_notes(view, canaries_ran=not args.no_canary):
        add(Check(name, True, detail))
    return checks


# --- 1. the API and the caller --------------------------------------------------------------------


def _api_checks(target: Target, add: Callable[[Check], Check]) -> dict[str, Any] | None:
    endpoint = target.connection.endpoint
    try:
        with target.connection.client(timeout=15) as client:
            view = client.lab()
    except LabBatchConnectionError as error:
        add(Check("API reachable", False, f"{endpoint}: {error.message}", _unreachable_fix(target)))
        return None
    except LabBatchApiError as error:
        if error.status == 403:
            add(Check("API reachable", True, f"{endpoint} ({target.connection.found_by})"))
            add(Check("caller authorised", False, f"the API refused the signed request (403: {error.message})",
                      "sign as a principal the lab allows: pass --profile, or ask the platform engineer to add your "
                      "role or user to the lab's API principals and redeploy"))
        elif error.status == 404 and error.code in ("no_such_route", "not_found"):
            add(Check("API reachable", False, f"{endpoint} has no GET /lab (an older LabBatch API)",
                      "redeploy the lab's API stack (cdk deploy) so that doctor can read the lab's state"))
        else:
            add(Check("API reachable", False, f"{endpoint} answered {error.status} {error.code}: {error.message}",
                      "see the API's logs (the handler's log group); redeploy if it says misconfigured"))
        return None
    except LabBatchError as error:  # no credentials, bad profile
        add(Check("caller authorised", False, error.message,
                  "configure AWS credentials (aws configure / aws sso login) and pass --profile"))
        return None
    add(Check("API reachable", True, f"{endpoint} ({target.connection.found_by})"))
    add(Check("caller authorised", True, str(view.get("caller") or "signed request accepted")))
    return view


# --- 2b. the TES endpoint, when the lab has one ---------------------------------------------------


def _tes_checks(target: Target, tes: dict[str, Any], add: Callable[[Check], Check]) -> None:
    """The TES subtree takes tokens, not SigV4: without one it must answer 401 (the token check is
    wired in front of it); with the local lab's own token, service-info must answer and name the
    lab's TES storage. A deployed lab's token is the scientist's (`labbatch engine-config`)."""
    import urllib.error
    import urllib.request

    base = target.connection.endpoint.rstrip("/") + tes["base_path"]

    def get(headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(base + "/service-info", headers={"Accept": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:  # noqa: S310 - the lab's own API
                return answer.status, answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as failed:
            return failed.code, failed.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as error:
            return 0, str(error)

    status, text = get({})
    if status != 401:
        add(Check("TES endpoint", False, f"{base}/service-info without a token answered {status or 'nothing'}: "
                  f"{text[:200]} (expected 401: TES callers must show a token)",
                  "redeploy the lab's API stack (cdk deploy): the /ga4gh and /v1 subtrees need their token authorizer"))
        return
    token = (target.local or {}).get("tes_token")
    if not token:
        add(Check("TES endpoint", True, f"{base} asks for a token; allowed images: "
                  f"{', '.join(tes['allowed_images'])} (`labbatch engine-config ENGINE` sets an engine up)"))
        return
    status, text = get({"Authorization": f"Bearer {token}"})
    try:
        storage = json.loads(text).get("storage") or [] if status == 200 else []
    except ValueError:
        storage = []
    if status != 200 or not any(s.endswith("/tes/") for s in storage):
        add(Check("TES endpoint", False, f"{base}/service-info with the lab's tes_token answered {status}: "
                  f"{text[:200]}", "restart the local lab (labbatch local); its token check or settings are broken"))
        return
    add(Check("TES endpoint", True, f"{base} takes the lab's token; storage {', '.join(storage)}; allowed images: "
              f"{', '.join(tes['allowed_images'])}"))


# --- 2. queues and compute environments ----------------------------------------------------------


def _batch_checks(target: Target, view: dict[str, Any], add: Callable[[Check], Check]) -> None:
    seen: set[str] = set()
    for queue in view.get("queues", []):
        name = queue["name"]
        problem = _state_problem(queue)
        if problem:
            add(Check(f"queue {where(queue)}", False, f"{name} {problem}",
                      _enable_fix(target, "job-queue", name) if queue.get("state") == "DISABLED"
                      else "redeploy the lab's compute stack (cdk deploy); `aws batch describe-job-queues` shows why"))
        else:
            add(Check(f"queue {where(queue)}", True, f"{name} ENABLED, VALID"))
        for environment in queue.get("compute_environments", []):
            if environment["name"] in seen:
                continue
            seen.add(environment["name"])
            problem = _state_problem(environment)
            label = f"compute environment {environment['name']}"
            if not problem:
                add(Check(label, True, f"ENABLED, VALID, max {environment.get('max_vcpus')} vCPUs, "
                                       f"{', '.join(environment.get('instance_types') or []) or 'instance types unknown'}"))
            elif environment.get("status") == "INVALID":
                add(Check(label, False, problem.removeprefix("is "),
                          "fix what the reason names (instance role, subnets, launch template, AMI, service role), "
                          "then redeploy the lab's compute stack"))
            else:
                add(Check(label, False, problem.removeprefix("is "),
                          _enable_fix(target, "compute-environment", environment["name"])
                          if environment.get("state") == "DISABLED" else "redeploy the lab's compute stack"))


def _state_problem(resource: dict[str, Any]) -> str:
    state, status, reason = resource.get("state"), resource.get("status"), resource.get("status_reason")
    if status == "MISSING":
        return f"is missing ({reason})"
    if status == "INVALID":
        return f"is INVALID ({reason or 'no reason given'})"
    if state != "ENABLED":
        return f"is {state}: it starts no jobs"
    return ""


def _enable_fix(target: Target, kind: str, name: str) -> str:
    flag = "--job-queue" if kind == "job-queue" else "--compute-environment"
    command = f"aws batch update-{kind} {flag} {name} --state ENABLED"
    if target.local is not None:
        endpoint = target.local.get("batch_endpoint")
        return (f"restart `labbatch local --lab {target.lab_name}` (it starts everything enabled)"
                + (f", or: {command} --endpoint-url {endpoint}" if endpoint else ""))
    return command


# --- 5. instances that never joined (a deployed lab) -----------------------------------------------


def _boot_checks(target: Target, add: Callable[[Check], Check]) -> None:
    """After the canaries (they are what makes an idle lab launch instances): an environment that
    wants vCPUs and has no instance in its cluster, and why, from the instances' consoles."""
    from labbatch.client import boot_reasons

    try:
        with target.connection.client(timeout=15) as client:
            view = client.lab()  # again: desired vCPUs as they are now
        found = boot_reasons.instances_not_joined(
            str(view.get("lab")), boot_reasons.environments_of(view),
            boot_reasons.aws_client_maker(target.profile, target.connection.region))
    except boot_reasons.BootLookupFailed as error:
        add(Check("instances joined", True, f"not checked: {error}"))
        return
    except LabBatchError as error:
        add(Check("instances joined", True, f"not checked: GET /lab failed ({error.message})"))
        return
    for instance in found:
        add(Check(f"instance {instance.instance_id}", False, instance.message(), instance.fix()))
    if not found:
        add(Check("instances joined", True, "no instance of the lab is kept out of its cluster by a failed boot"))


# --- 3. images --------------------------------------------------------------------------------------


def _executable(command: list[str]) -> str | None:
    """The pipeline's own program: what follows the runner's `--`, else the first word."""
    command = on_host(command)
    if tuple(command[:len(RUNNER_COMMAND)]) == RUNNER_COMMAND:
        rest = command[len(RUNNER_COMMAND):]
        return rest[0] if rest else None
    return command[0] if command else None


def _image_checks(target: Target, view: dict[str, Any], canary: dict[str, bool] | None,
                  add: Callable[[Check], Check]) -> None:
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    for pipeline in view.get("pipelines", []):
        label = f"pipeline {pipeline['name']} image"
        if pipeline.get("status") != "ACTIVE":
            add(Check(label, False, f"job definition {pipeline.get('job_definition')} is not ACTIVE",
                      "redeploy the lab's compute stack (cdk deploy)"))
            continue
        image = pipeline.get("image") or "?"
        if target.local is not None and target.local.get("executor", "host") != "host":
            from labbatch.lab.config import DEMO_IMAGE
            from labbatch.local.docker_runner import DEMO_TAG, image_id

            engine = target.local["executor"]
            local_image = DEMO_TAG if image == DEMO_IMAGE else image
            if image_id(engine, local_image) is not None:
                add(Check(label, True, f"{local_image} is in the local {engine} engine (image {image} in AWS)"))
            else:
                add(Check(label, False, f"{local_image} is not in the local {engine} engine, so its jobs fail "
                                        "(local mode never pulls)",
                          f"build or load it ({engine} build / {engine} load; the demo images: make images)"))
            continue
        if target.local is not None and (why := refused_here(pipeline, view)):
            add(Check(label, True, f"{why} (image {image} in AWS)"))
            continue
        if target.local is not None:
            command = on_host(list(pipeline.get("command") or []))
            missing = [exe for exe in dict.fromkeys([command[0] if command else None, _executable(command)])
                       if exe and not _on_path(exe, search_path)]
            if missing:
                add(Check(label, False, f"{', '.join(missing)} is not on this machine's PATH (local mode runs "
                                        f"pipelines on the host, not in image {image})",
                          f"install it (for the demo tools: pip install -e . in the project's venv) or correct "
                          f"pipelines.{pipeline['name']}.command in the lab file, then restart `labbatch local`"))
            else:
                add(Check(label, True, f"{_executable(command)} found on PATH (image {image} in AWS)"))
            continue
        if canary is not None and pipeline["name"] in canary:
            if canary[pipeline["name"]]:
                add(Check(label, True, f"{image} (pulled by the canary)"))
            else:
                add(Check(label, False, f"{image}: the canary did not run, so the image is unproven",
                          "see the canary's line above; an image that cannot be pulled fails with "
                          f"{batch_reasons.CANNOT_PULL_CONTAINER}"))
        else:
            add(Check(label, True, f"{image} (job definition ACTIVE; pulled when its first job runs)"))


def _on_path(executable: str, search_path: str) -> bool:
    if os.sep in executable:
        return os.access(executable, os.X_OK)
    return shutil.which(executable, path=search_path) is not None


# --- where the lab is ---------------------------------------------------------------------------------


def _no_endpoint_fix(lab: str | None) -> str:
    return (f"start it with `labbatch local --lab {lab}`, or deploy it, or pass --endpoint URL" if lab
            else "pass --lab NAME or --endpoint URL, or start a lab with `labbatch local`")


def _unreachable_fix(target: Target) -> str:
    if target.local is not None:
        return f"the local lab is not running: start it with `labbatch local --lab {target.lab_name}`"
    return "check the URL (the lab's ApiEndpoint stack output) and your network; is the API stack deployed?"
