"""The `labbatch` command. Sub-commands are added by the client and local mode."""
import sys


def main(argv: list[str] | None = None) -> int:
    print("labbatch: no sub-commands yet", file=sys.stderr)
    return 2
