"""A whole lab on this machine: emulator, executor, the real handlers, and the API front.

The handler and the status updater are the Lambda code itself (the `labbatch_api` and
`labbatch_status` packages, from `lambda/`); they
only ever see boto3 clients, whose endpoints point at loopback here. Nothing in them knows
they run locally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbatch.lab.api_settings import SETTINGS_VARIABLE, handler_settings
from labbatch.lab.batch_layout import BatchLayout, layout
from labbatch.lab.config import DEMO_IMAGE, Lab
from labbatch.lab.instance_types import USABLE_MEMORY_SHARE
from labbatch.local import awslogs
from labbatch.local.apigateway import LocalApiGateway, LocalLambdaContext
from labbatch.local.batch.executor import LocalBatch, machine_memory_mib
from labbatch.local.batch.registration import registration
from labbatch.local.batch.service import LocalBatchService
from labbatch.local.docker_runner import (DEMO_TAG, ENGINES, RUNNER_IMAGE, ContainerRunner, DockerUnavailable,
                                          find_engine, image_id, nvidia_runtime, remove_orphans, runner_tree)
from labbatch.local.emulator import Emulator, EmulatedLab
from labbatch.local.event_rules import EventRules
from labbatch.local.iam import assembly, lab_iam
from labbatch.local.iam.credentials import CredentialsEndpoint, acting_as, install_default_session
from labbatch.local.iam.enforce import Refused
from labbatch.local.iam.evaluate import Request
from labbatch.local.iam.lab_iam import LabIam
from labbatch.local.persistence import LabData, Restored
from labbatch.local.state import StateFile
from labbatch_contract import names, tokens
from labbatch_contract.ledger import to_item

LOCAL_CALLER = "local-scientist"
# What the executor keeps back for the emulator, the API and the runner processes themselves.
RESERVED_MEMORY_MIB = 512


def local_limits(lab: Lab, pool: str | None = None, *, gpus: bool = False) -> dict[str, int]:
    """What a local job can get on a pool (the lab's first by default, which a one-pool lab's
    settings carry at the top): the pool's limits, capped by this machine (same memory rule as
    ECS). Where the machine is the smaller, the pool's own limit goes along (`lab_max_*`), so that
    a refusal says it is this machine's limit, not the lab's. A GPU pool's jobs get GPUs only when
    the container engine has an NVIDIA runtime (`gpus`); otherwise none (`lab_max_gpus` says
    what the pool gives), so that the API refuses them rather than letting them wait forever."""
    cores = os.cpu_count() or 1
    memory = int((machine_memory_mib() - RESERVED_MEMORY_MIB) * USABLE_MEMORY_SHARE)
    pool_limits = (lab.pools[pool] if pool else next(iter(lab.pools.values()))).job_limits
    lab_vcpus, lab_memory = pool_limits["max_vcpus"], pool_limits["max_memory_mib"]
    limits = {"max_vcpus": min(lab_vcpus, cores), "max_memory_mib": min(lab_memory, memory)}
    if cores < lab_vcpus:
        limits["lab_max_vcpus"] = lab_vcpus
    if memory < lab_memory:
        limits["lab_max_memory_mib"] = lab_memory
    if pool_limits.get("max_gpus"):
        limits["gpu_memory_mib"] = pool_limits["gpu_memory_mib"]
        if gpus:
            limits["max_gpus"] = pool_limits["max_gpus"]
        else:
            limits.update(max_gpus=0, lab_max_gpus=pool_limits["max_gpus"])
    return limits


def fitted_to_machine(lab: Lab, limits: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    """With the lab file's `local.fit_to_machine`: each pipeline whose vCPUs or memory exceed what
    this machine gives a job (local_limits), as {"vcpus", "memory_mib"} scaled down to it. Empty
    without it, or when every pipeline fits."""
    if not lab.local.fit_to_machine:
        return {}
    limits = limits or _machine_limits(lab)
    # GPU pipelines are left as they are: what stops them here is the GPU, which no scaling gives.
    return {name: {"vcpus": min(p.vcpus, limits["max_vcpus"]), "memory_mib": min(p.memory_mib, limits["max_memory_mib"])}
            for name, p in lab.pipelines.items()
            if not p.gpus and (p.vcpus > limits["max_vcpus"] or p.memory_mib > limits["max_memory_mib"])}


def _machine_limits(lab: Lab) -> dict[str, int]:
    """The most a local job can get on any pool."""
    per_pool = [local_limits(lab, name) for name in lab.pools]
    return {key: max(limits[key] for limits in per_pool) for key in ("max_vcpus", "max_memory_mib")}


def stand_ins(lab: Lab) -> dict[str, str]:
    """The lab file's `local.images`: image a pipeline names -> the local image that runs instead."""
    return dict(lab.local.images)


