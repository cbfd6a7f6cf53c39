"""The three real pipelines labs/genomics-core.yaml ships (bwa-mem, salmon-quant, star-align), run in
local mode in real containers of the local stand-ins for their biocontainers images, on simulated data.

The commands are read from the shipped lab file when the test runs; only what this machine cannot
give changes: the images (the file's own `local:` block maps them to labbatch-*:local), the requests
(its `fit_to_machine`) and the thread counts the commands spell out (16 and 32 threads become 2).
The indices are built by the tools themselves, laid out in the references bucket the way
docs/lab-configuration.md ("Reference data") says (bwa's index beside its FASTA, salmon's and STAR's
as folders), and every answer is compared with the truth the simulation computed: mapped reads,
estimated counts, uniquely mapped reads.
"""

from __future__ import annotations

import copy
import csv
import gzip
import os
import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
import yaml

from labbatch.client.sdk import LabBatchApiError
from tests.containers.test_reference_tools import JUNK_TOLERANCE, pearson, ranks, star_log
from tests.e2e.conftest import ROOT, start_local
from tests.e2e.test_local_containers import require_engine_and_images
from tests.e2e.test_local_mode import wait
from tests.genomics_data import (BWA_IMAGE, SALMON_IMAGE, STAR_IMAGE, build_bwa_index, build_salmon_index,
                                 build_star_genome, simulate_dna, simulate_rna, write_fastq)

THREADS = "2"
SHIPPED = yaml.safe_load((ROOT / "labs" / "genomics-core.yaml").read_text())


def scaled_command(command: list[str]) -> list[str]:
    """The shipped command with its thread count (the argument after -t, -p or --runThreadN) set to 2."""
    scaled = list(command)
    for position, argument in enumerate(command[:-1]):
        if argument in ("-t", "-p", "--runThreadN"):
            scaled[position + 1] = THREADS
    return scaled


@pytest.fixture(scope="module")
def core_lab(tmp_path_factory):
    engine = require_engine_and_images(BWA_IMAGE, SALMON_IMAGE, STAR_IMAGE)
    tmp = tmp_path_factory.mktemp("genomics-core")
    labs = tmp / "labs"
    labs.mkdir()
    data = copy.deepcopy(SHIPPED)
    for pipeline in data["pipelines"].values():
        pipeline["command"] = scaled_command(pipeline["command"])
    (labs / "genomics-core.yaml").write_text(yaml.safe_dump(data))
    # The emulator's request recorder (moto's) writes here, not into the working directory.
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(tmp / "s3-requests.jsonl")}
    lab = start_local(tmp, "--lab", "genomics-core", labs_dir=labs, containers=True, env=env)
    assert lab.info["executor"] == engine, lab.info
    yield lab
    assert lab.stop() == 0


class RecordedRequests:
    """The emulator's own record of the requests it answered while the block ran (moto's recorder)."""

    def __init__(self, lab) -> None:
        self.endpoint = lab.info["aws_endpoint"]
        self.text = ""

    def __enter__(self) -> "RecordedRequests":
        for step in ("reset-recording", "start-recording"):
            requests.post(f"{self.endpoint}/moto-api/recorder/{step}", timeout=10).raise_for_status()
        return self

    def __exit__(self, *exc: object) -> None:
        requests.post(f"{self.endpoint}/moto-api/recorder/stop-recording", timeout=10).raise_for_status()
        self.text = requests.get(f"{self.endpoint}/moto-api/recorder/download-recording", timeout=60).text

    def object_gets(self, bucket: str) -> Counter:
        """GETs of objects (not listings) in `bucket`, by key. Read by pattern, not line by line: the
        recorder's threads append concurrently, and a large entry (an upload's body) written in
        pieces can enclose a small one, which one write keeps whole."""
        gets: Counter = Counter()
        for url in re.findall(r'"method": "GET", "url": "([^"]+)"', self.text):
            parts = urlsplit(url)
            bucket_of, _, key = unquote(parts.path).lstrip("/").partition("/")
            if bucket_of == bucket and key and "list-type" not in parts.query:
                gets[key] += 1
        return gets


