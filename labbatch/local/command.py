"""`labbatch local`: run a lab on this machine until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from labbatch.lab import cdk_app
from labbatch.error_line import print_error
from labbatch.lab.loader import DEFAULT_LABS_DIR, load_one_lab

EXIT_OK, EXIT_FAILED = 0, 1
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def local_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lab", default="example", metavar="NAME", help="the lab to run (default: example)")
    parser.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR, metavar="DIR",
                        help="folder of lab files (default: the project's labs/)")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="what the client finds it by (--lab NAME; default: the lab's name); "
                        "one running lab per name")
    parser.add_argument("--port", type=int, default=0, metavar="PORT", help="the API's port (default: any free one)")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="keep the lab's buckets, ledger and job logs in DIR across restarts (restored at "
                             "start, saved as they change and at stop); without it the lab is ephemeral")
    parser.add_argument("--spot-interruptions", type=float, default=0.0, metavar="RATE",
                        help="share (0-1) of spot attempts to reclaim while they run (default: 0)")
    parser.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-containers", action="store_true",
                        help="run every job on this machine with the host's runner and tools, even when a "
                             "container engine is present (default: in containers when docker or podman "
                             "answers and holds labbatch-runner:local)")
    parser.add_argument("--iam", choices=("strict", "warn", "off"), default=None,
                        help="IAM as AWS evaluates it, with each principal's policies from the lab's synthesized "
                             "templates: strict refuses (AccessDenied) what they do not allow, warn allows it and "
                             "says so, off runs every principal with one all-powerful key (default: strict; the "
                             "first start of a lab synthesizes it, about 10 s, then it is cached. Installed from a "
                             "wheel, which has no CDK app to synthesize with: off, said at start)")
    parser.add_argument("--iam-report", type=Path, default=None, metavar="FILE",
                        help="write, at stop, every action and resource each principal used and the policy "
                             "statement that allowed it (JSON)")
    # Deprecated: containers are the default now; --docker only insists on an engine.
    parser.add_argument("--docker", action="store_true", help=argparse.SUPPRESS)


def fail(code: str, message: str) -> int:
    print_error(code, message)
    return EXIT_FAILED


def port_in_use(port: int) -> bool:
    if port == 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def run_local(args: argparse.Namespace) -> int:
    if not 0.0 <= args.spot_interruptions <= 1.0:
        return fail("bad_argument", f"--spot-interruptions is {args.spot_interruptions} (allowed: 0-1)")
    if args.name is not None and not NAME.fullmatch(args.name):
        return fail("bad_argument", f"--name is {args.name!r} (allowed: letters, digits, '-', '_', up to 64)")
    if not 0 <= args.port <= 65535:
        return fail("bad_argument", f"--port is {args.port} (allowed: 0-65535)")
    lab, problem = load_one_lab(args.labs_dir, args.lab)
    if lab is None:
        return fail("bad_lab", problem)
    if port_in_use(args.port):
        return fail("port_busy", f"127.0.0.1:{args.port} is already in use; pick another --port or leave it out")
    iam, iam_note = resolve_iam(args.iam)
    if iam is None:
        return fail("no_cdk_app", iam_note)
    args.iam, args.iam_note = iam, iam_note
    if args.iam_report is not None and args.iam == "off":
        return fail("bad_argument", "--iam-report needs IAM on (--iam strict or warn): with --iam off nothing is evaluated")
    if args.docker and args.no_containers:
        return fail("bad_argument", "--docker and --no-containers contradict each other; give one")
    executor = "host" if args.no_containers else "container" if args.docker else "auto"

    # `kill -USR1 PID` prints every thread's stack to stderr: what a lab that will not stop is doing.
    try:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    except (AttributeError, OSError, ValueError):
        pass  # no real stderr to write to (run in-process under a capture): nothing to dump into
    stop = threading.Event()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, lambda *_: stop.set())
    try:
        return _serve(args, lab, executor, stop)
    finally:
        # Run in-process (tests, the demo), the caller gets its own signal handling back.
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        faulthandler.unregister(signal.SIGUSR1)


def resolve_iam(asked: str | None) -> tuple[str | None, str | None]:
    """The IAM mode to run with, and what to say about it: strict unless asked otherwise, where the
    lab's templates can be synthesized (a checkout); off, said, where they cannot (a wheel); and
    None, with the reason, when strict or warn is asked for where they cannot."""
    if cdk_app.available():
        return asked or "strict", None
    if asked in ("strict", "warn"):
        return None, f"--iam {asked} reads each principal's policies from the lab's templates, but " \
                     f"{cdk_app.unavailable_reason()}: run from a checkout (make setup), or use --iam off"
    return "off", ("IAM off: every principal acts with one all-powerful key, because "
                   f"{cdk_app.unavailable_reason()} (strict IAM runs from a checkout)")


def local_mode_lines(info: dict[str, Any]) -> list[str]:
    """What the lab file's `local:` block changed, in words: stand-in images and scaled pipelines."""
    lines = []
    if info.get("stand_ins"):
        where = ("in containers (here jobs run on the host, with its own tools)"
                 if info.get("executor") == "host" else f"in {info.get('executor')} containers")
        lines.append(f"local images stand in {where}: "
                     + ", ".join(f"{image} -> {local}" for image, local in info["stand_ins"].items()))
    if info.get("fitted_to_machine"):
        lines.append("pipelines scaled to this machine (local.fit_to_machine): " + ", ".join(
            f"{name} {change['from']['vcpus']} -> {change['to']['vcpus']} vCPUs, "
            f"{change['from']['memory_mib']:,} -> {change['to']['memory_mib']:,} MiB"
            for name, change in info["fitted_to_machine"].items()))
    return lines


