"""The reference tools of labs/genomics-core.yaml (bwa, salmon, STAR), each in its own local
stand-in image, on simulated data whose truth tests/genomics_data.py computes independently.

Each test builds the reference with the builder that end-to-end tests reuse, then runs the tool
as the lab's pipeline does (`docker run --rm --network=none`, data mounted), and compares what the
tool reports with the truth: reads mapped, per-transcript counts, reads mapped uniquely.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from tests.containers.conftest import BWA_IMAGE, SALMON_IMAGE, STAR_IMAGE, run_in
from tests.genomics_data import (DnaData, RnaData, build_bwa_index, build_salmon_index, build_star_genome,
                                 run_tool, simulate_dna, simulate_rna)

# Junk reads are random 100-mers; against a 120-200 kb random genome one aligns only by a vanishing
# chance (about 1e-4 per read for a 19-mer seed, far less for a passing score). Allowed: 1 %.
JUNK_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def dna(tmp_path_factory: pytest.TempPathFactory) -> DnaData:
    return simulate_dna(tmp_path_factory.mktemp("dna"))


@pytest.fixture(scope="module")
def rna(tmp_path_factory: pytest.TempPathFactory) -> RnaData:
    return simulate_rna(tmp_path_factory.mktemp("rna"))


@pytest.mark.parametrize(("image", "argv", "version"), [
    (BWA_IMAGE, ["sh", "-c", "bwa 2>&1 | grep '^Version'"], r"Version: 0\.7\.\d+"),
    (BWA_IMAGE, ["samtools", "--version"], r"samtools 1\.\d+"),
    (SALMON_IMAGE, ["salmon", "--version"], r"salmon 1\.10\.\d+"),
    (STAR_IMAGE, ["STAR", "--version"], r"2\.7\.\d+[a-z]"),
], ids=["bwa", "samtools", "salmon", "STAR"])
def test_tool_image_has_its_tool_and_no_python(images: dict[str, str], image: str, argv: list[str],
                                               version: str) -> None:
    result = run_in(image, argv)
    assert result.returncode == 0 and re.search(version, result.stdout), (result.stdout, result.stderr)
    python = run_in(image, ["sh", "-c", "command -v python3 python; ls /usr/bin/python* /usr/local/bin/python*"])
    assert python.returncode != 0 and python.stdout == "", python.stdout


def leading_clip(cigar: str) -> int:
    match = re.match(r"(\d+)[SH]", cigar)
    return int(match.group(1)) if match else 0


def test_bwa_mem_maps_every_genuine_read_where_it_came_from(engine: str, images: dict[str, str], dna: DnaData,
                                                            tmp_path: Path) -> None:
    index = build_bwa_index(engine, dna.genome)
    assert [path.suffix for path in index] == [".amb", ".ann", ".bwt", ".pac", ".sa"]
    ref = dna.genome.parent
    # The lab's command: bwa mem -t N -o {output_dir}/aligned.sam {param:reference} {inputs}
    run_tool(engine, BWA_IMAGE, ["bwa", "mem", "-t", "2", "-o", "/out/aligned.sam", f"/ref/{dna.genome.name}",
                                 f"/ref/{dna.reads.name}"], volumes={ref: "/ref", tmp_path: "/out"})

    seen, mapped_genuine, mapped_junk, misplaced = set(), 0, 0, []
    for line in (tmp_path / "aligned.sam").read_text().splitlines():
        if line.startswith("@"):
            continue
        name, flag, chrom, pos, _, cigar = line.split("\t")[:6]
        flag = int(flag)
        if flag & 0x900:        # secondary or supplementary: not a read of its own
            continue
        seen.add(name)
        if flag & 0x4:
            continue
        origin = dna.origins.get(name)
        if origin is None:
            mapped_junk += 1
            continue
        mapped_genuine += 1
        where = (chrom, int(pos) - leading_clip(cigar) - 1, bool(flag & 0x10))
        if where != (origin.chrom, origin.start, origin.reverse):
            misplaced.append((name, where, origin))
    assert len(seen) == dna.reads_total
    assert mapped_genuine == dna.expected_mapped and not misplaced, misplaced[:5]
    assert mapped_junk <= JUNK_TOLERANCE * dna.junk, mapped_junk

    # samtools in the same image agrees with the count made here (primary, mapped records).
    counted = run_tool(engine, BWA_IMAGE, ["samtools", "view", "-c", "-F", "0x904", "/out/aligned.sam"],
                       volumes={tmp_path: "/out"})
    assert int(counted.stdout) == mapped_genuine + mapped_junk


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def pearson(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    return cov / math.sqrt(sum((x - mean_x) ** 2 for x in xs) * sum((y - mean_y) ** 2 for y in ys))


def test_salmon_quant_recovers_the_counts_reads_were_drawn_with(engine: str, images: dict[str, str], rna: RnaData,
                                                                tmp_path: Path) -> None:
    index = build_salmon_index(engine, rna.transcriptome, tmp_path / "salmon_index")
    # The lab's command: salmon quant -i {param:index} -l A -r {input} -o {output_dir}
    run_tool(engine, SALMON_IMAGE, ["salmon", "quant", "-i", "/index", "-l", "A", "-r", f"/reads/{rna.reads.name}",
                                    "-o", "/out", "-p", "2"],
             volumes={index: "/index", rna.reads.parent: "/reads", tmp_path / "quant": "/out"})
    quant = tmp_path / "quant"
    with (quant / "quant.sf").open() as table:
        estimated = {row["Name"]: float(row["NumReads"]) for row in csv.DictReader(table, delimiter="\t")}
    assert estimated.keys() == rna.counts.keys()
    names = sorted(rna.counts)
    truth = [float(rna.counts[name]) for name in names]
    found = [estimated[name] for name in names]
    assert pearson(found, truth) > 0.99, list(zip(names, truth, found))
    assert pearson(ranks(found), ranks(truth)) > 0.95, list(zip(names, truth, found))   # Spearman
    assert abs(sum(found) - rna.expected_mapped) <= 0.02 * rna.expected_mapped, sum(found)
    # -l A saw the unstranded library the reads were drawn as.
    assert json.loads((quant / "lib_format_counts.json").read_text())["expected_format"] == "U"
    meta = json.loads((quant / "aux_info" / "meta_info.json").read_text())
    assert meta["num_processed"] == rna.reads_total


def star_log(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        key, bar, value = line.partition("|")
        if bar:
            fields[key.strip()] = value.strip()
    return fields


def test_star_maps_spliced_reads_uniquely(engine: str, images: dict[str, str], rna: RnaData, tmp_path: Path) -> None:
    genome = build_star_genome(engine, rna.genome, rna.annotation, tmp_path / "star_genome")
    # The lab's command: STAR --runThreadN N --genomeDir {param:genome_dir} --readFilesIn {inputs}
    #                         --outFileNamePrefix {output_dir}/
    run_tool(engine, STAR_IMAGE, ["STAR", "--runThreadN", "2", "--genomeDir", "/genome",
                                  "--readFilesIn", f"/reads/{rna.reads.name}", "--outFileNamePrefix", "/out/"],
             volumes={genome: "/genome", rna.reads.parent: "/reads", tmp_path / "star": "/out"})
    log = star_log(tmp_path / "star" / "Log.final.out")
    assert int(log["Number of input reads"]) == rna.reads_total
    unique = int(log["Uniquely mapped reads number"])
    assert rna.expected_mapped <= unique <= rna.expected_mapped + JUNK_TOLERANCE * rna.junk, log
    assert int(log["Number of reads mapped to multiple loci"]) == 0, log
    # SJ.out.tab (chrom, first and last intron base, strand, motif, annotated, unique reads, ...):
    # every junction is an annotated intron, crossed by exactly the genuine reads drawn across it.
    with (tmp_path / "star" / "SJ.out.tab").open() as table:
        junctions = {(row[0], int(row[1]), int(row[2])): (row[5], int(row[6])) for row in csv.reader(table, delimiter="\t")}
    assert set(junctions) <= rna.introns, set(junctions) - rna.introns
    assert {annotated for annotated, _ in junctions.values()} == {"1"}
    assert {intron: reads for intron, (_, reads) in junctions.items()} == rna.junction_reads
