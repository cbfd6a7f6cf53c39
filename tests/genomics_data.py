"""Simulated genomics data whose truth is known, and the reference indices built with the tool images.

Everything here is plain Python (standard library) and deterministic for a given seed, so a test
can compare what a real tool reports with what must be true of the data it was given:

- `simulate_dna`: a random genome (FASTA) and single-end reads sampled from it (FASTQ), with a
  fraction of random junk reads; the truth is where every genuine read came from, hence how many
  reads an aligner must map (all genuine ones) and where.
- `simulate_rna`: a random genome with spliced genes (FASTA + GTF, GT..AG introns, genes on both
  strands, one to three isoforms per gene that share exons), their transcript sequences (FASTA),
  and single-end RNA-seq reads drawn from the transcripts at known abundances, plus junk; the
  truth is the number of reads drawn from each transcript, how many reads must map (uniquely:
  the genome is random, so a genuine read has one locus, and junk has none) and how many genuine
  reads cross each intron.

A random genome has no repeats, so "must map" and "maps uniquely" are exact for error-free and
low-error reads; a random junk read aligns to a few hundred kb only by a vanishing chance (bwa mem
needs a 19-mer exact seed and a score of 30; STAR needs 66 % of the read aligned).

The builders run the tools in their images (`docker run --rm --network=none`), as the lab's jobs
would, and write where the lab's pipelines (labs/genomics-core.yaml) expect their references:

- `build_bwa_index(engine, genome)` -> the five bwa index files beside the FASTA (`bwa mem REF`
  needs `REF.amb .ann .bwt .pac .sa` next to `REF`).
- `build_salmon_index(engine, transcriptome)` -> a salmon index directory (`salmon quant -i DIR`).
- `build_star_genome(engine, genome, annotation)` -> a STAR genome directory (`--genomeDir DIR`),
  with the annotation's splice junctions inserted.

The images are the local stand-ins for the biocontainers images the lab names (containers/
build_images.sh): Debian's bwa 0.7.17 (lab: 0.7.18), salmon 1.10.1 (lab: 1.10.3) and STAR 2.7.10b
(lab: 2.7.11b). bwa's index format has not changed between them, salmon 1.10.x indices are read by
every 1.10.x, and STAR 2.7.10b writes genome version 2.7.4a, which 2.7.11b reads.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BWA_IMAGE = "labbatch-bwa:local"          # bwa + samtools
SALMON_IMAGE = "labbatch-salmon:local"    # salmon
STAR_IMAGE = "labbatch-star:local"        # STAR

READ_LENGTH = 100
QUALITY = "I"             # Phred 40 for every base
# A read "crosses" a junction with at least this many bases on each side (STAR's default
# alignSJDBoverhangMin for annotated junctions; fewer are soft-clipped or read as mismatches).
JUNCTION_OVERHANG = 3
BWA_INDEX_SUFFIXES = (".amb", ".ann", ".bwt", ".pac", ".sa")
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def reverse_complement(sequence: str) -> str:
    return sequence.translate(_COMPLEMENT)[::-1]


def random_sequence(rng: random.Random, length: int) -> str:
    return "".join(rng.choices("ACGT", k=length))


def mutate(rng: random.Random, sequence: str, error_rate: float) -> str:
    """Substitution errors at `error_rate` per base (a base never "mutates" into itself)."""
    if error_rate <= 0:
        return sequence
    bases = list(sequence)
    for index in range(len(bases)):
        if rng.random() < error_rate:
            bases[index] = rng.choice([base for base in "ACGT" if base != bases[index]])
    return "".join(bases)


def write_fasta(path: Path, records: dict[str, str], width: int = 60) -> Path:
    with path.open("w") as out:
        for name, sequence in records.items():
            out.write(f">{name}\n")
            for start in range(0, len(sequence), width):
                out.write(sequence[start:start + width] + "\n")
    return path


def write_fastq(path: Path, reads: list[tuple[str, str]]) -> Path:
    """Plain FASTQ: every pipeline of the lab reads it (STAR's command there has no --readFilesCommand)."""
    with path.open("w") as out:
        for name, sequence in reads:
            out.write(f"@{name}\n{sequence}\n+\n{QUALITY * len(sequence)}\n")
    return path


# --- DNA: genome + reads for an aligner -------------------------------------------------------

@dataclass(frozen=True)
class ReadOrigin:
    chrom: str
    start: int        # 0-based leftmost base on the forward strand
    reverse: bool     # the read is the reverse complement of the genome there


@dataclass(frozen=True)
class DnaData:
    genome: Path                       # FASTA: chr1, chr2, ...
    reads: Path                        # FASTQ: genuine reads "readN", junk reads "junkN"
    chromosomes: dict[str, int]        # name -> length
    origins: dict[str, ReadOrigin]     # genuine read name -> where it was sampled
    junk: int                          # random reads that belong nowhere

    @property
    def reads_total(self) -> int:
        return len(self.origins) + self.junk

    @property
    def expected_mapped(self) -> int:
        """Reads an aligner must map: every genuine read (junk maps only by a vanishing chance)."""
        return len(self.origins)


def simulate_dna(directory: Path, *, seed: int = 23, chromosomes: tuple[int, ...] = (60_000, 60_000),
                 reads: int = 4_000, junk_fraction: float = 0.1, error_rate: float = 0.002,
                 read_length: int = READ_LENGTH) -> DnaData:
    """Write genome.fa and reads.fastq into `directory`; `reads` counts genuine and junk reads."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    genome = {f"chr{index + 1}": random_sequence(rng, length) for index, length in enumerate(chromosomes)}
    names = list(genome)
    weights = [len(genome[name]) - read_length + 1 for name in names]
    junk = round(reads * junk_fraction)
    records: list[tuple[str, str]] = []
    origins: dict[str, ReadOrigin] = {}
    for index in range(reads - junk):
        chrom = rng.choices(names, weights=weights)[0]
        start = rng.randrange(len(genome[chrom]) - read_length + 1)
        reverse = rng.random() < 0.5
        sequence = genome[chrom][start:start + read_length]
        if reverse:
            sequence = reverse_complement(sequence)
        name = f"read{index}"
        records.append((name, mutate(rng, sequence, error_rate)))
        origins[name] = ReadOrigin(chrom, start, reverse)
    records += [(f"junk{index}", random_sequence(rng, read_length)) for index in range(junk)]
    rng.shuffle(records)
    return DnaData(genome=write_fasta(directory / "genome.fa", genome),
                   reads=write_fastq(directory / "reads.fastq", records),
                   chromosomes={name: len(sequence) for name, sequence in genome.items()},
                   origins=origins, junk=junk)


# --- RNA: annotated genome, transcriptome, reads at known abundances -------------------------

@dataclass(frozen=True)
class Transcript:
    transcript_id: str
    gene_id: str
    chrom: str
    strand: str                            # "+" or "-"
    exons: tuple[tuple[int, int], ...]     # 0-based half-open genomic intervals, ascending
    sequence: str                          # the mature transcript, 5' to 3'

    @property
    def introns(self) -> tuple[tuple[int, int], ...]:
        return tuple((left[1], right[0]) for left, right in zip(self.exons, self.exons[1:]))

    def junctions_crossed(self, start: int, end: int, overhang: int) -> list[tuple[str, int, int]]:
        """Introns (chrom, first base, last base; 1-based) that the transcript's bases [start, end)
        cross with at least `overhang` bases on each side."""
        ordered = self.exons if self.strand == "+" else self.exons[::-1]    # 5' to 3'
        crossed, offset = [], 0
        for upstream, downstream in zip(ordered, ordered[1:]):
            offset += upstream[1] - upstream[0]                              # the junction, in transcript bases
            if start + overhang <= offset <= end - overhang:
                left, right = (upstream, downstream) if self.strand == "+" else (downstream, upstream)
                crossed.append((self.chrom, left[1] + 1, right[0]))
        return crossed


@dataclass(frozen=True)
class RnaData:
    genome: Path                   # FASTA
    annotation: Path               # GTF (gene, transcript and exon lines; 1-based, inclusive)
    transcriptome: Path            # FASTA of the transcripts, named by transcript id
    reads: Path                    # FASTQ: genuine reads "<transcript>_N", junk reads "junkN"
    transcripts: tuple[Transcript, ...]
    abundance: dict[str, float]    # transcript id -> the relative molar abundance reads were drawn by
    counts: dict[str, int]         # transcript id -> reads drawn from it (0 for unexpressed ones)
    junction_reads: dict[tuple[str, int, int], int]   # intron -> genuine reads across it, >= 3 bases each side
    junk: int
    fragment_mean: int
    fragment_sd: int
    chromosomes: dict[str, int] = field(default_factory=dict)

    @property
    def reads_total(self) -> int:
        return sum(self.counts.values()) + self.junk

    @property
    def expected_mapped(self) -> int:
        """Reads that must map, each to one locus of the genome or to its transcript(s)."""
        return sum(self.counts.values())

    @property
    def introns(self) -> set[tuple[str, int, int]]:
        """Annotated introns as (chrom, first intron base, last intron base), 1-based like STAR's SJ.out.tab."""
        return {(t.chrom, start + 1, end) for t in self.transcripts for start, end in t.introns}


def _layout_genes(rng: random.Random, chrom: str, length: int, first_gene: int
                  ) -> list[tuple[str, str, list[tuple[int, int]]]]:
    """Genes placed one after another: (gene id, strand, exons) with 2-5 exons of 150-500 bp."""
    genes = []
    cursor = rng.randint(1_000, 3_000)
    while True:
        exon_count = rng.randint(2, 5)
        exons = []
        position = cursor
        for index in range(exon_count):
            if index:
                position += rng.randint(300, 3_000)          # intron
            exon_length = rng.randint(150, 500)
            exons.append((position, position + exon_length))
            position += exon_length
        if position + 1_000 > length:
            return genes
        genes.append((f"G{first_gene + len(genes) + 1}", rng.choice("+-"), exons))
        cursor = position + rng.randint(1_500, 5_000)      # intergenic


def _isoforms(rng: random.Random, exons: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """One to three isoforms of a gene: all exons; one internal exon skipped; the first exon dropped."""
    isoforms = [exons]
    if len(exons) >= 3 and rng.random() < 0.6:
        skipped = rng.randrange(1, len(exons) - 1)
        isoforms.append(exons[:skipped] + exons[skipped + 1:])
    if len(exons) >= 3 and rng.random() < 0.4:
        isoforms.append(exons[1:])
    return isoforms


def simulate_rna(directory: Path, *, seed: int = 23, chromosomes: tuple[int, ...] = (100_000, 100_000),
                 reads: int = 20_000, junk_fraction: float = 0.05, error_rate: float = 0.0,
                 unexpressed: int = 2, fragment_mean: int = 250, fragment_sd: int = 25,
                 read_length: int = READ_LENGTH) -> RnaData:
    """Write genome.fa, genes.gtf, transcripts.fa and rnaseq.fastq into `directory`.

    Abundances are log-normal, with `unexpressed` transcripts at zero. Reads are drawn as an
    unstranded single-end library is made: a transcript is chosen in proportion to abundance ×
    effective length (what salmon estimates), a fragment of N(fragment_mean, fragment_sd) bases at a
    uniform position, and the read is its first `read_length` bases from either end (so salmon's
    `-l A` detects an unstranded library, U). `reads` counts genuine and junk reads.

    Error-free by default: with errors, a read whose first or last few bases carry one can score
    as well spliced to a chance match elsewhere as straight through, and STAR then reports it at
    two loci (about 1 read in 1,000 at 0.2 % errors), so "maps uniquely" would stop being exact.
    """
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    bases = {f"chr{index + 1}": list(random_sequence(rng, length)) for index, length in enumerate(chromosomes)}
    layout: list[tuple[str, str, str, list[tuple[int, int]]]] = []
    for chrom, sequence in bases.items():
        layout += [(chrom, *gene) for gene in _layout_genes(rng, chrom, len(sequence), len(layout))]
    structures = []   # (transcript id, gene id, chrom, strand, exons)
    for chrom, gene_id, strand, exons in layout:
        for number, isoform in enumerate(_isoforms(rng, exons), start=1):
            structures.append((f"{gene_id}.{number}", gene_id, chrom, strand, tuple(isoform)))
            for (_, donor), (acceptor, _) in zip(isoform, isoform[1:]):
                # Canonical GT..AG introns on the gene's strand (CT..AC on the forward strand for "-").
                left, right = ("GT", "AG") if strand == "+" else ("CT", "AC")
                bases[chrom][donor:donor + 2] = list(left)
                bases[chrom][acceptor - 2:acceptor] = list(right)
                # An exon base next to an intron differs from the intron base beside it ("G" or
                # "C"), so a read that overhangs a junction by a few bases never also matches
                # the genome straight through: each genuine read has one exact alignment, and
                # "maps uniquely" is exact (else STAR reports some reads at two loci, NH:i:2).
                for position in (donor - 1, acceptor):
                    if bases[chrom][position] == left[0]:
                        bases[chrom][position] = rng.choice([base for base in "ACGT" if base != left[0]])
    genome = {chrom: "".join(sequence) for chrom, sequence in bases.items()}

    transcripts = []
    for transcript_id, gene_id, chrom, strand, exons in structures:
        sequence = "".join(genome[chrom][start:end] for start, end in exons)
        if strand == "-":
            sequence = reverse_complement(sequence)
        transcripts.append(Transcript(transcript_id, gene_id, chrom, strand, exons, sequence))

    silent = set(rng.sample([t.transcript_id for t in transcripts], unexpressed))
    abundance = {t.transcript_id: 0.0 if t.transcript_id in silent else rng.lognormvariate(0, 1.2)
                 for t in transcripts}
    total = sum(abundance.values())
    abundance = {name: value / total for name, value in abundance.items()}
    # Expected reads ∝ abundance × effective length (positions a mean-length fragment can start at).
    weights = [abundance[t.transcript_id] * max(1, len(t.sequence) - fragment_mean + 1) for t in transcripts]
    junk = round(reads * junk_fraction)
    chosen = rng.choices(range(len(transcripts)), weights=weights, k=reads - junk)
    records: list[tuple[str, str]] = []
    drawn: Counter[str] = Counter()
    crossing: Counter[tuple[str, int, int]] = Counter()
    for index in chosen:
        transcript = transcripts[index]
        length = len(transcript.sequence)
        fragment = min(length, max(read_length, round(rng.gauss(fragment_mean, fragment_sd))))
        start = rng.randrange(length - fragment + 1)
        piece = transcript.sequence[start:start + fragment]
        if rng.random() < 0.5:
            read, first = piece[:read_length], start
        else:
            read, first = reverse_complement(piece)[:read_length], start + fragment - read_length
        crossing.update(transcript.junctions_crossed(first, first + read_length, JUNCTION_OVERHANG))
        drawn[transcript.transcript_id] += 1
        records.append((f"{transcript.transcript_id}_{drawn[transcript.transcript_id]}",
                        mutate(rng, read, error_rate)))
    records += [(f"junk{index}", random_sequence(rng, read_length)) for index in range(junk)]
    rng.shuffle(records)

    return RnaData(genome=write_fasta(directory / "genome.fa", genome),
                   annotation=_write_gtf(directory / "genes.gtf", transcripts),
                   transcriptome=write_fasta(directory / "transcripts.fa",
                                             {t.transcript_id: t.sequence for t in transcripts}),
                   reads=write_fastq(directory / "rnaseq.fastq", records),
                   transcripts=tuple(transcripts), abundance=abundance,
                   counts={t.transcript_id: drawn[t.transcript_id] for t in transcripts},
                   junction_reads=dict(crossing), junk=junk,
                   fragment_mean=fragment_mean, fragment_sd=fragment_sd,
                   chromosomes={chrom: len(sequence) for chrom, sequence in genome.items()})


def _write_gtf(path: Path, transcripts: list[Transcript]) -> Path:
    def line(chrom: str, feature: str, start: int, end: int, strand: str, attributes: str) -> str:
        return f"{chrom}\tlabbatch\t{feature}\t{start + 1}\t{end}\t.\t{strand}\t.\t{attributes}\n"

    with path.open("w") as out:
        seen_genes = set()
        for t in transcripts:
            gene = f'gene_id "{t.gene_id}";'
            if t.gene_id not in seen_genes:
                seen_genes.add(t.gene_id)
                spans = [e for other in transcripts if other.gene_id == t.gene_id for e in other.exons]
                out.write(line(t.chrom, "gene", min(s for s, _ in spans), max(e for _, e in spans), t.strand, gene))
            ids = f'{gene} transcript_id "{t.transcript_id}";'
            out.write(line(t.chrom, "transcript", t.exons[0][0], t.exons[-1][1], t.strand, ids))
            numbered = t.exons if t.strand == "+" else t.exons[::-1]     # exon 1 is the 5' one
            for number, (start, end) in enumerate(numbered, start=1):
                out.write(line(t.chrom, "exon", start, end, t.strand, f'{ids} exon_number "{number}";'))
    return path


# --- Running the tools in their images, and the reference builders ----------------------------

class ToolFailed(RuntimeError):
    pass


def run_tool(engine: str, image: str, argv: list[str], *, volumes: dict[Path, str],
             workdir: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`ENGINE run --rm --network=none` as the calling user, with host directories mounted; raises on failure."""
    args = [engine, "run", "--rm", "--network=none", "--user", f"{os.getuid()}:{os.getgid()}"]
    for host, container in volumes.items():
        args += ["--volume", f"{Path(host).resolve()}:{container}"]
    if workdir:
        args += ["--workdir", workdir]
    result = subprocess.run([*args, image, *argv], capture_output=True, text=True, errors="replace", timeout=timeout)
    if result.returncode != 0:
        raise ToolFailed(f"{' '.join(argv)} in {image} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


class Mounts:
    """The output directory at /out and each input's directory once, at /in1, /in2, ..."""

    def __init__(self, output: Path) -> None:
        self.volumes: dict[Path, str] = {output.resolve(): "/out"}

    def inside(self, path: Path) -> str:
        folder = self.volumes.setdefault(path.parent.resolve(), f"/in{len(self.volumes)}")
        return f"{folder}/{path.name}"


def build_bwa_index(engine: str, genome: Path, *, image: str = BWA_IMAGE) -> list[Path]:
    """`bwa index` the FASTA in place; returns the five index files written beside it."""
    run_tool(engine, image, ["bwa", "index", f"/ref/{genome.name}"], volumes={genome.parent: "/ref"})
    files = [genome.with_name(genome.name + suffix) for suffix in BWA_INDEX_SUFFIXES]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise ToolFailed(f"bwa index wrote no {', '.join(missing)}")
    return files


def build_salmon_index(engine: str, transcriptome: Path, index_dir: Path | None = None, *, kmer: int = 31,
                       threads: int = 2, image: str = SALMON_IMAGE) -> Path:
    """`salmon index` a transcript FASTA into `index_dir` (default: salmon_index beside the FASTA)."""
    index_dir = index_dir or transcriptome.with_name("salmon_index")
    index_dir.mkdir(parents=True, exist_ok=True)
    mounts = Mounts(index_dir)
    run_tool(engine, image, ["salmon", "index", "-t", mounts.inside(transcriptome), "-i", "/out",
                             "-k", str(kmer), "-p", str(threads)], volumes=mounts.volumes)
    if not (index_dir / "info.json").is_file():
        raise ToolFailed(f"salmon index wrote no info.json in {index_dir}")
    return index_dir


def star_sa_index_nbases(genome_length: int) -> int:
    """STAR's advice for small genomes: min(14, log2(genome length) / 2 - 1)."""
    return min(14, int(math.log2(genome_length) / 2 - 1))


def build_star_genome(engine: str, genome: Path, annotation: Path | None = None, genome_dir: Path | None = None,
                      *, sjdb_overhang: int = READ_LENGTH - 1, threads: int = 2,
                      image: str = STAR_IMAGE) -> Path:
    """`STAR --runMode genomeGenerate` into `genome_dir` (default: star_genome beside the FASTA).

    With an annotation (GTF) beside or anywhere, its splice junctions go into the genome
    (--sjdbGTFfile, --sjdbOverhang read length - 1). --genomeSAindexNbases follows STAR's advice
    for small genomes, which keeps memory and time small (a 200 kb genome: 8, a second, < 100 MB).
    """
    genome_dir = genome_dir or genome.with_name("star_genome")
    genome_dir.mkdir(parents=True, exist_ok=True)
    length = sum(len(line.strip()) for line in genome.open() if not line.startswith(">"))
    mounts = Mounts(genome_dir)
    inside = mounts.inside
    argv = ["STAR", "--runMode", "genomeGenerate", "--runThreadN", str(threads), "--genomeDir", "/out",
            "--genomeFastaFiles", inside(genome), "--genomeSAindexNbases", str(star_sa_index_nbases(length)),
            "--outFileNamePrefix", "/out/", "--outTmpDir", "/tmp/star-genome"]
    if annotation is not None:
        argv += ["--sjdbGTFfile", inside(annotation), "--sjdbOverhang", str(sjdb_overhang)]
    run_tool(engine, image, argv, volumes=mounts.volumes)
    if not (genome_dir / "SA").is_file():
        raise ToolFailed(f"STAR genomeGenerate wrote no SA in {genome_dir}")
    return genome_dir