def _serve(args: argparse.Namespace, lab: Any, executor: str, stop: threading.Event) -> int:
    from labbatch.local.docker_runner import DockerUnavailable
    from labbatch.local.lab import LocalLab
    from labbatch.local.persistence import DataDirError
    from labbatch.local.state import LabAlreadyRunning

    local = LocalLab(lab, port=args.port, spot_interruption_rate=args.spot_interruptions,
                     random_seed=args.seed, executor=executor, name=args.name, iam=args.iam,
                     iam_report=args.iam_report.resolve() if args.iam_report is not None else None,
                     data_dir=args.data_dir.resolve() if args.data_dir is not None else None)
    try:
        info = local.start()
    except LabAlreadyRunning as exc:
        local.stop()
        return fail("lab_running", str(exc))
    except DockerUnavailable as exc:
        local.stop()
        return fail("no_docker", str(exc))
    except DataDirError as exc:
        local.stop()
        return fail("bad_data_dir", str(exc))
    except Exception as exc:  # whatever stopped the start, nothing it began is left running
        local.stop()
        return fail("start_failed", f"{type(exc).__name__}: {exc}")
    print(json.dumps(info), flush=True)
    # stdout carries that one line only: everything else (the handlers' logs) goes to stderr, or a
    # caller that reads just the first line would fill the pipe and stall the lab.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if local.executor_note:
        print(f"labbatch local: {local.executor_note}", file=sys.stderr, flush=True)
    if getattr(args, "iam_note", None):
        print(f"labbatch local: {args.iam_note}", file=sys.stderr, flush=True)
    print(f"labbatch local: lab {lab.name} ready in {info['ready_seconds']:.2f} s at {info['api']}, "
          f"jobs run {'on this machine' if info['executor'] == 'host' else 'in ' + info['executor'] + ' containers'} "
          "(Ctrl-C to stop)", file=sys.stderr, flush=True)
    for line in local_mode_lines(info):
        print(f"labbatch local: {line}", file=sys.stderr, flush=True)
    if info["ephemeral"]:
        print("labbatch local: the lab is ephemeral: its buckets, ledger and logs are gone when it stops "
              "(keep them with --data-dir DIR)", file=sys.stderr, flush=True)
    elif info.get("restored"):
        restored = info["restored"]
        print(f"labbatch local: restored from {info['data_dir']}: {restored['objects']} objects, "
              f"{restored['ledger_items']} ledger items, {restored['log_events']} log events"
              + (f"; {restored['stopped_jobs']} unfinished job(s) marked FAILED (they stopped with the lab)"
                 if restored["stopped_jobs"] else ""), file=sys.stderr, flush=True)
    try:
        # Timed: the kernel may hand SIGTERM to any of the lab's threads, and Python runs the
        # handler only when the main thread wakes; an untimed wait could sleep through it for ever.
        while not stop.wait(0.2):
            pass
    finally:
        print("labbatch local: stopping jobs and the emulator", file=sys.stderr, flush=True)
        local.stop()
    return EXIT_OK