def local_layout(lab: Lab) -> BatchLayout:
    """The lab's Batch layout as local mode registers it: job definitions of pipelines fitted to
    this machine ask what their defaults now ask. Images stay the lab's; the container runner
    maps them to their stand-ins at each attempt."""
    fitted = fitted_to_machine(lab)
    planned = layout(lab)
    return dataclasses.replace(planned, job_definitions=tuple(
        dataclasses.replace(spec, **fitted[spec.pipeline]) if spec.pipeline in fitted else spec
        for spec in planned.job_definitions))


def local_settings(lab: Lab, emulated: EmulatedLab, *, gpus: bool = False) -> dict[str, Any]:
    """The handlers' settings for this machine: every pool maps onto its capacity (the pools'
    environments share it in the executor); `gpus`: the container engine can hand out GPUs."""
    settings = handler_settings(lab, emulated.account, emulated.region)
    cores = os.cpu_count() or 1
    first = next(iter(lab.pools))
    settings["limits"] = local_limits(lab, first, gpus=gpus)
    settings["queue_max_vcpus"] = {q: min(v, cores) for q, v in settings["queue_max_vcpus"].items()}
    for name, pool in settings.get("pools", {}).items():
        pool["limits"] = local_limits(lab, name, gpus=gpus)
        pool["queue_max_vcpus"] = {q: min(v, cores) for q, v in pool["queue_max_vcpus"].items()}
    # What the lab file's `local:` block changes, said per pipeline (GET /pipelines shows it).
    fitted, images = fitted_to_machine(lab), stand_ins(lab)
    for name, pipeline in lab.pipelines.items():
        local: dict[str, Any] = {}
        if pipeline.image in images:
            local.update(image=pipeline.image, stand_in=images[pipeline.image])
        if name in fitted:
            settings["pipelines"][name].update(fitted[name])
            local.update(lab_vcpus=pipeline.vcpus, lab_memory_mib=pipeline.memory_mib)
        if local:
            settings["pipelines"][name]["local"] = local
    return settings


# The variables a lab sets in its process: the AWS SDK's, LabBatch's and Powertools'.
OWN_VARIABLES = ("AWS_", "LABBATCH_", "POWERTOOLS_")


def _environment_restorer():
    before = {name: value for name, value in os.environ.items() if name.startswith(OWN_VARIABLES)}

    def restore() -> None:
        for name in [name for name in os.environ if name.startswith(OWN_VARIABLES) and name not in before]:
            del os.environ[name]
        os.environ.update(before)
    return restore


def _import_handler(package: str):
    # Imported only once the lab's environment is set: each handler module builds its Powertools
    # logger at import, which reads its settings (POWERTOOLS_*) then.
    return importlib.import_module(f"{package}.handler")


