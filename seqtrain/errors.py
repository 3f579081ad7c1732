"""User-facing errors: the CLI prints these as one line, without a traceback."""


class SeqtrainError(Exception):
    """A mistake the user can fix (bad flag, missing file, bad checksum)."""
