"""Deterministic test data for the demo tools: a random reference and reads sampled from it.

Each simulated read's name records where it came from, `r{index}_{contig}_{start}_{strand}`,
with `start` the 0-based leftmost reference position (as in BAM) and `strand` '+' or '-', so a
test can check an aligner's answer against the truth. `parse_read_origin` reads it back.
"""

from __future__ import annotations

import gzip as gzip_module
import random
from dataclasses import dataclass
from pathlib import Path

import dnaio

BASES = "ACGT"
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
FASTA_LINE_WIDTH = 60
# Typical Illumina-like range; bases with a simulated error get a low score, as a sequencer
# would give an uncertain call.
GOOD_QUALITY = (25, 40)
ERROR_QUALITY = (2, 12)


@dataclass(frozen=True)
class ReadOrigin:
    index: int
    contig: str
    start: int
    strand: str


def reverse_complement(sequence: str) -> str:
    return sequence.translate(_COMPLEMENT)[::-1]


def make_reference(path: str | Path, length: int, seed: int, n_contigs: int = 1) -> dict[str, str]:
    """Write a FASTA of `n_contigs` uniformly random contigs named ctg1, ctg2, ..., each `length` bases.

    Returns the contigs as {name: sequence}.
    """
    if length < 1 or n_contigs < 1:
        raise ValueError("length and n_contigs must be at least 1")
    rng = random.Random(seed)
    contigs = {f"ctg{number}": "".join(rng.choices(BASES, k=length)) for number in range(1, n_contigs + 1)}
    with open(path, "w", encoding="ascii") as fasta:
        for name, sequence in contigs.items():
            fasta.write(f">{name}\n")
            for offset in range(0, len(sequence), FASTA_LINE_WIDTH):
                fasta.write(sequence[offset : offset + FASTA_LINE_WIDTH] + "\n")
    return contigs


def read_fasta(path: str | Path) -> dict[str, str]:
    with dnaio.open(path, fileformat="fasta") as reader:
        return {record.id: record.sequence.upper() for record in reader}


def format_read_name(origin: ReadOrigin) -> str:
    return f"r{origin.index}_{origin.contig}_{origin.start}_{origin.strand}"


def parse_read_origin(read_name: str) -> ReadOrigin:
    # Split the index off the left and start/strand off the right, so contig names may
    # themselves contain underscores.
    index_part, rest = read_name.split("_", 1)
    contig, start, strand = rest.rsplit("_", 2)
    return ReadOrigin(index=int(index_part.removeprefix("r")), contig=contig, start=int(start), strand=strand)


def _substitute(base: str, rng: random.Random) -> str:
    return rng.choice([other for other in BASES if other != base])


def simulate_reads(
    reference_path: str | Path,
    fastq_path: str | Path,
    n_reads: int,
    read_length: int,
    seed: int,
    error_rate: float = 0.0,
    gzip: bool | None = None,
) -> list[ReadOrigin]:
    """Sample `n_reads` reads of `read_length` from random positions and strands of the reference.

    Each base is replaced by a different base with probability `error_rate` (substitutions
    only, so the true start stays exact). `gzip=None` compresses when the path ends in `.gz`.
    Returns the true origins in file order.
    """
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError("error_rate must be between 0 and 1")
    contigs = read_fasta(reference_path)
    long_enough = {name: seq for name, seq in contigs.items() if len(seq) >= read_length}
    if not long_enough:
        raise ValueError(f"no contig in {reference_path} is at least {read_length} bases long")
    names = list(long_enough)
    # Weight by the number of possible start positions so every position is equally likely.
    weights = [len(long_enough[name]) - read_length + 1 for name in names]

    rng = random.Random(seed)
    compress = str(fastq_path).endswith(".gz") if gzip is None else gzip
    origins: list[ReadOrigin] = []
    lines: list[str] = []
    for index in range(n_reads):
        contig = rng.choices(names, weights=weights)[0]
        start = rng.randrange(len(long_enough[contig]) - read_length + 1)
        strand = rng.choice("+-")
        fragment = long_enough[contig][start : start + read_length]
        read = list(fragment if strand == "+" else reverse_complement(fragment))
        qualities = []
        for position in range(read_length):
            if rng.random() < error_rate:
                read[position] = _substitute(read[position], rng)
                qualities.append(rng.randint(*ERROR_QUALITY))
            else:
                qualities.append(rng.randint(*GOOD_QUALITY))
        origin = ReadOrigin(index=index, contig=contig, start=start, strand=strand)
        origins.append(origin)
        quality_text = "".join(chr(score + 33) for score in qualities)
        lines.append(f"@{format_read_name(origin)}\n{''.join(read)}\n+\n{quality_text}\n")

    payload = "".join(lines).encode("ascii")
    if compress:
        # No timestamp and no file name in the gzip header: the same seed gives the same bytes.
        with open(fastq_path, "wb") as raw, gzip_module.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
            handle.write(payload)
    else:
        Path(fastq_path).write_bytes(payload)
    return origins
