"""fastq-stats: read counts, base counts, GC fraction and mean quality of one FASTQ file.

Usage: fastq-stats INPUT.fastq[.gz] --output-dir DIR   ->   DIR/stats.json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import dnaio

from labbatch_pipelines._cli import (
    DECOMPRESSION_ERRORS,
    ToolError,
    check_readable_file,
    describe_format_error,
    fail,
    prepare_output_dir,
    write_json_atomically,
)

TOOL = "fastq-stats"
PHRED_OFFSET = 33
# Records are joined into batches so that counting runs in C over long strings; the per-record
# Python work is then only two list appends. 10,000 short reads is a few MB of text.
RECORDS_PER_BATCH = 10_000


@dataclass
class FastqStats:
    reads: int = 0
    bases: int = 0
    gc_bases: int = 0
    acgt_bases: int = 0
    quality_sum: int = 0

    def add_batch(self, sequences: list[str], qualities: list[str]) -> None:
        sequence_text = "".join(sequences).upper()
        g_and_c = sequence_text.count("G") + sequence_text.count("C")
        self.reads += len(sequences)
        self.bases += len(sequence_text)
        self.gc_bases += g_and_c
        self.acgt_bases += g_and_c + sequence_text.count("A") + sequence_text.count("T")
        # sum() over bytes runs in C; qualities are ASCII, so encoding is a plain copy.
        self.quality_sum += sum("".join(qualities).encode("ascii"))

    def as_json(self, input_name: str) -> dict:
        return {
            "input": input_name,
            "reads": self.reads,
            "bases": self.bases,
            "gc_fraction": self.gc_bases / self.acgt_bases if self.acgt_bases else None,
            "mean_quality": (
                (self.quality_sum - PHRED_OFFSET * self.bases) / self.bases if self.bases else None
            ),
        }


def compute_stats(fastq_path: Path) -> FastqStats:
    stats = FastqStats()
    sequences: list[str] = []
    qualities: list[str] = []
    # fileformat is fixed so a FASTA or stray text file is an error, not silently zero reads.
    with dnaio.open(fastq_path, fileformat="fastq") as reader:
        for record in reader:
            sequences.append(record.sequence)
            qualities.append(record.qualities)
            if len(sequences) == RECORDS_PER_BATCH:
                stats.add_batch(sequences, qualities)
                sequences.clear()
                qualities.clear()
    stats.add_batch(sequences, qualities)
    return stats


def run(fastq_path: Path, output_dir: Path) -> dict:
    check_readable_file("input", fastq_path, allow_empty=True)
    try:
        stats = compute_stats(fastq_path)
    except dnaio.FileFormatError as error:
        raise ToolError(describe_format_error("input", fastq_path, error)) from error
    except DECOMPRESSION_ERRORS as error:
        raise ToolError(f"input '{fastq_path}' could not be read: {error}") from error
    result = stats.as_json(fastq_path.name)
    prepare_output_dir(output_dir)
    write_json_atomically(output_dir / "stats.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=TOOL, description="Summarise a FASTQ file (plain or gzip).")
    parser.add_argument("input", type=Path, help="FASTQ file, plain or gzip-compressed")
    parser.add_argument("--output-dir", type=Path, required=True, help="directory for stats.json")
    args = parser.parse_args(argv)
    try:
        run(args.input, args.output_dir)
    except ToolError as error:
        fail(TOOL, str(error))


if __name__ == "__main__":
    main()