def upload_tree(lab, folder: Path, prefix: str) -> str:
    """Every file under `folder` into the references bucket under `prefix` (a folder URI back)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        lab.put("references", prefix + path.relative_to(folder).as_posix(), path.read_bytes())
    return f"s3://{lab.info['buckets']['references']}/{prefix}"


def succeeded(lab, client, job: dict, timeout: float) -> dict:
    record = wait(client, job["job_id"], timeout)
    if record["status"] != "SUCCEEDED":
        try:
            tool_log = read_object(lab, f"{job['output_prefix']}logs/tool.log")[-3000:]
        except Exception as exc:  # noqa: BLE001 - the failure is what matters; the log only helps
            tool_log = f"(no tool log: {exc})"
        raise AssertionError(f"{record['status']}: {record.get('status_reason')}\n{record.get('attempts')}\n{tool_log}")
    return record


def read_object(lab, uri: str) -> str:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return lab.s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_the_shipped_commands_are_the_ones_that_run():
    # What the other tests change of the shipped lab: nothing but thread counts.
    for name in ("bwa-mem", "salmon-quant", "star-align"):
        command = SHIPPED["pipelines"][name]["command"]
        changed = [(a, b) for a, b in zip(command, scaled_command(command)) if a != b]
        assert len(changed) == 1 and changed[0][1] == THREADS, (name, changed)


def test_bwa_mem_with_its_index_beside_the_reference(core_lab, tmp_path):
    dna = simulate_dna(tmp_path / "dna", reads=2_000)
    index = build_bwa_index(core_lab.info["executor"], dna.genome)
    client = core_lab.client()
    reference = core_lab.put("references", "bwa/sim/genome.fa", dna.genome.read_bytes())
    reads = core_lab.put("inputs", "runs/dna/reads.fastq", dna.reads.read_bytes())

    # A missing companion is refused before anything runs, naming it.
    with pytest.raises(LabBatchApiError) as refused:
        client.submit("bwa-mem", [reads], parameters={"reference": reference})
    assert (refused.value.status, refused.value.code) == (422, "companion_missing"), refused.value
    assert refused.value.details["uri"] == reference + ".amb"
    assert client.list(pipeline="bwa-mem")["jobs"] == []

    for path in index:
        core_lab.put("references", f"bwa/sim/{path.name}", path.read_bytes())
    job = client.submit("bwa-mem", [reads], parameters={"reference": reference})
    succeeded(core_lab, client, job, 180)

    sam = read_object(core_lab, f"{job['output_prefix']}aligned.sam")
    records = [line.split("\t") for line in sam.splitlines() if line and not line.startswith("@")]
    primary = [r for r in records if not int(r[1]) & 0x900]
    assert len(primary) == dna.reads_total
    mapped = {r[0] for r in primary if not int(r[1]) & 0x4}
    genuine = set(dna.origins)
    assert genuine <= mapped  # every simulated read maps ...
    assert len(mapped - genuine) <= JUNK_TOLERANCE * dna.junk  # ... and random ones essentially never
    for r in primary:
        if r[0] in genuine:
            assert r[2] == dna.origins[r[0]].chrom, r[:6]
    manifest = core_lab.read_json(f"{job['output_prefix']}manifest.json")
    staged = {item["uri"]: item for item in manifest["inputs"]}
    assert {uri for uri in staged if "/bwa/sim/" in uri} == {reference, *(reference + s for s in
                                                                           (".amb", ".ann", ".bwt", ".pac", ".sa"))}
    assert manifest["tool"]["argv"][:4] == ["bwa", "mem", "-t", THREADS]


def test_salmon_quant_against_an_index_folder(core_lab, tmp_path):
    rna = simulate_rna(tmp_path / "rna", reads=8_000)
    index = build_salmon_index(core_lab.info["executor"], rna.transcriptome, tmp_path / "salmon_index")
    folder = upload_tree(core_lab, index, "salmon/sim-idx/")
    reads = core_lab.put("inputs", "runs/rna/reads.fastq", rna.reads.read_bytes())
    client = core_lab.client()

    job = client.submit("salmon-quant", [reads], parameters={"index": folder})
    succeeded(core_lab, client, job, 180)

    table = read_object(core_lab, f"{job['output_prefix']}quant.sf").splitlines()
    estimated = {row["Name"]: float(row["NumReads"]) for row in csv.DictReader(table, delimiter="\t")}
    names = sorted(rna.counts)
    truth = [float(rna.counts[name]) for name in names]
    found = [estimated[name] for name in names]
    assert pearson(found, truth) > 0.99, list(zip(names, truth, found))
    assert pearson(ranks(found), ranks(truth)) > 0.95
    assert abs(sum(found) - rna.expected_mapped) <= 0.02 * rna.expected_mapped
    manifest = core_lab.read_json(f"{job['output_prefix']}manifest.json")
    assert manifest["tool"]["argv"][manifest["tool"]["argv"].index("-l") + 1] == "A"  # the libtype default


def test_star_array_against_one_genome_folder_downloads_it_once(core_lab, tmp_path):
    rna = simulate_rna(tmp_path / "rna", reads=6_000)
    genome = build_star_genome(core_lab.info["executor"], rna.genome, rna.annotation, tmp_path / "star_genome")
    folder = upload_tree(core_lab, genome, "star/sim-genome/")
    # Three samples: the simulated reads dealt out in turn, each sample's truth counted here.
    lines = rna.reads.read_text().splitlines()
    records = [(lines[i][1:], lines[i + 1]) for i in range(0, len(lines), 4)]
    samples, expected = [], {}
    for n in range(3):
        mine = records[n::3]
        path = write_fastq(tmp_path / f"s{n}.fastq", mine)
        # One sample gzipped, as sequencers deliver them: the lab's command reads both.
        body, key = (gzip.compress(path.read_bytes()), f"runs/star/s{n}.fastq.gz") if n == 1 else \
            (path.read_bytes(), f"runs/star/s{n}.fastq")
        samples.append({"name": f"s{n}", "inputs": [core_lab.put("inputs", key, body)]})
        expected[f"s{n}"] = (sum(not name.startswith("junk") for name, _ in mine), sum(name.startswith("junk") for name, _ in mine))
    client = core_lab.client()

    with RecordedRequests(core_lab) as recorded:
        job = client.submit("star-align", samples=samples, parameters={"genome_dir": folder})
        succeeded(core_lab, client, job, 300)

    genome_files = sorted(p.relative_to(genome).as_posix() for p in genome.rglob("*") if p.is_file())
    fetched: dict[str, int] = {}
    for sample in samples:
        prefix = f"{job['output_prefix']}{sample['name']}/"
        log = star_log_text(read_object(core_lab, f"{prefix}Log.final.out"))
        genuine, junk = expected[sample["name"]]
        unique = int(log["Uniquely mapped reads number"])
        assert genuine <= unique <= genuine + JUNK_TOLERANCE * junk, (sample["name"], log)
        manifest = core_lab.read_json(f"{prefix}manifest.json")
        for item in manifest["inputs"]:
            if item["uri"].startswith(folder):
                fetched[item["uri"]] = fetched.get(item["uri"], 0) + (item["cache"] == "miss")
    # Every file of the genome reached every child, and was downloaded by exactly one of them ...
    assert sorted(uri[len(folder):] for uri in fetched) == genome_files
    assert set(fetched.values()) == {1}, fetched
    # ... as the emulator counted: one GET of each genome file for the three children.
    gets = recorded.object_gets(core_lab.info["buckets"]["references"])
    assert {key: gets[key] for key in gets if key.startswith("star/sim-genome/")} == \
        {f"star/sim-genome/{name}": 1 for name in genome_files}
    reads_bucket = core_lab.info["buckets"]["inputs"]
    assert all(recorded.object_gets(reads_bucket)[_key(sample["inputs"][0])] == 1 for sample in samples)


def _key(uri: str) -> str:
    return uri.removeprefix("s3://").split("/", 1)[1]


def star_log_text(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, bar, value = line.partition("|")
        if bar:
            fields[key.strip()] = value.strip()
    return fields
