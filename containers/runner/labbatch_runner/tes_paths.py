"""Where a TES task's absolute paths live, and where the runner may write them.

A task names absolute paths (`/data/in.bam`, `/tmp`, an executor's workdir). Written as they
are, they would land on the container's own writable layer, which on AWS is the instance's
small root volume: `disk_gb` (which sizes and admits on the scratch volume) would mean nothing.
So, in the task's container, every top-level directory a task path names, and /tmp, gets a
home on the attempt's scratch directory (`give_homes`), before anything is staged.

Three places may run a task (`placement`):
- `container`: the runner started from its mounted tree inside the task's image, as root;
  task directories get homes under `<attempt>/root/`.
- `private_tmp`: local mode's host executor started the runner in a private mount namespace
  with a fresh per-attempt directory mounted over /tmp (labbatch/local/batch/private_tmp.py).
  Only /tmp (and the scratch directory) may be named: the host's / is never written.
- `test`: LABBATCH_TES_ALLOW_HOST=1, tests with paths under a temporary directory; homes are
  given only under LABBATCH_TES_ROOT, the directory that stands for / there.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from labbatch_contract import runner_env
from labbatch_contract.outcome import ExitCode

from .errors import RunnerError
from .runlog import RunnerLog

ALLOW_HOST = "LABBATCH_TES_ALLOW_HOST"
TEST_ROOT = "LABBATCH_TES_ROOT"
RUNNER_TREE = "/opt/labbatch/runner"
TMP = "tmp"
# Never given a home whatever a task names: the kernel's filesystems, and /etc, where the engine
# mounts resolv.conf, hosts and hostname.
NEVER_HOMED = frozenset({"proc", "sys", "dev", "etc"})
_WILDCARDS = set("*?[")


@dataclass(frozen=True)
class TaskPath:
    what: str  # where the task names it, e.g. "outputs[0].path"
    path: str
    is_dir: bool  # the path itself is a directory (workdir, volume, DIRECTORY), not a file in one


def task_paths(task: Mapping[str, Any]) -> Iterator[TaskPath]:
    for index, item in enumerate(task.get("inputs", [])):
        yield TaskPath(f"inputs[{index}].path", item["path"], item.get("type") == "DIRECTORY")
    for index, item in enumerate(task.get("outputs", [])):
        yield TaskPath(f"outputs[{index}].path", item["path"], item.get("type") == "DIRECTORY")
    for index, volume in enumerate(task.get("volumes", [])):
        yield TaskPath(f"volumes[{index}]", volume, True)
    for index, executor in enumerate(task.get("executors", [])):
        for key in ("workdir", "stdin", "stdout", "stderr"):
            if executor.get(key):
                yield TaskPath(f"executors[{index}].{key}", executor[key], key == "workdir")


def check_absolute(task: Mapping[str, Any]) -> None:
    """Every path a task names is absolute and has no `..`: relative ones would land wherever
    the runner's cwd happens to be, and `..` would step out of the directory a check approved."""
    for item in task_paths(task):
        path = item.path
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
            raise RunnerError(ExitCode.CONTRACT, f"{runner_env.TES_TASK}: {item.what} {path!r} is not an "
                              "absolute path without '..'")


def mount_points() -> set[str]:
    """Every mount point of this mount namespace. From mountinfo, since os.path.ismount cannot
    see a bind mount of a directory of the same filesystem (same device, other inode)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                    for line in mountinfo if line.strip()}
    except OSError:
        return set()


def _in_private_tmp(launcher_namespace: str) -> bool:
    try:
        own = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False
    # The launcher's namespace id came through the environment: a different one here, and /tmp
    # a mount point, means the mount over /tmp is this namespace's own, not the host's /tmp.
    return own != launcher_namespace and "/tmp" in mount_points()


def placement(environ: Mapping[str, str]) -> str:
    """`container`, `private_tmp` or `test`; a contract error anywhere else (a host runner
    would write the task's paths into the host's /)."""
    if sys.executable.startswith(RUNNER_TREE + "/"):
        return "container"
    launcher_namespace = environ.get(runner_env.TES_PRIVATE_TMP)
    if launcher_namespace:
        if not _in_private_tmp(launcher_namespace):
            raise RunnerError(ExitCode.CONTRACT, f"{runner_env.TES_PRIVATE_TMP} is set, but /tmp is not a mount of "
                              "this runner's own private mount namespace: refusing to write the task's paths "
                              "on the host")
        return "private_tmp"
    if environ.get(ALLOW_HOST) == "1":
        return "test"
    raise RunnerError(ExitCode.CONTRACT, "TES tasks run only inside their image's container (the runner writes "
                      "their absolute paths), or with local mode's host executor, which gives each task a "
                      "private /tmp; this runner is on a host without one")


def _under(path: PurePosixPath, directory: PurePosixPath) -> bool:
    return path == directory or directory in path.parents


def check_host_paths(task: Mapping[str, Any], scratch_dir: Path) -> None:
    """With the host executor only the private /tmp (and scratch) is the task's: every other
    path would be the host's own. Refused before anything is downloaded, naming each path."""
    allowed = (PurePosixPath("/tmp"), PurePosixPath(os.path.normpath(scratch_dir)))
    outside = [f"{item.what} {item.path!r}" for item in task_paths(task)
               if not any(_under(PurePosixPath(os.path.normpath(item.path)), place) for place in allowed)]
    if outside:
        raise RunnerError(ExitCode.CONTRACT, f"{runner_env.TES_TASK}: {', '.join(outside)}: outside /tmp. The host "
                          "executor runs TES tasks on this machine with only a private /tmp of their own (it never "
                          "writes the host's /); use paths under /tmp, or run local mode with a container engine "
                          "(without --no-containers)")


