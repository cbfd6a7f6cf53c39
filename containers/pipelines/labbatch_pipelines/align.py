"""labbatch-align: align reads to a reference with minimap2 (mappy) and write a sorted, indexed BAM.

Usage: labbatch-align --reference REF.fa [--preset sr] --output-dir DIR READS.fastq[.gz]
   ->  DIR/aligned.bam, DIR/aligned.bam.bai, DIR/align.json
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import dnaio
import mappy
import pysam

from labbatch_pipelines._cli import (
    DECOMPRESSION_ERRORS,
    ToolError,
    check_readable_file,
    describe_format_error,
    fail,
    prepare_output_dir,
    temp_path_beside,
    write_json_atomically,
)
from labbatch_pipelines.bam_records import aligned_record, unmapped_record

TOOL = "labbatch-align"
BAM_NAME = "aligned.bam"
# mappy accepts any string as a preset and silently falls back to defaults on an unknown one,
# so the choice is checked here against minimap2's documented presets.
PRESETS = ("sr", "map-ont", "map-pb", "map-hifi", "lr:hq", "asm5", "asm10", "asm20", "splice")
# os.cpu_count() inside a Batch container reports the host's CPUs, not the job's vCPUs, so
# sorting uses a small fixed number of threads rather than oversubscribing the instance.
SORT_THREADS = 2


@dataclass
class AlignCounts:
    reads: int = 0
    mapped: int = 0


def read_reference_contigs(reference_path: Path) -> list[tuple[str, int]]:
    """Names and lengths of the reference's sequences, which become the BAM header.

    Parsing the FASTA ourselves is also the validation: minimap2 builds an empty index from a
    file that is not FASTA at all, and every read would then look merely unmapped.
    """
    check_readable_file("reference", reference_path, allow_empty=False)
    contigs: list[tuple[str, int]] = []
    seen: set[str] = set()
    try:
        with dnaio.open(reference_path, fileformat="fasta") as reader:
            for record in reader:
                # minimap2 names a sequence by the header's first word, as BAM does.
                name = record.id
                if not name:
                    raise ToolError(f"reference '{reference_path}' has a sequence with no name")
                if name in seen:
                    raise ToolError(f"reference '{reference_path}' has two sequences named '{name}'")
                if not record.sequence:
                    raise ToolError(f"reference '{reference_path}': sequence '{name}' is empty")
                seen.add(name)
                contigs.append((name, len(record.sequence)))
    except dnaio.FileFormatError as error:
        raise ToolError(describe_format_error("reference", reference_path, error)) from error
    except DECOMPRESSION_ERRORS as error:
        raise ToolError(f"reference '{reference_path}' could not be read: {error}") from error
    if not contigs:
        raise ToolError(f"reference '{reference_path}' contains no sequences")
    return contigs


def build_index(reference_path: Path, preset: str, contigs: list[tuple[str, int]]) -> mappy.Aligner:
    aligner = mappy.Aligner(fn_idx_in=str(reference_path), preset=preset)
    if not aligner:
        raise ToolError(f"minimap2 could not build an index from reference '{reference_path}'")
    if list(aligner.seq_names) != [name for name, _ in contigs]:
        raise ToolError(f"minimap2 read different sequence names from reference '{reference_path}'")
    return aligner


def align_reads_to_bam(
    aligner: mappy.Aligner, reads_path: Path, header: pysam.AlignmentHeader, unsorted_bam: Path
) -> AlignCounts:
    counts = AlignCounts()
    contig_ids = {name: header.get_tid(name) for name in header.references}
    # One buffer reused for every read avoids minimap2 reallocating its working memory.
    buffer = mappy.ThreadBuffer()
    # The unsorted BAM is read once by the sort and deleted, so it is written uncompressed
    # ("wbu"): about a quarter faster overall, at the price of more scratch space for a while.
    with dnaio.open(reads_path, fileformat="fastq") as reader, pysam.AlignmentFile(
        str(unsorted_bam), "wbu", header=header
    ) as bam:
        for read in reader:
            counts.reads += 1
            primary = next((hit for hit in aligner.map(read.sequence, buf=buffer) if hit.is_primary), None)
            if primary is None:
                bam.write(unmapped_record(read, header))
            else:
                counts.mapped += 1
                bam.write(aligned_record(read, primary, contig_ids[primary.ctg], header))
    return counts


def sort_and_index(unsorted_bam: Path, sorted_bam: Path, index_path: Path, threads: int) -> None:
    try:
        pysam.sort(
            "--no-PG",  # the command line would only show temporary file names
            "-@", str(max(threads - 1, 0)),
            "-T", str(sorted_bam) + ".sorttmp",
            "-o", str(sorted_bam),
            str(unsorted_bam),
        )  # fmt: skip
        pysam.index("-o", str(index_path), str(sorted_bam))
    except pysam.SamtoolsError as error:
        raise ToolError(f"samtools failed while sorting or indexing the BAM: {error}") from error


def run(reference_path: Path, reads_path: Path, output_dir: Path, preset: str = "sr") -> dict:
    contigs = read_reference_contigs(reference_path)
    check_readable_file("reads file", reads_path, allow_empty=False)
    aligner = build_index(reference_path, preset, contigs)
    header = pysam.AlignmentHeader.from_dict(
        {
            "HD": {"VN": "1.6", "SO": "unsorted"},
            "SQ": [{"SN": name, "LN": length} for name, length in contigs],
            "PG": [{"ID": "minimap2", "PN": "minimap2", "VN": f"mappy {mappy.__version__}", "CL": f"{TOOL} --preset {preset}"}],
        }
    )

    prepare_output_dir(output_dir)
    final_bam = output_dir / BAM_NAME
    final_index = output_dir / f"{BAM_NAME}.bai"
    # Everything is written under temporary names and renamed only once complete, so a failed
    # or killed run never leaves a BAM that looks finished; align.json goes last as the marker.
    unsorted_bam = temp_path_beside(final_bam)
    sorted_bam = temp_path_beside(final_bam)
    temp_index = temp_path_beside(final_index)
    try:
        try:
            counts = align_reads_to_bam(aligner, reads_path, header, unsorted_bam)
        except dnaio.FileFormatError as error:
            raise ToolError(describe_format_error("reads file", reads_path, error)) from error
        except DECOMPRESSION_ERRORS as error:
            raise ToolError(f"reads file '{reads_path}' could not be read: {error}") from error
        if counts.reads == 0:
            raise ToolError(f"reads file '{reads_path}' contains no reads")
        sort_and_index(unsorted_bam, sorted_bam, temp_index, threads=SORT_THREADS)
        os.replace(sorted_bam, final_bam)
        os.replace(temp_index, final_index)
    finally:
        for leftover in (unsorted_bam, sorted_bam, temp_index):
            leftover.unlink(missing_ok=True)

    result = {
        "reads": counts.reads,
        "mapped": counts.mapped,
        "reference": reference_path.name,
        "reads_file": reads_path.name,
        "preset": preset,
        "bam": BAM_NAME,
    }
    write_json_atomically(output_dir / "align.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=TOOL, description="Align reads to a reference with minimap2.")
    parser.add_argument("reads", type=Path, help="FASTQ reads, plain or gzip-compressed")
    parser.add_argument("--reference", type=Path, required=True, help="reference FASTA (plain or gzip)")
    parser.add_argument("--preset", default="sr", choices=PRESETS, help="minimap2 preset (default: sr)")
    parser.add_argument("--output-dir", type=Path, required=True, help="directory for the BAM and align.json")
    args = parser.parse_args(argv)
    try:
        run(args.reference, args.reads, args.output_dir, args.preset)
    except ToolError as error:
        fail(TOOL, str(error))


if __name__ == "__main__":
    main()
