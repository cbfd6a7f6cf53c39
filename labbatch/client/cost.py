"""`labbatch cost`: what a lab costs while idle, read from its synthesized templates, and per job.

Fixed costs are the resources that bill by the hour or month whether or not a job runs; the
table of their prices is `labbatch/lab/data/prices.json`, dated. Everything else in a lab bills by
use (S3 bytes, log bytes, instance hours), which the per-job model prices.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labbatch.lab import cdk_app, instance_types
from labbatch.lab.config import Lab, Pool
from labbatch.lab.loader import DEFAULT_LABS_DIR
from labbatch.lab.instance_prices import NoPrice, on_demand_hour, prices_table
from labbatch_contract import names

STACK_PARTS = ("Storage", "Compute", "Api", "Operations")
DEFAULT_REGION = "us-east-1"
HOURS_PER_MONTH = 730


class CostError(Exception):
    pass


@dataclass(frozen=True)
class FixedItem:
    resource: str
    count: int
    unit_usd: float
    unit: str

    @property
    def monthly_usd(self) -> float:
        return round(self.count * self.unit_usd, 2)


def load_prices() -> dict[str, Any]:
    return prices_table()


def region_prices(prices: dict[str, Any], region: str) -> dict[str, Any]:
    if region not in prices["regions"]:
        raise CostError(f"no prices for {region} in labbatch/lab/data/prices.json "
                        f"(have: {', '.join(sorted(prices['regions']))}); add that Region's figures")
    return prices["regions"][region]


def load_templates(cdk_out: Path, lab_name: str) -> dict[str, dict]:
    templates = {}
    for part in STACK_PARTS:
        path = cdk_out / f"{names.stack(lab_name, part)}.template.json"
        if not path.exists():
            raise CostError(f"{path} is missing: synthesize first (`make synth`, or `cdk synth -c lab={lab_name}`)")
        templates[part] = json.loads(path.read_text())
    return templates


def lab_file_of(labs_dir: Path, lab_name: str) -> Path | None:
    """The lab's own file when named after it, else None (then every lab file counts)."""
    for suffix in (".yaml", ".yml"):
        if (labs_dir / f"{lab_name}{suffix}").exists():
            return labs_dir / f"{lab_name}{suffix}"
    return None


def stale_because(cdk_out: Path, lab_name: str, labs_dir: Path) -> str | None:
    """Why the lab's synthesized templates may not say what its lab file says now; None when
    every template is newer than the file (or than every lab file, when none is named after it)."""
    paths = [cdk_out / f"{names.stack(lab_name, part)}.template.json" for part in STACK_PARTS]
    if not all(p.exists() for p in paths):
        return None  # load_templates says what is missing
    own = lab_file_of(labs_dir, lab_name)
    sources = [own] if own else sorted(labs_dir.glob("*.yaml")) + sorted(labs_dir.glob("*.yml"))
    newest = max(sources, key=lambda p: p.stat().st_mtime, default=None)
    oldest = min(paths, key=lambda p: p.stat().st_mtime)
    if newest is not None and newest.stat().st_mtime > oldest.stat().st_mtime:
        return f"{oldest} is older than {newest}"
    return None


def priced_type(resource: dict) -> str:
    kind = resource["Type"]
    if kind == "AWS::EC2::VPCEndpoint":
        # Gateway endpoints (S3, DynamoDB) are free; interface endpoints bill per zone and hour.
        return f"{kind}:{resource.get('Properties', {}).get('VpcEndpointType', 'Gateway')}"
    return kind


def fixed_costs(templates: dict[str, dict], region: dict[str, Any]) -> list[FixedItem]:
    counts: dict[str, int] = {}
    for template in templates.values():
        for resource in template.get("Resources", {}).values():
            kind = priced_type(resource)
            if kind in region["fixed_monthly"]:
                counts[kind] = counts.get(kind, 0) + 1
    return [FixedItem(kind, n, region["fixed_monthly"][kind]["usd"], region["fixed_monthly"][kind]["unit"])
            for kind, n in sorted(counts.items())]


def per_job_model(lab: Lab, region_name: str, region: dict[str, Any]) -> dict[str, Any]:
    usage = region["usage"]
    return {
        "pools": [_pool_model(name, pool, region_name, usage) for name, pool in lab.pools.items()],
        "s3_standard_gb_month": usage["s3_standard_gb_month"],
        "logs_ingest_gb": usage["logs_ingest_gb"],
        "logs_store_gb_month": usage["logs_store_gb_month"],
    }