def top_directories(task: Mapping[str, Any], root: PurePosixPath) -> set[str]:
    """Names of the directories right under `root` that the task's paths lie in."""
    names = set()
    for item in task_paths(task):
        path = PurePosixPath(os.path.normpath(item.path))
        if not _under(path, root) or path == root:
            continue
        parts = path.relative_to(root).parts
        if not item.is_dir:
            parts = parts[:-1]  # a file right under root names no directory
        for index, part in enumerate(parts):
            if _WILDCARDS & set(part):
                parts = parts[:index]
                break
        if parts:
            names.add(parts[0])
    return names


def _empty_directory(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


def give_homes(task: Mapping[str, Any], *, root: Path, homes: Path, keep: tuple[Path, ...],
               log: RunnerLog) -> dict[str, Path]:
    """Links each top-level directory the task names (and root's tmp) to a directory under
    `homes`, on scratch: created when the image lacks it, replacing it when the image has it
    empty (its mode and owner kept: /tmp's 1777); one that holds the image's files, is a mount or
    a link is left alone, and the log says that writes there go to the image's layer. Never
    `keep`'s top-level directories (the runner's tree, scratch) or NEVER_HOMED. Returns name -> home."""
    base = PurePosixPath(root)
    kept = {PurePosixPath(p).relative_to(base).parts[0] for p in map(PurePosixPath, keep)
            if _under(p, base) and p != base}
    given, mounts = {}, mount_points()
    for name in sorted((top_directories(task, base) | {TMP}) - NEVER_HOMED - kept):
        place, home = root / name, homes / name
        try:
            if place.is_symlink() and place.exists():
                log.info(f"task directory {place} is a link in the image: writes there go where it points, "
                         "not to scratch")
                continue
            if place.exists() and not place.is_symlink():
                if place.is_dir() and (place.is_mount() or str(place) in mounts):
                    log.info(f"task directory {place} is a mount: left as it is, writes there go to that mount")
                    continue
                if not place.is_dir() or not _empty_directory(place):
                    what = "is not a directory" if not place.is_dir() else "holds the image's files"
                    log.info(f"task directory {place} {what}: left as it is, so writes there go to the image's "
                             "layer, not scratch")
                    continue
                _replace(place, home)
            else:
                home.mkdir(parents=True)
                if name == TMP:
                    os.chmod(home, 0o1777)  # anyone may write /tmp, and delete only their own files
                if place.is_symlink():
                    place.unlink()  # dangling: nothing of the image's is there to keep
                place.symlink_to(home)
        except OSError as exc:
            log.info(f"task directory {place}: no home on scratch ({exc}): writes there go to the image's layer")
            continue
        given[name] = home
        log.info(f"task directory {place}: on scratch, at {home}")
    return given


def _replace(place: Path, home: Path) -> None:
    """An empty directory of the image becomes a link to `home`, which takes its mode and owner."""
    stat = place.stat()
    home.mkdir(parents=True)
    os.chmod(home, stat.st_mode & 0o7777)
    try:
        os.chown(home, stat.st_uid, stat.st_gid)
    except PermissionError:
        pass  # not root (tests): the runner's user owns it, and is who writes there
    place.rmdir()
    try:
        place.symlink_to(home)
    except OSError:
        place.mkdir(stat.st_mode & 0o7777)  # as it was, so the task still finds it
        raise
