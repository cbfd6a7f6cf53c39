"""`s3://bucket/key` URIs as the contract spells them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, text: str) -> "S3Uri":
        """Raises ValueError naming what is wrong; callers add which field it came from."""
        if not isinstance(text, str) or not text.startswith("s3://"):
            raise ValueError(f"{text!r} is not an s3:// URI")
        bucket, _, key = text[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"{text!r} has no bucket")
        return cls(bucket, key)

    def join(self, relative: str) -> "S3Uri":
        return S3Uri(self.bucket, self.key + relative)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
