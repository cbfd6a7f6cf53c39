"""Test suite wall time: the README's test command, serial and with pytest-xdist's `-n 2`.

    .venv/bin/python bench/suite_time.py [--skip-parallel]

Runs what `make test` runs (`.venv/bin/python -m pytest -q -p no:cacheprovider`, with the
Makefile's PATH: node_modules/.bin and .venv/bin first) once serially and once with `-n 2`,
and `pytest --collect-only` as the floor (interpreter start-up, imports, collection). There is
no natural baseline: the figures are set against the 5-minute goal and against that floor.
One run each (a run takes minutes); the machine's load average is printed beside each.

Goal (issue 7): the README's test command under 5 minutes on this 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import PYTHON, ROOT, Summary, machine_line, verdict  # noqa: E402

BASE = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
GOAL_SECONDS = 300


def run(extra: list[str]) -> tuple[float, str, int, set[str]]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(ROOT / "node_modules" / ".bin"), str(ROOT / ".venv" / "bin"), env.get("PATH", "")])
    began = time.perf_counter()
    result = subprocess.run([*BASE, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - began
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    failed = {line.split()[1] for line in lines if line.startswith(("FAILED ", "ERROR ")) and len(line.split()) > 1}
    return elapsed, (lines[-1] if lines else result.stderr.strip()[-300:]), result.returncode, failed


def outcome(line: str) -> str:
    """'5 failed, 505 passed in 114.03s' -> '5 failed, 505 passed'."""
    return re.sub(r"\s+in\s+[\d.]+s.*$", "", line.strip("= "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-parallel", action="store_true")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    print(f"test suite: {machine_line()}; one run each", flush=True)

    variants = [("collect only (floor)", ["--collect-only"]), ("make test (serial)", [])]
    if not args.skip_parallel:
        variants.append(("make test + -n 2 (xdist)", ["-n", "2"]))
    results, failures = {}, {}
    for name, extra in variants:
        load = os.getloadavg()[0]
        elapsed, last, code, failed = run(extra)
        results[name] = (elapsed, last, code)
        failures[name] = failed
        print(f"  {name:<28} {elapsed:7.1f} s   exit {code}   load {load:.2f}   {outcome(last)}", flush=True)

    floor = results["collect only (floor)"][0]
    serial, serial_line, serial_code = results["make test (serial)"]
    print(f"\n{'command':<28} {'seconds':>8} {'vs 5-min goal':>14} {'vs collect-only':>16}")
    for name, (elapsed, _, _) in results.items():
        print(f"{name:<28} {elapsed:8.1f} {elapsed / GOAL_SECONDS:13.2f}x {elapsed / floor:15.1f}x")

    summary = Summary("test suite")
    summary.add("make test (serial)", f"{serial:.0f} s", f"collect-only {floor:.1f} s", f"{serial / GOAL_SECONDS:.2f}x of 5 min",
                "< 300 s", serial < GOAL_SECONDS)
    summary.add("  outcome", outcome(serial_line), "", "", "", None)
    if "make test + -n 2 (xdist)" in results:
        parallel, parallel_line, parallel_code = results["make test + -n 2 (xdist)"]
        print(f"\n-n 2 / serial: {parallel / serial:.2f}x (-n 2 takes {parallel - serial:+.0f} s); serial: "
              f"{outcome(serial_line)}; -n 2: {outcome(parallel_line)}")
        # Counts can differ when tests are added between the two runs; what must agree is the verdict.
        same = serial_code == parallel_code and failures["make test (serial)"] == failures["make test + -n 2 (xdist)"]
        print(f"same verdict (exit code and failing tests) both ways: {'yes' if same else 'NO'}; goal < 5 min: {verdict(serial < GOAL_SECONDS)} serial, "
              f"{verdict(parallel < GOAL_SECONDS)} with -n 2")
        summary.add("make test -n 2", f"{parallel:.0f} s", f"serial {serial:.0f} s", f"{parallel / serial:.2f}x",
                    "< 300 s", parallel < GOAL_SECONDS)
        summary.add("  outcome -n 2", outcome(parallel_line), "", "", "", None)
    for name, failed in failures.items():
        if failed:
            print(f"\nfailing in {name}:" + "".join(f"\n  {test}" for test in sorted(failed)))
    summary.write(args.summary)


if __name__ == "__main__":
    main()
