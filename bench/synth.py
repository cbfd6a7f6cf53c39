"""Synth scaling: `app.py` over 1, 10 and 50 labs against an empty CDK app (the jsii floor).

    .venv/bin/python bench/synth.py [--repeats 3] [--labs 1,10,50] [--no-nag-labs 1,50]

Each synth is a fresh `.venv/bin/python app.py`, run the way `cdk synth` runs it (CDK_OUTDIR,
CDK_CONTEXT_JSON = cdk.json's context plus `labs_dir`, node_modules/.bin first on PATH, no AWS
variables), over lab files generated from labs/example.yaml with other names. The baseline is
an app with no stacks (`cdk.App().synth()`: aws-cdk-lib loaded in jsii), synthesized the same way in the same run. app.py runs cdk-nag
(AwsSolutions and HIPAA Security) on every synth; the `no nag` rows run the same app.py with
`Validations.add_plugins` made a no-op (cdk_nag is still imported: the constructs acknowledge
its rules), which is nag's share. Variants are interleaved within each repeat, so drift on the
machine spreads over all of them.

Goals (issue 7): 50 labs < 3x the time of 1 lab; 1 lab < 2x the empty app.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import PYTHON, ROOT, Summary, machine_line, median, ratio_spread, spread, verdict  # noqa: E402

# No stacks: cdk.json turns on CloudFormation's default rules, which refuse an empty stack.
EMPTY_APP = """\
import aws_cdk as cdk
app = cdk.App()
app.synth()
"""

# app.py exactly as it is, with cdk-nag's validation plugins left out (nag's share of synth).
NO_NAG_APP = """\
import runpy, sys
import aws_cdk as cdk

_real_of = cdk.Validations.of


class _WithoutPlugins:
    def __init__(self, inner):
        self._inner = inner

    def add_plugins(self, *plugins):
        pass

    def __getattr__(self, name):
        return getattr(self._inner, name)


