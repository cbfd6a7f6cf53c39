"""TES tasks on the host executor: each attempt's runner in a private mount namespace whose /tmp
is a fresh directory of its own.

A TES task names absolute paths, and engines' tasks live in /tmp (Snakemake's: its script at
/tmp/run_snakemake.sh, workdir /tmp, `mkdir /tmp/conda`). In a container those are the
container's; on the host they would be the host's own, shared by every task and every user. So
the host executor starts a TES attempt's runner as

    unshare --mount --propagation private -- sh -c '<MOUNT_OVER_TMP>' \
        <scratch>/attempts/<task>/ <n> <kept...> labbatch-runner --

(with `--map-root-user` too when not root): /tmp is then `<scratch>/attempts/<task>/`, fresh for
each attempt, on the executor's scratch and removed with the attempt; private propagation keeps
the mount out of the host's namespace, so the host's /tmp never sees it. The runner's own scratch
is `/tmp/.labbatch-scratch` inside it (the executor's scratch may itself lie under the host's
/tmp, which the mount hides). What the launcher itself lives in under the host's /tmp (a
checkout or venv there, kept_host_entries) is bound back in at its own path, so the runner that
starts is this tree's. The runner refuses task paths outside /tmp, and checks that it is
in a namespace other than the launcher's (LABBATCH_TES_PRIVATE_TMP) with /tmp a mount point.
Without a usable `unshare` the attempt does not start, and its reason says why.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from labbatch_contract import runner_env
from labbatch_contract import batch_reasons
from labbatch.local.batch.attempt import AttemptOutcome, RunningAttempt

# $0: the fresh directory; $1: how many names follow; then the names of the host's /tmp entries
# the launcher itself lives in (kept_host_entries), bound into the fresh /tmp at their own paths;
# then the runner's argv.
MOUNT_OVER_TMP = ('fresh=$0; n=$1; shift; while [ "$n" -gt 0 ]; do mkdir -p "$fresh/$1" && '
                  'mount --bind "/tmp/$1" "$fresh/$1" || exit 125; n=$((n - 1)); shift; done; '
                  'mount --rbind "$fresh" /tmp && exec "$@"')
# The runner's LABBATCH_SCRATCH_DIR, as the attempt sees it.
RUNNER_SCRATCH = "/tmp/.labbatch-scratch"
PROBE_TIMEOUT_SECONDS = 30

_probed: dict[str, tuple[tuple[str, ...] | None, str]] = {}
_probe_lock = threading.Lock()


def unshare_prefix(search_path: str) -> tuple[tuple[str, ...] | None, str]:
    """The `unshare ...` argv that can mount over /tmp in a private namespace here, or None and
    why not. Probed once per PATH: it does not change while local mode runs."""
    with _probe_lock:
        if search_path not in _probed:
            _probed[search_path] = _probe(search_path)
        return _probed[search_path]


def _probe(search_path: str) -> tuple[tuple[str, ...] | None, str]:
    unshare = shutil.which("unshare", path=search_path)
    if unshare is None:
        return None, "unshare (util-linux) is not on PATH"
    candidates = [(unshare, "--mount", "--propagation", "private")]
    if os.geteuid() != 0:
        # Unprivileged: a user namespace of its own, where this user is root and may mount.
        candidates.append((unshare, "--mount", "--map-root-user", "--propagation", "private"))
    problems = []
    with tempfile.TemporaryDirectory(prefix="labbatch-private-tmp-probe-") as probe:
        for prefix in candidates:
            try:
                done = subprocess.run([*prefix, "sh", "-c", MOUNT_OVER_TMP, probe, "0", "true"],
                                      env={"PATH": search_path}, stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, timeout=PROBE_TIMEOUT_SECONDS)
            except (OSError, subprocess.TimeoutExpired) as exc:
                problems.append(f"{' '.join(prefix[1:])}: {exc}")
                continue
            if done.returncode == 0:
                return prefix, ""
            said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            problems.append(f"`unshare {' '.join(prefix[1:])}` failed: {said}")
    return None, "; ".join(problems)


def kept_host_entries(env: dict[str, str], fresh: Path) -> list[str]:
    """The entries of the host's /tmp the runner needs to start at all: those holding its
    interpreter, its venv, its PATH and PYTHONPATH and the launcher's sys.path (a checkout or
    venv under /tmp, as a CI clone often is). Hidden by the new /tmp, it would run another
    install's runner or none. Never one that holds the fresh directory itself."""
    places = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.executable, *sys.path,
              *env.get("PATH", "").split(os.pathsep), *env.get("PYTHONPATH", "").split(os.pathsep)]
    tmp = Path("/tmp").resolve()
    fresh = fresh.resolve()
    kept = set()
    for place in places:
        if not place or not os.path.isabs(place):
            continue
        resolved = Path(place).resolve()
        for candidate in (Path(os.path.normpath(place)), resolved):
            if candidate.parent == candidate or tmp not in candidate.parents:
                continue
            top = tmp / candidate.relative_to(tmp).parts[0]
            if top != fresh and top not in fresh.parents and top.exists():
                kept.add(top.name)
    return sorted(kept)


class PrivateTmpAttempt(RunningAttempt):
    """A host attempt of a TES task: `spec.private_tmp` becomes its /tmp, and goes at its end."""

    @property
    def directory(self) -> Path:
        assert self.spec.private_tmp is not None
        return self.spec.private_tmp

    def start(self) -> AttemptOutcome | None:
        prefix, why = unshare_prefix(self.spec.env.get("PATH", os.defpath))
        if prefix is None:
            return AttemptOutcome(False, None, batch_reasons.no_private_tmp(why), batch_reasons.TASK_FAILED_TO_START)
        try:
            (self.directory / RUNNER_SCRATCH.removeprefix("/tmp/")).mkdir(parents=True)
            self.directory.chmod(0o1777)  # a /tmp: anyone writes, and deletes only their own files
            launcher_namespace = os.readlink("/proc/self/ns/mnt")
        except OSError as exc:
            self._clean_up()
            return AttemptOutcome(False, None, batch_reasons.no_private_tmp(str(exc)),
                                  batch_reasons.TASK_FAILED_TO_START)
        self.spec = dataclasses.replace(
            self.spec, argv=[*prefix, "sh", "-c", MOUNT_OVER_TMP, str(self.directory),
                             str(len(kept := kept_host_entries(self.spec.env, self.directory))), *kept,
                             *self.spec.argv],
            env={**self.spec.env, runner_env.TES_PRIVATE_TMP: launcher_namespace})
        not_started = super().start()
        if not_started is not None:
            self._clean_up()
        return not_started

    def _clean_up(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _outcome(self, returncode: int) -> AttemptOutcome:
        # Its processes are gone (the follower killed them all at its exit), and with them the
        # namespace and its mount: on the host this is a plain directory.
        try:
            return super()._outcome(returncode)
        finally:
            self._clean_up()
