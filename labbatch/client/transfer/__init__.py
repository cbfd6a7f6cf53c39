"""`labbatch upload`, `labbatch results`, and the uploads `labbatch submit` makes of local paths.

Uploads go through boto3's transfer manager (parallel across files, multipart above
MULTIPART_BYTES) with `ChecksumAlgorithm=SHA256`: S3 checks every request's SHA-256 as it
arrives, and afterwards the object's checksum, as S3 reports it (HEAD, `ChecksumMode=ENABLED`),
is compared with the one computed here from the local file: the SHA-256 of the whole file for a
single-part upload, or S3's composite for a multipart one (the SHA-256 of the parts' SHA-256
digests, `-N` parts), computed over the same part boundaries the transfer manager uses.

Results are checked against the runner's `manifest.json`: every output's size and sha256
(containers/runner/README.md). A download goes to `<file>.labbatch-part` first and becomes the
file only once verified; a file that fails twice is removed and named in the error, never kept.
"""

from __future__ import annotations

from typing import Any


MiB = 1024 * 1024
MULTIPART_BYTES = 8 * MiB
PART_BYTES = 8 * MiB
MAX_CONCURRENCY = 10
READ_BYTES = 1 * MiB
# Where `labbatch submit` puts local files: content-addressed, so a second submit of the same
# file reuses the object, and two people's `reads.fq.gz` never overwrite each other.
SUBMIT_UPLOADS_PREFIX = "uploads/"
# The storage stack expires work/; nothing a scientist uploads should go there.
RESERVED_PREFIXES = ("work/",)
PART_SUFFIX = ".labbatch-part"


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=PART_BYTES,
                          max_concurrency=MAX_CONCURRENCY, use_threads=True)
