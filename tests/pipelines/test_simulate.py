"""The simulator's promises: reproducible output, and read names that tell the truth."""

from __future__ import annotations

import gzip

import pytest

from labbatch_pipelines.simulate import make_reference, parse_read_origin, reverse_complement, simulate_reads


def read_fastq(path) -> list[tuple[str, str, str]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as handle:
        lines = handle.read().splitlines()
    return [(lines[i][1:], lines[i + 1], lines[i + 3]) for i in range(0, len(lines), 4)]


def test_reference_has_requested_contigs_of_random_bases(tmp_path):
    fasta = tmp_path / "ref.fa"

    contigs = make_reference(fasta, length=1000, seed=3, n_contigs=3)

    assert list(contigs) == ["ctg1", "ctg2", "ctg3"]
    assert all(len(sequence) == 1000 and set(sequence) == set("ACGT") for sequence in contigs.values())
    lines = fasta.read_text().splitlines()
    assert [line for line in lines if line.startswith(">")] == [">ctg1", ">ctg2", ">ctg3"]
    assert max(len(line) for line in lines) == 60
    assert "".join(line for line in lines if not line.startswith(">")) == "".join(contigs.values())


def test_same_seed_same_files_and_different_seed_different_files(tmp_path):
    make_reference(tmp_path / "a.fa", 500, seed=1)
    make_reference(tmp_path / "b.fa", 500, seed=1)
    make_reference(tmp_path / "c.fa", 500, seed=2)
    assert (tmp_path / "a.fa").read_bytes() == (tmp_path / "b.fa").read_bytes()
    assert (tmp_path / "a.fa").read_bytes() != (tmp_path / "c.fa").read_bytes()

    for name in ("x.fq.gz", "y.fq.gz"):
        simulate_reads(tmp_path / "a.fa", tmp_path / name, n_reads=20, read_length=50, seed=7, error_rate=0.05)
    simulate_reads(tmp_path / "a.fa", tmp_path / "z.fq.gz", n_reads=20, read_length=50, seed=8, error_rate=0.05)
    assert (tmp_path / "x.fq.gz").read_bytes() == (tmp_path / "y.fq.gz").read_bytes()
    assert read_fastq(tmp_path / "x.fq.gz") != read_fastq(tmp_path / "z.fq.gz")


def test_error_free_reads_are_exactly_the_reference_at_their_named_origin(tmp_path):
    contigs = make_reference(tmp_path / "ref.fa", 800, seed=5, n_contigs=2)

    origins = simulate_reads(tmp_path / "ref.fa", tmp_path / "reads.fq", n_reads=60, read_length=70, seed=9)

    records = read_fastq(tmp_path / "reads.fq")
    assert len(records) == 60
    assert [parse_read_origin(name) for name, _, _ in records] == origins
    assert {origin.strand for origin in origins} == {"+", "-"}
    assert {origin.contig for origin in origins} == {"ctg1", "ctg2"}
    for name, sequence, quality in records:
        origin = parse_read_origin(name)
        fragment = contigs[origin.contig][origin.start : origin.start + 70]
        assert sequence == (fragment if origin.strand == "+" else reverse_complement(fragment))
        assert len(quality) == 70
    all_scores = {ord(char) - 33 for _, _, quality in records for char in quality}
    assert len(all_scores) > 5 and min(all_scores) >= 2 and max(all_scores) <= 41


def test_errors_are_substitutions_at_about_the_requested_rate_with_low_quality(tmp_path):
    contigs = make_reference(tmp_path / "ref.fa", 5000, seed=1)

    simulate_reads(tmp_path / "ref.fa", tmp_path / "reads.fq", n_reads=100, read_length=100, seed=2, error_rate=0.1)

    mismatches = 0
    for name, sequence, quality in read_fastq(tmp_path / "reads.fq"):
        origin = parse_read_origin(name)
        truth = contigs[origin.contig][origin.start : origin.start + 100]
        if origin.strand == "-":
            truth = reverse_complement(truth)
        for read_base, true_base, score in zip(sequence, truth, quality):
            if read_base != true_base:
                mismatches += 1
                assert ord(score) - 33 <= 12
    assert 0.07 < mismatches / 10_000 < 0.13


def test_gzip_follows_the_suffix_unless_told(tmp_path):
    make_reference(tmp_path / "ref.fa", 300, seed=1)
    simulate_reads(tmp_path / "ref.fa", tmp_path / "auto.fq.gz", 5, 50, seed=1)
    simulate_reads(tmp_path / "ref.fa", tmp_path / "plain.fq", 5, 50, seed=1)
    simulate_reads(tmp_path / "ref.fa", tmp_path / "forced.fq", 5, 50, seed=1, gzip=True)

    assert (tmp_path / "auto.fq.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "forced.fq").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "plain.fq").read_bytes()[:1] == b"@"


def test_contig_names_with_underscores_round_trip(tmp_path):
    (tmp_path / "ref.fa").write_text(">chr_1_x\n" + "ACGT" * 50 + "\n")
    simulate_reads(tmp_path / "ref.fa", tmp_path / "r.fq", 3, 40, seed=1)
    origin = parse_read_origin(read_fastq(tmp_path / "r.fq")[0][0])
    assert origin.contig == "chr_1_x" and origin.index == 0


def test_reads_longer_than_every_contig_are_refused(tmp_path):
    make_reference(tmp_path / "ref.fa", 100, seed=1)
    with pytest.raises(ValueError, match="at least 150 bases"):
        simulate_reads(tmp_path / "ref.fa", tmp_path / "r.fq", 3, 150, seed=1)
