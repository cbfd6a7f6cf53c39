"""labbatch-align on simulated data: every read must land where the simulator says it came from."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import pysam
import pytest

from labbatch_pipelines import align
from labbatch_pipelines.simulate import make_reference, parse_read_origin, reverse_complement, simulate_reads

READ_LENGTH = 150
N_READS = 200
POSITION_TOLERANCE = 5


def run_align_cli(reference: Path, reads: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labbatch_pipelines.align", "--reference", str(reference),
         "--output-dir", str(output_dir), *extra, str(reads)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def read_fastq(path: Path) -> dict[str, tuple[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        lines = handle.read().splitlines()
    return {lines[i][1:]: (lines[i + 1], lines[i + 3]) for i in range(0, len(lines), 4)}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Two 10 kb contigs (20 kb in all), 200 reads of 150 bp at 1% substitutions, aligned once via the CLI."""
    work = tmp_path_factory.mktemp("align")
    reference = work / "ref.fa"
    contigs = make_reference(reference, length=10_000, seed=11, n_contigs=2)
    reads = work / "reads.fastq.gz"
    simulate_reads(reference, reads, n_reads=N_READS, read_length=READ_LENGTH, seed=12, error_rate=0.01)
    output_dir = work / "out"
    completed = run_align_cli(reference, reads, output_dir)
    assert completed.returncode == 0, completed.stderr
    return {"reference": reference, "contigs": contigs, "reads": reads, "out": output_dir}


def test_summary_counts_every_read_as_mapped(simulated):
    summary = json.loads((simulated["out"] / "align.json").read_text())

    assert summary["reads"] == N_READS
    assert summary["mapped"] == N_READS
    assert summary["reference"] == "ref.fa"
    assert sorted(path.name for path in simulated["out"].iterdir()) == ["align.json", "aligned.bam", "aligned.bam.bai"]


def test_each_read_appears_once_at_its_true_origin(simulated):
    fastq = read_fastq(simulated["reads"])
    with pysam.AlignmentFile(str(simulated["out"] / "aligned.bam")) as bam:
        records = list(bam.fetch(until_eof=True))

    assert sorted(record.query_name for record in records) == sorted(fastq)
    for record in records:
        origin = parse_read_origin(record.query_name)
        assert not record.is_unmapped and not record.is_secondary and not record.is_supplementary
        assert record.reference_name == origin.contig
        assert abs(record.reference_start - origin.start) <= POSITION_TOLERANCE, record.query_name
        assert record.is_reverse == (origin.strand == "-")
        # BAM keeps the read on the forward strand: reverse-strand reads come back complemented.
        sequence, quality = fastq[record.query_name]
        if record.is_reverse:
            sequence, quality = reverse_complement(sequence), quality[::-1]
        assert record.query_sequence == sequence
        assert pysam.qualities_to_qualitystring(record.query_qualities) == quality
        assert record.infer_read_length() == READ_LENGTH


def test_bam_is_coordinate_sorted_and_indexed(simulated):
    bam_path = simulated["out"] / "aligned.bam"
    assert (simulated["out"] / "aligned.bam.bai").stat().st_size > 0
    with pysam.AlignmentFile(str(bam_path)) as bam:
        assert bam.header.to_dict()["HD"]["SO"] == "coordinate"
        assert [(sq["SN"], sq["LN"]) for sq in bam.header.to_dict()["SQ"]] == [("ctg1", 10_000), ("ctg2", 10_000)]
        keys = [(record.reference_id, record.reference_start) for record in bam.fetch(until_eof=True)]
        assert keys == sorted(keys)

        region_start, region_end = 4_000, 6_000
        fetched = {record.query_name for record in bam.fetch("ctg2", region_start, region_end)}
    truth = {
        name
        for name in read_fastq(simulated["reads"])
        if (origin := parse_read_origin(name)).contig == "ctg2"
        and origin.start < region_end
        and origin.start + READ_LENGTH > region_start
    }
    assert fetched and fetched == truth


def test_reads_from_unrelated_sequence_do_not_map(simulated, tmp_path):
    unrelated = tmp_path / "unrelated.fa"
    make_reference(unrelated, length=20_000, seed=999)
    reads = tmp_path / "unrelated.fq"
    simulate_reads(unrelated, reads, n_reads=50, read_length=READ_LENGTH, seed=3)

    align.main(["--reference", str(simulated["reference"]), "--output-dir", str(tmp_path / "out"), str(reads)])

    summary = json.loads((tmp_path / "out" / "align.json").read_text())
    assert summary["reads"] == 50 and summary["mapped"] == 0
    with pysam.AlignmentFile(str(tmp_path / "out" / "aligned.bam")) as bam:
        records = list(bam.fetch(until_eof=True))
    assert len(records) == 50 and all(record.is_unmapped for record in records)
    assert (tmp_path / "out" / "aligned.bam.bai").exists()