@dataclass
class LocalLab:
    lab: Lab
    port: int = 0
    spot_interruption_rate: float = 0.0
    random_seed: int | None = None
    kill_grace_seconds: float = 10.0
    log: Any = None  # a text stream for the API's request log; default stderr
    # Where attempts run: "auto" (a container engine when one answers and holds the runner image,
    # else the host, saying why in `executor_note`), "container" (an engine or refuse to start),
    # "docker" / "podman" (that engine or refuse), "host" (the host runner, no containers).
    executor: str = "host"
    executor_note: str | None = None
    # The name its state file goes by (labbatch/local/state.py); the lab's name by default.
    name: str | None = None
    # Where the lab's buckets, ledger and logs are kept across restarts; None: gone at stop.
    data_dir: Path | None = None
    # IAM as AWS evaluates it (labbatch.local.iam): "strict" refuses what the synthesized policies
    # do not allow, "warn" allows it and says so, "off" runs every principal as one (no policies).
    iam: str = "off"
    # With IAM on: write, at stop, every action each principal used and the statement that allowed it.
    iam_report: Path | None = None
    _started: list = field(default_factory=list)

    def start(self) -> dict[str, Any]:
        """Bring everything up; return what `labbatch local` prints (and writes to its state file).
        Raises LabAlreadyRunning, before starting anything, when a live lab has the same name."""
        began = time.perf_counter()
        state = StateFile(self.name or self.lab.name)
        state.claim()
        self._started.append(state.release)
        # The handlers and boto3 in this process find the lab through the environment: a lab run in
        # another program's process (the demo, tests) gives it its own environment back at stop.
        self._started.append(_environment_restorer())
        # First: an engine that was insisted on and is missing stops everything before it starts.
        container_runner = self._container_runner()
        credentials = ("LBLOCAL" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
        self.emulator = Emulator()
        self.emulator.start()
        self._started.append(self.emulator.stop)
        emulated = self.emulator.create_lab(self.lab, credentials=credentials)
        restored = self._restore(emulated, credentials)
        iam = self._start_iam(emulated, credentials)

        # The handlers, boto3 in this process and every job's runner reach AWS through these.
        aws_env = {
            "AWS_DEFAULT_REGION": emulated.region, "AWS_REGION": emulated.region,
            "AWS_ENDPOINT_URL": emulated.endpoint,
        }
        for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID",
                         "AWS_SECRET_ACCESS_KEY"):
            os.environ.pop(variable, None)
        if iam is None:
            aws_env.update(AWS_ACCESS_KEY_ID=credentials[0], AWS_SECRET_ACCESS_KEY=credentials[1])
        os.environ.update(aws_env)
        if iam is not None:
            # Jobs get the job role's credentials as ECS gives them: from an endpoint, never as keys.
            job_role = iam.role_arns.get("job-role")
            if job_role is None:
                raise RuntimeError(f"lab {self.lab.name}: the synthesized templates give its job definitions no job role")
            aws_env.update(self._credentials_endpoint.environment(iam.keys["job-role"], job_role))
        # Host jobs find the runner and demo tools in this interpreter's bin. When PATH names it
        # already, its order stands: whatever the scientist put before it (a workflow engine's
        # own env, whose `python` a TES task runs) comes first, as in an image of their own.
        bin_dir = str(Path(sys.executable).parent)
        host_path = os.environ.get("PATH", "")
        job_env = {**aws_env, "PATH": host_path if bin_dir in host_path.split(os.pathsep)
                   else os.pathsep.join([bin_dir, host_path])}

        # Job logs are written as ECS's awslogs driver writes them: with the task execution role.
        logs = self.emulator.client("logs", emulated.region, self._keys(iam, "execution-role", credentials))
        log_lock = threading.Lock()
        streams: set[str] = set()

        def to_log_group(stream: str, lines: list[str]) -> None:
            with log_lock:
                if stream not in streams:
                    logs.create_log_stream(logGroupName=emulated.log_group, logStreamName=stream)
                    streams.add(stream)
            now = int(time.time() * 1000)
            for batch in awslogs.batches(awslogs.events(lines)):
                try:
                    logs.put_log_events(logGroupName=emulated.log_group, logStreamName=stream,
                                        logEvents=[{"timestamp": now, "message": message} for message in batch])
                except Exception as exc:  # noqa: BLE001 - as the awslogs driver: this batch is lost, not the stream
                    print(f"labbatch local: {len(batch)} log events of {stream} not stored: {exc}", file=sys.stderr)

        # The status updater must exist before the first event; it reads the same settings.
        gpus = container_runner is not None and nvidia_runtime(container_runner.engine)
        settings = local_settings(self.lab, emulated, gpus=gpus)
        os.environ[SETTINGS_VARIABLE] = json.dumps(settings, separators=(",", ":"))
        if self.lab.alerts.failed_jobs:
            os.environ["LABBATCH_ALERT_TOPIC_ARN"] = emulated.alert_topic_arn
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "labbatch-local")
        status = _import_handler("labbatch_status")

        updater_name = f"labbatch-{self.lab.name}-status"

        rules = self.event_rules = EventRules(iam.event_patterns) if iam is not None else None
        as_updater = self._acting_as(iam, "status-updater")

        def to_status_updater(event: dict) -> None:
            # EventBridge invokes the updater only with events a rule's pattern matches (rules.py).
            if rules is not None and not rules.matching(event):
                rules.dropped += 1
                return
            # EventBridge invokes the updater asynchronously, one event per invocation.
            context = LocalLambdaContext(
                function_name=updater_name,
                invoked_function_arn=f"arn:aws:lambda:{emulated.region}:{emulated.account}:function:{updater_name}",
                aws_request_id=str(uuid.uuid4()), log_group_name=f"/aws/lambda/{updater_name}",
                memory_limit_in_mb=512, deadline=time.monotonic() + 10)
            with as_updater():
                status.lambda_handler(event, context)

        self.batch = LocalBatch(
            container_runner=container_runner, gpus=gpus,
            **registration(local_layout(self.lab), self.lab.name),
            spot_interruption_rate=self.spot_interruption_rate,
            random_seed=self.random_seed,
            on_state_change=to_status_updater,
            log_sink=to_log_group,
            extra_env=job_env,
            kill_grace_seconds=self.kill_grace_seconds,
            region=emulated.region,
            account=emulated.account,
            max_memory_mib=machine_memory_mib() - RESERVED_MEMORY_MIB,
        )
        service = LocalBatchService(self.batch)
        if iam is not None:
            service.enforce(iam.authorizer)
        service.start()
        self._started.append(service.close)
        os.environ["AWS_ENDPOINT_URL_BATCH"] = service.endpoint_url

        api = _import_handler("labbatch_api")
        caller_arn = f"arn:aws:iam::{emulated.account}:user/{LOCAL_CALLER}"
        # With TES on, /ga4gh/... takes the lab's bearer tokens, as the deployed API's authorizer does,
        # and the local scientist gets one at start.
        token_check, tes_token = None, None
        if self.lab.tes.allowed_images:
            dynamodb = self.emulator.client("dynamodb", emulated.region, credentials)
            # The API's authorizer function reads tokens with its own role (local mode created the first).
            reader = self.emulator.client("dynamodb", emulated.region, self._keys(iam, "authorizer", credentials))
            get_record = tokens.dynamodb_getter(reader, settings["table"])
            token_check = lambda token: tokens.check(token, get_record)  # noqa: E731
            tes_token, record = tokens.new_token(owner=caller_arn, name="labbatch local")
            dynamodb.put_item(TableName=settings["table"], Item=to_item(record))
        scientist = credentials if iam is None else self._keys(iam, "scientist", credentials)[:2]
        if iam is not None:
            caller_arn = iam.authorizer.principal("scientist").arn
        as_handler = self._acting_as(iam, "api-handler")

        def api_handler(event: dict, context: Any) -> Any:
            with as_handler():
                return api.lambda_handler(event, context)

        self.gateway = LocalApiGateway(
            api_handler, region=emulated.region, credentials=scientist,
            caller_arn=caller_arn, account_id=emulated.account,
            port=self.port, log=self.log, token_check=token_check,
            invoke_check=self._invoke_check(iam, emulated) if iam is not None else None)
        self.gateway.start()
        self._started.append(self.gateway.stop)

        self.info = {
            "api": self.gateway.url,
            "aws_endpoint": emulated.endpoint,
            # Batch's calls (e.g. `aws batch update-job-queue --endpoint-url ...`): the executor's.
            "batch_endpoint": service.endpoint_url,
            "lab": self.lab.name,
            "region": emulated.region,
            "buckets": emulated.buckets,
            # The scientist's (the lab member's) keys; under strict IAM the lab's roles have their own.
            "credentials": {"access_key_id": scientist[0], "secret_access_key": scientist[1]},
            "iam": self.iam,
            "log_group": emulated.log_group,
            # GA4GH TES (null unless the lab lists tes.allowed_images): py-tes 1.x's base URL, and
            # a token for it (`labbatch engine-config` prints every engine's settings).
            "tes_endpoint": self.gateway.url if tes_token else None,
            "tes_token": tes_token,
            "alert_topic": emulated.alert_topic_arn,
            "kms_key": emulated.key_arn,  # null unless the lab says `encryption: kms`
            "scratch": str(self.batch.scratch_root),
            "executor": container_runner.engine if container_runner is not None else "host",
            # The lab file's `local:` block: local images standing in for the pipelines' own (used
            # in containers), and pipelines whose requests were scaled down to this machine.
            "stand_ins": stand_ins(self.lab),
            "fitted_to_machine": {name: {"from": {"vcpus": self.lab.pipelines[name].vcpus,
                                                  "memory_mib": self.lab.pipelines[name].memory_mib},
                                         "to": fitted}
                                  for name, fitted in fitted_to_machine(self.lab).items()},
            # GPU pools' jobs run only with an engine that has an NVIDIA runtime (`--gpus`).
            "gpus": gpus,
            # Kept across restarts only with --data-dir; otherwise everything goes at stop.
            "data_dir": str(self.data_dir) if self.data_dir is not None else None,
            "ephemeral": self.data_dir is None,
            **({"restored": dataclasses.asdict(restored)} if restored is not None else {}),
            "ready_seconds": round(time.perf_counter() - began, 3),
            "name": state.name,
            "pid": state.pid,
        }
        state.publish(self.info)  # mode 600: it holds the local credentials
        return self.info

    def _start_iam(self, emulated: EmulatedLab, credentials: tuple[str, str]) -> LabIam | None:
        """Each principal with its own credentials and its policies from the synthesized templates;
        from here on the emulator and Batch check every call (self.iam: strict or warn)."""
        if self.iam == "off":
            return None
        if self.iam not in ("strict", "warn"):
            raise ValueError(f"iam is {self.iam!r} (allowed: strict, warn, off)")
        stacks = assembly.templates(self.lab)
        iam = lab_iam.build(stacks, lab=self.lab.name, account=emulated.account, region=emulated.region,
                            buckets=emulated.buckets, key_arn=emulated.key_arn, log_group=emulated.log_group,
                            mode=self.iam, unrestricted=[credentials[0]],
                            ssm={names.kms_key_parameter(self.lab.name): emulated.key_arn} if emulated.key_arn else {},
                            lab_account=self.lab.account, api_principals=list(self.lab.api.principals))
        self.emulator.enforce(iam.authorizer)
        self._started.append(install_default_session(emulated.region))
        self._credentials_endpoint = CredentialsEndpoint().start()
        self._started.append(self._credentials_endpoint.stop)
        if self.iam_report is not None:
            report = self.iam_report
            # Runs after the jobs and the API have stopped (stops run in reverse order).
            self._started.append(lambda: iam.authorizer.write_report(str(report)))
        self.iam_state = iam
        return iam

    @staticmethod
    def _keys(iam: LabIam | None, principal: str, fallback: tuple[str, str]) -> tuple[str, ...]:
        if iam is None:
            return fallback
        keys = iam.keys.get(principal)
        if keys is None:
            raise RuntimeError(f"the synthesized templates define no {principal} principal")
        return (keys.access_key_id, keys.secret_access_key) + ((keys.session_token,) if keys.session_token else ())

    @staticmethod
    def _acting_as(iam: LabIam | None, principal: str):
        if iam is None:
            return contextlib.nullcontext
        keys = iam.keys[principal]
        return lambda: acting_as(keys)

    @staticmethod
    def _invoke_check(iam: LabIam, emulated: EmulatedLab):
        def check(method: str, path: str) -> str | None:
            arn = f"arn:aws:execute-api:{emulated.region}:{emulated.account}:localapigw/local/{method}{path}"
            try:
                iam.authorizer.check(iam.authorizer.principal("scientist"), [Request("execute-api:Invoke", arn)])
            except Refused as refused:
                return refused.message
            return None
        return check

    def _restore(self, emulated: EmulatedLab, credentials: tuple[str, str]) -> Restored | None:
        """With a data dir: its data into the new emulator, saving from now on; its final save
        comes at stop after the jobs have stopped (this stop runs after theirs)."""
        if self.data_dir is None:
            return None
        data = LabData(self.data_dir, lab=self.lab.name, buckets=emulated.buckets, table=emulated.table,
                       log_group=emulated.log_group,
                       client=lambda service: self.emulator.client(service, emulated.region, credentials))
        restored = data.restore() if data.claim() else None
        data.start_autosave()
        self._started.append(data.stop)
        return restored

    def _container_runner(self) -> ContainerRunner | None:
        """The engine every attempt runs in, or None for the host executor (see `executor`)."""
        if self.executor == "host":
            return None
        if self.executor not in ("auto", "container", *ENGINES):
            raise ValueError(f"executor is {self.executor!r} (allowed: auto, container, host, {', '.join(ENGINES)})")
        candidates = ENGINES if self.executor in ("auto", "container") else (self.executor,)
        engine = find_engine(candidates)
        try:
            if engine is None:
                raise DockerUnavailable(f"no container engine answered ({' / '.join(f'{e} info' for e in candidates)})")
            tree = runner_tree(engine, os.environ.get("LABBATCH_RUNNER_IMAGE") or RUNNER_IMAGE)
        except DockerUnavailable as exc:
            if self.executor != "auto":
                raise
            self.executor_note = f"jobs run on this machine, not in containers: {exc}"
            return None
        runner = ContainerRunner(engine, tree, images={DEMO_IMAGE: DEMO_TAG, **stand_ins(self.lab)})
        orphans = remove_orphans(engine)
        if orphans:
            print(f"labbatch local: removed {len(orphans)} container(s) left by a local mode that was killed: "
                  f"{', '.join(orphans)}", file=sys.stderr)
        missing = sorted({f"{name} ({runner.local_image(p.image)})" for name, p in self.lab.pipelines.items()
                          if image_id(engine, runner.local_image(p.image)) is None})
        if missing:
            self.executor_note = (f"these pipelines' images are not in the local {engine} engine, so their jobs "
                                  f"will fail (local mode never pulls): {', '.join(missing)}")
        return runner

    def stop(self) -> None:
        """Stop every job (SIGTERM, then SIGKILL), the API and the emulator; remove local scratch."""
        while self._started:
            stop = self._started.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the rest; say what failed
                print(f"labbatch local: while stopping: {exc}", file=sys.stderr)

    def __enter__(self) -> LocalLab:
        if getattr(self, "info", None):
            return self  # started already
        try:
            self.start()
        except BaseException:
            self.stop()  # what did start, and the state file's claim
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