def _pool_model(name: str, pool: Pool, region_name: str, usage: dict[str, Any]) -> dict[str, Any]:
    """One pool's instance prices (GPU hours for GPU types) and its scratch volume per instance."""
    spot_share = 1 - usage["spot_typical_discount"]
    rows = []
    for facts in instance_types.expand(pool.instance_types):
        try:
            on_demand = on_demand_hour(facts, region_name)
        except NoPrice as exc:
            raise CostError(str(exc)) from None
        row = {"instance_type": facts.name, "vcpus": facts.vcpus, "memory_gib": facts.memory_mib // 1024,
               "on_demand_hour": round(on_demand, 4), "spot_hour_typical": round(on_demand * spot_share, 4),
               "vcpu_hour_on_demand": round(on_demand / facts.vcpus, 5),
               "vcpu_hour_spot_typical": round(on_demand / facts.vcpus * spot_share, 5)}
        if facts.gpus:
            row.update(gpus=facts.gpus, gpu_memory_gib=facts.gpu_memory_mib // 1024,
                       gpu_hour_on_demand=round(on_demand / facts.gpus, 4),
                       gpu_hour_spot_typical=round(on_demand / facts.gpus * spot_share, 4))
        rows.append(row)
    scratch = pool.scratch
    scratch_month = (scratch.size_gib * usage["ebs_gp3_gib_month"]
                     + max(0, scratch.iops - 3000) * usage["ebs_gp3_iops_month_above_3000"]
                     + max(0, scratch.throughput_mibps - 125) * usage["ebs_gp3_mibps_month_above_125"])
    return {
        "pool": name,
        "gpu": pool.gpu,
        "max_vcpus": {"spot": pool.spot_max_vcpus, "on-demand": pool.on_demand_max_vcpus},
        "instances": rows,
        "scratch_volume": {"size_gib": scratch.size_gib, "iops": scratch.iops,
                           "throughput_mibps": scratch.throughput_mibps,
                           "per_instance_month": round(scratch_month, 2),
                           "per_instance_hour": round(scratch_month / HOURS_PER_MONTH, 5)},
    }


def compliance_model(lab: Lab, region: dict[str, Any]) -> dict[str, Any] | None:
    """What the compliance tier adds by use. S3 Bucket Keys make SSE-KMS ask KMS for a bucket-level
    key about once per bucket per job rather than once per object."""
    if lab.encryption != "kms":
        return None
    usage = region["usage"]
    return {"kms_requests_per_10000": usage["kms_requests_per_10000"],
            "cloudtrail_data_events_per_100000": usage["cloudtrail_data_events_per_100000"] if lab.audit else None}


def report(lab: Lab, cdk_out: Path) -> dict[str, Any]:
    prices = load_prices()
    region_name = lab.region or DEFAULT_REGION
    region = region_prices(prices, region_name)
    items = fixed_costs(load_templates(cdk_out, lab.name), region)
    return {
        "lab": lab.name,
        "region": region_name,
        "region_assumed": lab.region is None,
        "prices_as_of": prices["as_of"],
        "fixed_monthly": [dict(asdict(i), monthly_usd=i.monthly_usd) for i in items],
        "fixed_monthly_total_usd": round(sum(i.monthly_usd for i in items), 2),
        "per_job": per_job_model(lab, region_name, region),
        "compliance": compliance_model(lab, region),
    }


# -- command ----------------------------------------------------------------------------------

def cost_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lab", default="example", metavar="NAME", help="the lab (default: example)")
    parser.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR,
                        metavar="DIR", help="folder of lab files (default: the project's labs/)")
    parser.add_argument("--cdk-out", type=Path, default=cdk_app.ROOT / "cdk.out",
                        metavar="DIR", help="synthesized templates (default: the project's cdk.out/)")
    parser.add_argument("--no-synth", action="store_true", help="when the templates are older than the lab file, "
                        "stop and say so instead of pricing a fresh synth of the lab file")


