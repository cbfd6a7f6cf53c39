"""Reference data as tools use it: folders, and the companion files that travel with a file.

Shared by the lab config (which validates a pipeline's `secondary_files`), the API (which sizes
folders and refuses a missing companion at submission) and the runner (which stages both), so
that all three read a pattern and a folder URI the same way.

Companion patterns are CWL's `secondaryFiles` notation, which bioinformaticians already write:
a suffix is appended to the file's name (`.bai`: `x.bam` -> `x.bam.bai`); each leading `^`
first removes one extension (`^.bai`: `x.bam` -> `x.bai`); a trailing `?` marks the companion
optional (staged when it exists, never refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Keys of a pipeline's `secondary_files`: which values the patterns apply to. `inputs` and
# `shared_inputs` mean every one of them; `param:NAME` the parameter NAME (as in {param:NAME}).
INPUTS_KEY = "inputs"
SHARED_INPUTS_KEY = "shared_inputs"
PARAMETER_KEY_PREFIX = "param:"
MAX_PATTERNS = 16
_PATTERN_BODY = re.compile(r"^[A-Za-z0-9._+-]{1,64}\Z")


class PatternError(ValueError):
    """A pattern that is not CWL secondaryFiles notation; the message says what is allowed."""


@dataclass(frozen=True)
class CompanionPattern:
    text: str  # as written
    strip_extensions: int  # the number of leading ^
    suffix: str
    required: bool

    def companion_name(self, name: str) -> str:
        """The companion's file name for a file called `name` (a base name, no folder)."""
        base = name
        for _ in range(self.strip_extensions):
            stem, dot, _extension = base.rpartition(".")
            if dot and stem:  # CWL: a name without an extension loses nothing
                base = stem
        return base + self.suffix


def parse_pattern(text: str) -> CompanionPattern:
    if not isinstance(text, str) or not text:
        raise PatternError(f"{text!r} is not a companion pattern (allowed: a suffix such as .bai, ^.bai, .fai?)")
    body = text[:-1] if text.endswith("?") else text
    carets = len(body) - len(body.lstrip("^"))
    suffix = body[carets:]
    if not _PATTERN_BODY.match(suffix) or carets > 3:
        raise PatternError(
            f"{text!r} is not a companion pattern (allowed: up to three ^ to drop extensions, then a suffix of "
            "letters, digits and . _ + -, then ? when optional: .bai, ^.bai, .fai?; a companion lies beside "
            "its file, so no '/')")
    return CompanionPattern(text, carets, suffix, required=not text.endswith("?"))


def companion_key(key: str, pattern: CompanionPattern) -> str:
    """The S3 key of a companion: beside `key`, in the same folder."""
    folder, slash, name = key.rpartition("/")
    return folder + slash + pattern.companion_name(name)


def parameter_key(name: str) -> str:
    return PARAMETER_KEY_PREFIX + name


def stageable_key(key: str) -> bool:
    """Whether a key (or a key relative to a folder) can become a path below the job's inputs
    directory as it is: no empty, `.` or `..` segment, which would merge two keys or climb out."""
    return not any(segment in ("", ".", "..") for segment in key.split("/"))


def is_folder_uri(uri: str) -> bool:
    """`s3://bucket/prefix/`: a folder, whose objects are staged into one directory."""
    return uri.startswith("s3://") and uri.endswith("/") and uri.count("/") >= 4


# Where a job's reference data is kept on an instance's scratch volume, below the job's scratch
# directory (LABBATCH_SCRATCH_DIR): shared by every job that lands on the instance.
CACHE_DIR_NAME = "labbatch-cache"
