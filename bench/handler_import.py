"""Handler cold start: import time of the Lambda handlers in a fresh interpreter, against a bare
`import boto3` in the same run; and the size of what each function deploys.

    .venv/bin/python bench/handler_import.py [--repeats 30]

Each sample is a new `.venv/bin/python` that times only the import (perf_counter around it),
as Lambda's init phase pays it. The handler folders are copied without __pycache__ into a
temporary directory and imported with PYTHONDONTWRITEBYTECODE=1, as deployed: the asset
excludes __pycache__/*.pyc and /var/task is read-only, so the handler's own modules are
compiled on every cold start, while boto3, pydantic and Powertools (the runtime and the
Powertools layer) come with their bytecode. The `with .pyc` rows are the same import with the
handler's bytecode cached, which is what compiling costs. The environment is what the stack
gives the function (LABBATCH_SETTINGS from labs/example.yaml, POWERTOOLS_*, AWS_REGION).
Samples of all variants are interleaved.

The `layers` table imports growing prefixes of the API handler's dependencies, so the difference
between two rows is what that layer adds on top of the ones above it.

Goal (issue 7): the API handler's import < 1.5x a bare `import boto3`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import PYTHON, ROOT, Summary, machine_line, median, ratio_spread, spread, verdict  # noqa: E402

TIMER = ("import sys, time\n"
         "sys.path.insert(0, {path!r})\n"
         "t = time.perf_counter()\n"
         "{imports}\n"
         "print(time.perf_counter() - t)\n")

# Growing prefixes of what labbatch_api/handler.py imports (see its import block).
LAYERS = [
    ("boto3", "import boto3"),
    ("+ pydantic (BaseModel)", "import boto3\nfrom pydantic import BaseModel"),
    ("+ Powertools Logger", "import boto3\nfrom pydantic import BaseModel\nfrom aws_lambda_powertools import Logger"),
    ("+ Powertools REST resolver", "import boto3\nfrom pydantic import BaseModel\nfrom aws_lambda_powertools import Logger\n"
     "from aws_lambda_powertools.event_handler import APIGatewayRestResolver\n"
     "from aws_lambda_powertools.event_handler.openapi.params import Body"),
    ("+ Powertools idempotency", "import boto3\nfrom pydantic import BaseModel\nfrom aws_lambda_powertools import Logger\n"
     "from aws_lambda_powertools.event_handler import APIGatewayRestResolver\n"
     "from aws_lambda_powertools.event_handler.openapi.params import Body\n"
     "from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, idempotent_function"),
    ("+ LabBatch modules = the handler", "import labbatch_api.handler"),
]


def handler_environment() -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from labbatch.lab.api_settings import handler_settings
    from labbatch.lab.loader import load_lab

    settings = handler_settings(load_lab(ROOT / "labs" / "example.yaml"), "123456789012", "us-east-1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "PYTHON"))}
    env.update(LABBATCH_SETTINGS=json.dumps(settings, separators=(",", ":")), POWERTOOLS_LOG_LEVEL="INFO",
               POWERTOOLS_SERVICE_NAME="labbatch-api", AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
    return env


def time_import(imports: str, path: Path, env: dict[str, str]) -> float:
    code = TIMER.format(path=str(path), imports=imports)
    result = subprocess.run([PYTHON, "-c", code], cwd=path, env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise SystemExit(f"import failed:\n{imports}\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def deployed_copy(folder: Path, into: Path) -> Path:
    target = into / folder.name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def package_size(folder: Path) -> tuple[int, int, int]:
    """(files, bytes, zipped bytes) of the folder as the asset ships it (no __pycache__, no .pyc)."""
    files = [p for p in sorted(folder.rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for p in files:
            archive.write(p, p.relative_to(folder))
    return len(files), sum(p.stat().st_size for p in files), len(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--layer-repeats", type=int, default=10)
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    env = handler_environment()
    no_pyc = {**env, "PYTHONDONTWRITEBYTECODE": "1"}

    with tempfile.TemporaryDirectory(prefix="labbatch-bench-import-") as tmp:
        for package in ("labbatch_api", "labbatch_status"):
            deployed_copy(ROOT / "lambda" / package, Path(tmp))
        deployed, cached = Path(tmp), ROOT / "lambda"
        variants = {
            "import boto3": ("import boto3", deployed, no_pyc),
            "API handler": ("import labbatch_api.handler", deployed, no_pyc),
            "status updater": ("import labbatch_status.handler", deployed, no_pyc),
            "API handler, with .pyc": ("import labbatch_api.handler", cached, env),
            "status updater, with .pyc": ("import labbatch_status.handler", cached, env),
        }
        # Warm the OS page cache and the .pyc of the cached variants before timing anything.
        for imports, path, variant_env in variants.values():
            time_import(imports, path, variant_env)
        print(f"handler cold import: {machine_line()}; {args.repeats} fresh interpreters per variant, interleaved",
              flush=True)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (imports, path, variant_env) in variants.items():
                samples[name].append(time_import(imports, path, variant_env))

        layers: dict[str, list[float]] = {name: [] for name, _ in LAYERS}
        for _ in range(args.layer_repeats):
            for name, imports in LAYERS:
                layers[name].append(time_import(imports, deployed, no_pyc))

    boto = samples["import boto3"]
    print(f"\n{'import':<30} {'ms: median (min-max)':>28} {'min vs boto3':>13} {'median vs boto3':>16} {'per-run ratio':>22}")
    for name, values in samples.items():
        per_run = ratio_spread([v / b for v, b in zip(values, boto)])
        print(f"{name:<30} {spread(values, 1000, 'ms', 1):>28} {min(values) / min(boto):>12.2f}x "
              f"{median(values) / median(boto):>15.2f}x {per_run:>22}")

    print(f"\nlayers (each row adds to the one above; {args.layer_repeats} interpreters each; handler code not cached)")
    print(f"  {'':<32} {'min':>8} {'adds':>8} {'median':>9} {'adds':>8}")
    previous_min = previous_median = 0.0
    for name, values in layers.items():
        low, mid = min(values), median(values)
        print(f"  {name:<32} {low * 1000:6.1f}ms {(low - previous_min) * 1000:+6.1f}ms {mid * 1000:7.1f}ms "
              f"{(mid - previous_median) * 1000:+6.1f}ms")
        previous_min, previous_median = low, mid

    summary = Summary("handler import")
    api, status = samples["API handler"], samples["status updater"]
    r = median(api) / median(boto)
    print(f"\nAPI handler / bare boto3: {r:.2f}x at the median, {min(api) / min(boto):.2f}x at the minimum; "
          f"goal < 1.5x: {verdict(r < 1.5)}")
    summary.add("API handler cold import", f"{median(api) * 1000:.0f} ms", f"import boto3 {median(boto) * 1000:.0f} ms",
                f"{r:.2f}x", "< 1.5x", r < 1.5)
    rs = median(status) / median(boto)
    summary.add("status updater cold import", f"{median(status) * 1000:.0f} ms",
                f"import boto3 {median(boto) * 1000:.0f} ms", f"{rs:.2f}x", "", None)

    print("\npackage (the asset: the folder without __pycache__/*.pyc; Powertools comes from its layer):")
    for folder in ("labbatch_api", "labbatch_status"):
        files, size, zipped = package_size(ROOT / "lambda" / folder)
        print(f"  lambda/{folder}: {files} files, {size:,} bytes ({zipped:,} bytes zipped)")
        summary.add(f"lambda/{folder} package", f"{size / 1024:.0f} KiB ({zipped / 1024:.0f} KiB zipped)",
                    f"{files} files", "", "", None)
    summary.write(args.summary)


if __name__ == "__main__":
    main()
