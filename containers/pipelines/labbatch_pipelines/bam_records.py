"""Turning one read and its minimap2 hit into a BAM record."""

from __future__ import annotations

import dnaio
import mappy
import pysam

FLAG_UNMAPPED = 0x4
FLAG_REVERSE = 0x10


def _qualities(read: dnaio.SequenceRecord):
    return pysam.qualitystring_to_array(read.qualities)


def unmapped_record(read: dnaio.SequenceRecord, header: pysam.AlignmentHeader) -> pysam.AlignedSegment:
    record = pysam.AlignedSegment(header)
    record.query_name = read.id
    record.flag = FLAG_UNMAPPED
    record.reference_id = -1
    record.reference_start = -1
    record.mapping_quality = 0
    record.query_sequence = read.sequence
    record.query_qualities = _qualities(read)
    return record


def aligned_record(
    read: dnaio.SequenceRecord, hit: mappy.Alignment, reference_id: int, header: pysam.AlignmentHeader
) -> pysam.AlignedSegment:
    read_length = len(read.sequence)
    # BAM stores the read as it lies on the forward reference strand, and the CIGAR runs
    # left to right along the reference; mappy's q_st/q_en are on the read as sequenced.
    if hit.strand == -1:
        sequence = mappy.revcomp(read.sequence)
        qualities = _qualities(read)[::-1]
        left_clip, right_clip = read_length - hit.q_en, hit.q_st
    else:
        sequence = read.sequence
        qualities = _qualities(read)
        left_clip, right_clip = hit.q_st, read_length - hit.q_en
    cigar = (f"{left_clip}S" if left_clip else "") + hit.cigar_str + (f"{right_clip}S" if right_clip else "")

    record = pysam.AlignedSegment(header)
    record.query_name = read.id
    record.flag = FLAG_REVERSE if hit.strand == -1 else 0
    record.reference_id = reference_id
    record.reference_start = hit.r_st
    record.mapping_quality = hit.mapq
    record.cigarstring = cigar
    record.query_sequence = sequence
    record.query_qualities = qualities
    record.set_tag("NM", hit.NM, value_type="i")
    return record
