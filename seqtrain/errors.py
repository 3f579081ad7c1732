"""User-facing errors: the CLI prints these as one line, without a traceback."""


class SeqtrainError(Exception):
    """A mistake the user can fix (bad flag, missing file, bad checksum)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when empty), to quote inside a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
