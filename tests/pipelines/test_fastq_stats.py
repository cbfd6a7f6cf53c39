"""fastq-stats against statistics computed independently from the FASTQ text."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labbatch_pipelines import fastq_stats


def expected_stats(fastq_text: str) -> dict:
    """Reference computation: plain line-splitting, counting character by character."""
    lines = fastq_text.splitlines()
    sequences = lines[1::4]
    qualities = lines[3::4]
    bases = sum(len(sequence) for sequence in sequences)
    gc = sum(1 for sequence in sequences for base in sequence if base in "GCgc")
    acgt = sum(1 for sequence in sequences for base in sequence if base in "ACGTacgt")
    phred_total = sum(ord(char) - 33 for quality in qualities for char in quality)
    return {
        "reads": len(sequences),
        "bases": bases,
        "gc_fraction": gc / acgt if acgt else None,
        "mean_quality": phred_total / bases if bases else None,
    }


def fastq_text(records: list[tuple[str, str, str]]) -> str:
    return "".join(f"@{name}\n{sequence}\n+\n{quality}\n" for name, sequence, quality in records)


MIXED_RECORDS = [
    ("read1 some comment", "ACGTNNacgt", "IIIII#####"),
    ("read2", "GGGGCCCCRY", "!!!!!!!!!!"),
    ("read3", "nnnnatat", "FFFF:::,"),
    ("read4", "A", "~"),
]


def run_tool(input_path: Path, output_dir: Path) -> dict:
    fastq_stats.main([str(input_path), "--output-dir", str(output_dir)])
    return json.loads((output_dir / "stats.json").read_text())


def test_plain_fastq_with_n_lowercase_and_other_letters(tmp_path):
    text = fastq_text(MIXED_RECORDS)
    fastq = tmp_path / "mixed.fastq"
    fastq.write_text(text)

    stats = run_tool(fastq, tmp_path / "out")

    assert stats == {"input": "mixed.fastq", **expected_stats(text)}
    # Hand check of the GC rule: N, R and Y count in neither numerator nor denominator.
    assert stats["gc_fraction"] == (2 + 2 + 8 + 0 + 0) / (8 + 8 + 4 + 1)
    assert stats["bases"] == 10 + 10 + 8 + 1


def test_gzip_fastq_gives_the_same_numbers(tmp_path):
    text = fastq_text(MIXED_RECORDS)
    fastq_gz = tmp_path / "mixed.fastq.gz"
    fastq_gz.write_bytes(gzip.compress(text.encode()))

    stats = run_tool(fastq_gz, tmp_path / "out")

    assert stats == {"input": "mixed.fastq.gz", **expected_stats(text)}


def test_counts_are_unchanged_across_batch_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(fastq_stats, "RECORDS_PER_BATCH", 3)
    records = [(f"r{i}", "ACGTN"[: 1 + i % 5] * (i + 1), "5" * (1 + i % 5) * (i + 1)) for i in range(11)]
    text = fastq_text(records)
    fastq = tmp_path / "batches.fq"
    fastq.write_text(text)

    stats = run_tool(fastq, tmp_path / "out")

    assert stats["reads"] == 11
    assert stats == {"input": "batches.fq", **expected_stats(text)}


def test_empty_file_has_zero_reads_and_null_fractions(tmp_path):
    empty = tmp_path / "empty.fastq"
    empty.write_bytes(b"")

    stats = run_tool(empty, tmp_path / "out")

    assert stats == {"input": "empty.fastq", "reads": 0, "bases": 0, "gc_fraction": None, "mean_quality": None}


def test_reads_of_only_n_have_no_gc_fraction_but_a_quality(tmp_path):
    fastq = tmp_path / "n.fq"
    fastq.write_text(fastq_text([("r", "NNNN", "++++")]))

    stats = run_tool(fastq, tmp_path / "out")

    assert stats["gc_fraction"] is None
    assert stats["mean_quality"] == 10.0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param("@r1\nACGT\n+\nIII\n", "Length of sequence and qualities differ", id="quality-length"),
        pytest.param("@r1\nACGT\n+\nIIII\n@r2\nAC\n", "Premature end of file", id="truncated-record"),
        pytest.param(">r1\nACGT\n", "Premature end of file", id="fasta-not-fastq"),
        pytest.param("@r1\nACGT\n+\nIIII\nr2\nACGT\n+\nIIII\n", "Line expected to start with '@'", id="no-at"),
    ],
)
def test_malformed_fastq_fails_with_one_line_and_writes_nothing(tmp_path, capsys, content, problem):
    bad = tmp_path / "bad.fastq"
    bad.write_text(content)
    output_dir = tmp_path / "out"

    with pytest.raises(SystemExit) as exit_info:
        fastq_stats.main([str(bad), "--output-dir", str(output_dir)])

    assert exit_info.value.code != 0
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("fastq-stats: error: ")
    assert str(bad) in error and "line" in error and problem in error
    assert not (output_dir / "stats.json").exists()


def test_truncated_gzip_fails_cleanly(tmp_path, capsys):
    text = fastq_text(MIXED_RECORDS * 200).encode()
    truncated = tmp_path / "cut.fastq.gz"
    truncated.write_bytes(gzip.compress(text)[:-40])

    with pytest.raises(SystemExit) as exit_info:
        fastq_stats.main([str(truncated), "--output-dir", str(tmp_path / "out")])

    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(truncated) in error
    assert not (tmp_path / "out" / "stats.json").exists()


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fastq_stats.main([str(tmp_path / "nope.fq"), "--output-dir", str(tmp_path / "out")])

    assert exit_info.value.code == 1
    assert "nope.fq' does not exist" in capsys.readouterr().err


def test_runs_as_a_subprocess(tmp_path):
    text = fastq_text(MIXED_RECORDS)
    fastq = tmp_path / "sub.fastq"
    fastq.write_text(text)
    bad = tmp_path / "bad.fastq"
    bad.write_text("@r1\nACGT\n+\nIII\n")

    good_run = subprocess.run(
        [sys.executable, "-m", "labbatch_pipelines.fastq_stats", str(fastq), "--output-dir", str(tmp_path / "good")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    bad_run = subprocess.run(
        [sys.executable, "-m", "labbatch_pipelines.fastq_stats", str(bad), "--output-dir", str(tmp_path / "bad")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert good_run.returncode == 0, good_run.stderr
    assert json.loads((tmp_path / "good" / "stats.json").read_text()) == {"input": "sub.fastq", **expected_stats(text)}
    assert bad_run.returncode == 1
    assert "Traceback" not in bad_run.stderr
    assert bad_run.stderr.strip().count("\n") == 0 and "bad.fastq" in bad_run.stderr
    assert not (tmp_path / "bad" / "stats.json").exists()


record_strategy = st.integers(min_value=0, max_value=40).flatmap(
    lambda length: st.tuples(
        st.text(alphabet="ACGTNacgtnRY", min_size=length, max_size=length),
        st.text(alphabet=[chr(code) for code in range(33, 127)], min_size=length, max_size=length),
    )
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(record_strategy, max_size=12))
def test_matches_reference_computation_for_any_fastq(tmp_path, records):
    text = fastq_text([(f"r{i}", sequence, quality) for i, (sequence, quality) in enumerate(records)])
    fastq = tmp_path / "any.fq"
    fastq.write_text(text)

    stats = run_tool(fastq, tmp_path / "out")

    assert stats == {"input": "any.fq", **expected_stats(text)}
