"""`labbatch submit`: one job, or one array job over a sample sheet (CSV or JSON), with parameters
and local paths (uploaded first)."""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from labbatch.client.command_base import EXIT_OK, UsageError, api_client, print_json
from labbatch.client.tables import console
from labbatch.client.sdk import LabBatchError


def submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", metavar="PIPELINE", help="a pipeline name, as `labbatch pipelines` lists")
    parser.add_argument("inputs", metavar="INPUT", nargs="*",
                        help="s3:// URIs in the lab's buckets, or local files (uploaded to the inputs bucket "
                             "first). With --samples: inputs every sample shares, which the "
                             "pipeline's command must name as {shared_input}/{shared_inputs} (each "
                             "sample's {input} is its own); refused for a pipeline that has no use for them")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline parameter; repeat for more")
    parser.add_argument("--queue", choices=["spot", "on-demand"], help="default: the pipeline's queue")
    parser.add_argument("--pool", metavar="POOL", help="the instance pool (`labbatch pipelines` lists them); "
                        "default: the pipeline's, or the cheapest that holds the job")
    parser.add_argument("--vcpus", type=int, metavar="N")
    parser.add_argument("--memory-mib", type=int, metavar="N")
    parser.add_argument("--gpus", type=int, metavar="N", help="GPUs for the job (at least the pipeline's); "
                        "placed on a GPU pool")
    parser.add_argument("--name", metavar="NAME", help="a name for the job, shown in `labbatch list`")
    parser.add_argument("--samples", type=Path, metavar="FILE",
                        help="one array job over samples: .json ([{name, inputs, parameters}]) or .csv "
                             "(columns: name; inputs or input* with one or more URIs separated by ';'; "
                             "every other column is a parameter)")
    parser.add_argument("--idempotency-key", metavar="KEY",
                        help="retrying with the same key returns the same job instead of a second one")


def run_submit(args: argparse.Namespace) -> int:
    parameters = parse_parameters(args.param)
    samples, places = load_samples(args.samples) if args.samples else (None, [])
    if not args.inputs and not samples:
        raise UsageError("give at least one INPUT, or --samples FILE")
    from labbatch.client.transfer.upload import stage_local_inputs  # local paths: uploaded first, said on stderr
    args.inputs, samples = stage_local_inputs(args, args.inputs, samples)
    with api_client(args) as client:
        try:
            job = client.submit(args.pipeline, args.inputs, parameters=parameters, queue=args.queue, pool=args.pool,
                                vcpus=args.vcpus, memory_mib=args.memory_mib, gpus=args.gpus, name=args.name, samples=samples,
                                idempotency_key=args.idempotency_key)
        except LabBatchError as error:
            raise _in_sample_sheet_terms(error, places) from None
    if args.json:
        return print_json(job)
    children = f" over {job['array_size']} samples" if job.get("array_size") else ""
    console().print(f"Submitted [bold]{job.get('job_id')}[/] ({job.get('pipeline', args.pipeline)}{children}): "
                     f"{job.get('status')}; outputs under {job.get('output_prefix')}")
    return EXIT_OK


def parse_parameters(pairs: Iterable[str]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {pair!r} must have the form KEY=VALUE")
        parameters[key.strip()] = value
    return parameters


_SAMPLE_INDEX = re.compile(r"samples\[(\d+)\]")


def _in_sample_sheet_terms(error: LabBatchError, places: Sequence[str]) -> LabBatchError:
    """The API names samples by their 0-based place in the list it got (`samples[3].inputs[0]`);
    say instead where they are in the user's sheet: `row 5 of s.csv (sample S4).inputs[0]`."""
    if not places:
        return error

    def where(match: re.Match) -> str:
        index = int(match.group(1))
        return places[index] if index < len(places) else match.group(0)

    error.message = _SAMPLE_INDEX.sub(where, error.message)
    error.details = {key: _SAMPLE_INDEX.sub(where, value) if isinstance(value, str) else value
                     for key, value in error.details.items()}
    return error


def load_samples(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """A sample sheet as the API's `samples`, and where each one is in the sheet (for messages);
    only its shape is checked here, the API checks the rest."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets like to start CSVs with a BOM
    except OSError as error:
        raise UsageError(f"cannot read --samples {path}: {error.strerror or error}") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _samples_from_json(path, text)
    if suffix == ".csv":
        return _samples_from_csv(path, text)
    raise UsageError(f"--samples {path}: use a .json or .csv file")


def _samples_from_json(path: Path, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UsageError(f"--samples {path} is not JSON: {error}") from None
    samples = data.get("samples") if isinstance(data, dict) else data
    if not isinstance(samples, list) or not samples or not all(isinstance(s, dict) for s in samples):
        raise UsageError(f"--samples {path} must hold a non-empty list of objects "
                         '({"name": ..., "inputs": [...], "parameters": {...}})')
    return samples, [f"sample {i + 1} of {path.name}" + (f" ({s['name']})" if isinstance(s.get("name"), str) else "")
                     for i, s in enumerate(samples)]


_URI_SEPARATOR = re.compile(r"[;\s]+")


def _samples_from_csv(path: Path, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows are numbered as in the file (the header is row 1), as a spreadsheet shows them."""
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    if "name" not in columns:
        raise UsageError(f"--samples {path} needs a 'name' column (found: {', '.join(columns) or 'no header'})")
    input_columns = [c for c in columns if c.lower().startswith("input")]
    if not input_columns:
        raise UsageError(f"--samples {path} needs an 'inputs' column (or input1, input2, ...)")
    samples, places = [], []
    for row in reader:
        number = reader.line_num  # blank lines count, as they do in the file
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not any(row.values()):
            continue
        inputs = [uri for c in input_columns for uri in _URI_SEPARATOR.split(row.get(c, "")) if uri]
        if not row.get("name"):
            raise UsageError(f"--samples {path} row {number}: the sample has no name")
        if not inputs:
            raise UsageError(f"--samples {path} row {number} (sample {row['name']}): no input")
        parameters = {c: row[c] for c in columns if c != "name" and c not in input_columns and row.get(c)}
        samples.append({"name": row["name"], "inputs": inputs, **({"parameters": parameters} if parameters else {})})
        places.append(f"row {number} of {path.name} (sample {row['name']})")
    if not samples:
        raise UsageError(f"--samples {path} lists no samples")
    return samples, places