cdk.Validations.of = lambda scope: _WithoutPlugins(_real_of(scope))
sys.argv = [{app!r}]
sys.path.insert(0, {root!r})
runpy.run_path({app!r}, run_name="__main__")
"""


def make_labs(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    example = (ROOT / "labs" / "example.yaml").read_text()
    if "\nname: example\n" not in f"\n{example}":
        raise SystemExit("labs/example.yaml has no top-level `name: example` line to rename")
    for i in range(1, count + 1):
        name = f"bench{i:03d}"
        (directory / f"{name}.yaml").write_text(f"\n{example}".replace("\nname: example\n", f"\nname: {name}\n", 1)[1:])


def synth_env(outdir: Path, labs_dir: Path | None) -> dict[str, str]:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    if labs_dir is not None:
        context = {**context, "labs_dir": str(labs_dir)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # synth needs no credentials
    env.update(CDK_OUTDIR=str(outdir), CDK_CONTEXT_JSON=json.dumps(context))
    env["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def synth_once(script: Path, outdir: Path, labs_dir: Path | None, expect_stacks: int | None) -> float:
    env = synth_env(outdir, labs_dir)
    began = time.perf_counter()
    result = subprocess.run([PYTHON, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"synth of {script.name} ({labs_dir}) failed:\n{result.stderr[-3000:]}")
    manifest = json.loads((outdir / "manifest.json").read_text())
    stacks = [k for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"]
    if expect_stacks is not None and len(stacks) < expect_stacks:
        raise SystemExit(f"{labs_dir}: {len(stacks)} stacks synthesized, expected at least {expect_stacks}")
    if "missing" in manifest:
        raise SystemExit(f"{labs_dir}: synth needed context lookups: {manifest['missing']}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--labs", default="1,10,50", help="lab counts to synthesize (comma-separated)")
    parser.add_argument("--no-nag-labs", default="1,50", help="lab counts also synthesized without nag ('' for none)")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = [int(c) for c in args.labs.split(",") if c]
    no_nag_counts = [int(c) for c in args.no_nag_labs.split(",") if c]

    with tempfile.TemporaryDirectory(prefix="labbatch-bench-synth-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "empty_app.py").write_text(EMPTY_APP)
        (tmp_path / "app_no_nag.py").write_text(NO_NAG_APP.format(app=str(ROOT / "app.py"), root=str(ROOT)))
        for count in counts:
            make_labs(tmp_path / f"labs{count}", count)

        variants: list[tuple[str, Path, Path | None, int | None]] = [("empty app", tmp_path / "empty_app.py", None, None)]
        for count in counts:
            variants.append((f"{count} lab{'s' if count > 1 else ''}", ROOT / "app.py", tmp_path / f"labs{count}", 3 * count))
        for count in no_nag_counts:
            if count in counts:
                variants.append((f"{count} lab{'s' if count > 1 else ''}, no nag", tmp_path / "app_no_nag.py",
                                 tmp_path / f"labs{count}", 3 * count))

        print(f"synth scaling: {machine_line()}; {args.repeats} repeats; app.py with cdk-nag as shipped", flush=True)
        times: dict[str, list[float]] = {name: [] for name, *_ in variants}
        run = 0
        for repeat in range(args.repeats):
            for name, script, labs_dir, stacks in variants:
                run += 1
                seconds = synth_once(script, tmp_path / f"out{run}", labs_dir, stacks)
                times[name].append(seconds)
                print(f"  repeat {repeat + 1}: {name:<16} {seconds:6.2f} s", flush=True)

    empty = times["empty app"]
    label = {c: f"{c} lab{'s' if c > 1 else ''}" for c in counts}
    print(f"\n{'app':<18} {'seconds: median (range)':>26} {'vs empty app':>20} {'vs 1 lab':>20}")
    for name, values in times.items():
        vs_empty = ratio_spread([v / e for v, e in zip(values, empty)])
        vs_one = ""
        if 1 in counts and name != "empty app":
            one = times[label[1] + (", no nag" if name.endswith("no nag") else "")]
            vs_one = ratio_spread([v / o for v, o in zip(values, one)])
        print(f"{name:<18} {spread(values):>26} {vs_empty:>20} {vs_one:>20}")

    summary = Summary("synth")
    print()
    if 1 in counts:
        one = times[label[1]]
        r = [o / e for o, e in zip(one, empty)]
        print(f"1 lab / empty app:   {ratio_spread(r)}   goal < 2x: {verdict(median(r) < 2)}")
        summary.add("1 lab synth", f"{median(one):.2f} s", f"empty app {median(empty):.2f} s",
                    f"{median(r):.2f}x", "< 2x", median(r) < 2)
    for count in counts:
        if count == 1:
            continue
        values = times[label[count]]
        r = [v / o for v, o in zip(values, times[label[1]])] if 1 in counts else []
        per_lab = [(v - o) / (count - 1) for v, o in zip(values, times[label[1]])] if 1 in counts else []
        if r:
            goal = count == 50
            print(f"{count} labs / 1 lab:   {ratio_spread(r)}"
                  + (f"   goal < 3x: {verdict(median(r) < 3)}" if goal else "")
                  + f"   per extra lab {spread(per_lab)}")
            summary.add(f"{count} labs synth", f"{median(values):.2f} s", f"1 lab {median(times[label[1]]):.2f} s",
                        f"{median(r):.2f}x", "< 3x" if goal else "", (median(r) < 3) if goal else None)
            summary.add(f"per extra lab (1->{count})", f"{median(per_lab):.2f} s", "", "", "", None)
    for count in no_nag_counts:
        name = label.get(count)
        if name is None or f"{name}, no nag" not in times:
            continue
        with_nag, without = times[name], times[f"{name}, no nag"]
        shares = [(w - n) / w for w, n in zip(with_nag, without)]
        print(f"cdk-nag's share of {name}: {median(shares) * 100:.0f}% "
              f"({min(shares) * 100:.0f}-{max(shares) * 100:.0f}%), {median(with_nag) - median(without):.2f} s")
        summary.add(f"cdk-nag share, {name}", f"{median(shares) * 100:.0f}%",
                    f"{median(with_nag) - median(without):.2f} s of {median(with_nag):.2f} s", "", "", None)
    if 1 in counts and "1 lab, no nag" in times:
        r = [n / e for n, e in zip(times["1 lab, no nag"], empty)]
        print(f"1 lab without nag / empty app: {ratio_spread(r)}")
    if 1 in counts and 50 in counts and "50 labs, no nag" in times:
        r = [f / o for f, o in zip(times["50 labs, no nag"], times["1 lab, no nag"])]
        print(f"50 labs / 1 lab, both without nag: {ratio_spread(r)}")
        summary.add("50 labs / 1 lab, no nag", f"{median(times['50 labs, no nag']):.2f} s",
                    f"1 lab no nag {median(times['1 lab, no nag']):.2f} s", f"{median(r):.2f}x", "", None)
    summary.write(args.summary)


if __name__ == "__main__":
    main()