def run_cost(args: argparse.Namespace) -> int:
    from labbatch.error_line import print_error
    from labbatch.lab.loader import load_one_lab

    lab, problem = load_one_lab(args.labs_dir, args.lab)
    if lab is None:
        print_error("bad_lab", problem)
        return 1
    try:
        result = _priced_from_current_templates(lab, args)
    except CostError as exc:
        print_error("cost", str(exc))
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print(result)
    return 0


def _priced_from_current_templates(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    """Never a stale assembly's prices: templates older than the lab file are re-synthesized
    (into a temporary folder) and priced, or, with --no-synth, refused with why."""
    stale = stale_because(args.cdk_out, lab.name, args.labs_dir)
    if stale is None:
        return report(lab, args.cdk_out)
    if args.no_synth:
        raise CostError(f"stale templates: {stale}, so they may not price what the lab file says now; synthesize "
                        f"(`make synth`, or `cdk synth -c lab={lab.name}`), or drop --no-synth")
    print(f"labbatch: {stale}: pricing a fresh synth of the lab file ({args.cdk_out} left as it is)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="labbatch-cost-") as fresh:
        try:
            cdk_app.synthesize(lab.name, args.labs_dir, Path(fresh))
        except cdk_app.SynthFailed as error:
            raise CostError(str(error)) from None
        result = report(lab, Path(fresh))
    result["synthesized_because"] = stale
    return result


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    assumed = " (no Region in the lab file: priced as us-east-1)" if result["region_assumed"] else ""
    fixed = Table("resource", "count", "unit price", "per month", title=(
        f"Lab {result['lab']}: fixed monthly cost in {result['region']}{assumed}, prices as of {result['prices_as_of']}"),
        title_justify="left")
    for item in result["fixed_monthly"]:
        fixed.add_row(f"{item['resource']} - {item['unit']}", str(item["count"]), f"${item['unit_usd']:.2f}",
                      f"${item['monthly_usd']:.2f}")
    fixed.add_row("[bold]total while idle[/]", "", "", f"[bold]${result['fixed_monthly_total_usd']:.2f}[/]")
    console.print(fixed)
    job = result["per_job"]
    for pool in job["pools"]:
        gpu = any("gpus" in row for row in pool["instances"])
        instances = Table("instance type", "vCPUs", "GiB", *(("GPUs", "GPU-hour on-demand") if gpu else ()),
                          "on-demand $/h", "spot $/h (typical)", "vCPU-hour on-demand", "vCPU-hour spot",
                          title=f"Per job on pool {pool['pool']}{' (GPU)' if pool['gpu'] else ''}: compute while "
                                f"instances run (max vCPUs: {pool['max_vcpus']['spot']} spot, "
                                f"{pool['max_vcpus']['on-demand']} on-demand)", title_justify="left")
        for row in pool["instances"]:
            instances.add_row(row["instance_type"], str(row["vcpus"]), str(row["memory_gib"]),
                              *((str(row["gpus"]), f"${row['gpu_hour_on_demand']:.4f}") if gpu else ()),
                              f"${row['on_demand_hour']:.4f}", f"${row['spot_hour_typical']:.4f}",
                              f"${row['vcpu_hour_on_demand']:.4f}", f"${row['vcpu_hour_spot_typical']:.4f}")
        console.print(instances)
        scratch = pool["scratch_volume"]
        console.print(f"Scratch volume of pool {pool['pool']} ({scratch['size_gib']} GiB gp3, {scratch['iops']:,} IOPS, "
                      f"{scratch['throughput_mibps']} MiB/s): ${scratch['per_instance_month']:.2f} per instance-month "
                      f"(${scratch['per_instance_hour']:.5f} per instance-hour)")
    console.print(f"S3 Standard: ${job['s3_standard_gb_month']}/GB-month; logs: ${job['logs_ingest_gb']}/GB ingested, "
                  f"${job['logs_store_gb_month']}/GB-month stored")
    compliance = result.get("compliance")
    if compliance:
        console.print(f"Lab key (encryption: kms): ${compliance['kms_requests_per_10000']:.2f} per 10,000 KMS requests "
                      "(S3 Bucket Keys: about one per bucket per job, not one per object)")
        if compliance["cloudtrail_data_events_per_100000"] is not None:
            console.print(f"Audit trail (audit: true): ${compliance['cloudtrail_data_events_per_100000']:.2f} per 100,000 "
                          "data events (each object read or written, each ledger read or write), stored in the "
                          "access-log bucket at the S3 Standard price")