def expect_clear_failure(capsys, tmp_path, reference: Path, reads: Path, *expected_fragments: str) -> None:
    output_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        align.main(["--reference", str(reference), "--output-dir", str(output_dir), str(reads)])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("labbatch-align: error: ") and error.count("\n") == 1
    for fragment in expected_fragments:
        assert fragment in error
    # Nothing claiming success, and no temporary files left behind either.
    assert not output_dir.exists() or list(output_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("reference_content", "expected"),
    [
        pytest.param(None, "does not exist", id="missing"),
        pytest.param("", "is empty", id="empty"),
        pytest.param("this is not a fasta file\n", "Expected '>'", id="not-fasta"),
        pytest.param("@r1\nACGT\n+\nIIII\n", "Expected '>'", id="fastq-given"),
        pytest.param(">a\nACGT\n>a\nACGT\n", "two sequences named 'a'", id="duplicate-names"),
        pytest.param(">a\n>b\nACGT\n", "sequence 'a' is empty", id="empty-sequence"),
    ],
)
def test_bad_reference_is_a_clear_error(simulated, tmp_path, capsys, reference_content, expected):
    reference = tmp_path / "bad_ref.fa"
    if reference_content is not None:
        reference.write_text(reference_content)

    expect_clear_failure(capsys, tmp_path, reference, simulated["reads"], "bad_ref.fa", expected)


@pytest.mark.parametrize(
    ("reads_content", "expected"),
    [
        pytest.param(None, "does not exist", id="missing"),
        pytest.param("", "is empty", id="empty"),
        pytest.param("@r1\nACGTACGT\n+\nIIII\n", "Length of sequence and qualities differ", id="malformed"),
        pytest.param(">r1\nACGT\n", "line", id="fasta-given"),
    ],
)
def test_bad_reads_file_is_a_clear_error(simulated, tmp_path, capsys, reads_content, expected):
    reads = tmp_path / "bad_reads.fq"
    if reads_content is not None:
        reads.write_text(reads_content)

    expect_clear_failure(capsys, tmp_path, simulated["reference"], reads, "bad_reads.fq", expected)


def test_malformed_record_after_good_ones_leaves_no_bam(simulated, tmp_path, capsys):
    good = tmp_path / "good.fq"
    simulate_reads(simulated["reference"], good, n_reads=30, read_length=READ_LENGTH, seed=4)
    reads = tmp_path / "late_error.fq"
    reads.write_text(good.read_text() + "@broken\nACGT\n+\nII\n")

    # 30 good records take lines 1-120; the broken record's quality line is line 124.
    expect_clear_failure(capsys, tmp_path, simulated["reference"], reads, "late_error.fq", "line 124")


def test_cli_reports_errors_without_a_traceback(tmp_path):
    reference = tmp_path / "junk.fa"
    reference.write_text("not a fasta\n")
    reads = tmp_path / "reads.fq"
    reads.write_text("@r1\nACGT\n+\nIIII\n")

    completed = run_align_cli(reference, reads, tmp_path / "out")

    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().count("\n") == 0 and "junk.fa" in completed.stderr


def test_unknown_preset_is_rejected_before_any_work(simulated, tmp_path):
    completed = run_align_cli(simulated["reference"], simulated["reads"], tmp_path / "out", "--preset", "bogus")

    assert completed.returncode == 2
    assert "invalid choice: 'bogus'" in completed.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("strand", "junk_side_in_read", "expected_clip_side"),
    [
        ("+", "start", "left"),
        ("+", "end", "right"),
        # On the reverse strand BAM shows the read reverse-complemented, so its ends swap sides.
        ("-", "start", "right"),
        ("-", "end", "left"),
    ],
)
def test_unaligned_read_ends_become_soft_clips_on_the_correct_side(
    simulated, tmp_path, strand, junk_side_in_read, expected_clip_side
):
    contig = simulated["contigs"]["ctg1"]
    true_start, aligned_length, junk_length = 3_000, 120, 30
    fragment = contig[true_start : true_start + aligned_length]
    body = fragment if strand == "+" else reverse_complement(fragment)
    junk = "".join(random.Random(5).choices("ACGT", k=junk_length))
    read = junk + body if junk_side_in_read == "start" else body + junk
    reads = tmp_path / "clipped.fq"
    reads.write_text(f"@clipped\n{read}\n+\n{'I' * len(read)}\n")

    align.run(simulated["reference"], reads, tmp_path / "out")

    with pysam.AlignmentFile(str(tmp_path / "out" / "aligned.bam")) as bam:
        (record,) = list(bam.fetch(until_eof=True))
    soft_clip = pysam.CSOFT_CLIP
    left_op, left_length = record.cigartuples[0]
    right_op, right_length = record.cigartuples[-1]
    clip_length = left_length if expected_clip_side == "left" else right_length
    clip_op = left_op if expected_clip_side == "left" else right_op
    other_op = right_op if expected_clip_side == "left" else left_op
    # minimap2 may extend a base or two into the junk where it happens to match.
    assert clip_op == soft_clip and junk_length - 3 <= clip_length <= junk_length
    assert other_op != soft_clip
    assert abs(record.reference_start - true_start) <= 3
    assert record.infer_read_length() == len(read)
    assert record.query_alignment_sequence == contig[record.reference_start : record.reference_end]


def test_compressed_reads_file_with_no_records_is_an_error(simulated, tmp_path, capsys):
    reads = tmp_path / "nothing.fq.gz"
    reads.write_bytes(gzip.compress(b""))

    expect_clear_failure(capsys, tmp_path, simulated["reference"], reads, "nothing.fq.gz", "contains no reads")
