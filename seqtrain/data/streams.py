"""Token streams for language models: reading text, contiguous splits, columns and BPTT chunks.

A corpus is one long stream of token ids. For training it is laid out as
`batch_size` parallel columns (rows of a [B, N] tensor here, batch first), and
each step reads the next `bptt` positions of every column, so the recurrent
state at the end of one chunk is exactly the state the next chunk starts from
(the pytorch/examples word_language_model idiom). Memory per step depends on
`batch_size * bptt`, never on the length of the text.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch

from seqtrain.errors import SeqtrainError

T = TypeVar("T")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (optionally .gz), or every .txt(.gz) file of a folder joined in name order.

    Refuses empty, binary and undecodable input with one line that names the file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".txt", ".txt.gz")))
        if not files:
            raise SeqtrainError(f"--text {path}: the folder holds no .txt files")
        return "\n".join(read_text(f) for f in files)
    if not path.is_file():
        raise SeqtrainError(f"--text {path} does not exist; pass a UTF-8 text file or a folder of .txt files")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise SeqtrainError(f"{path}: not a valid gzip file ({exc})") from exc
    if b"\x00" in raw:
        raise SeqtrainError(f"{path} looks binary (it holds NUL bytes); pass a UTF-8 text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeqtrainError(f"{path} is not valid UTF-8 (byte {exc.start}); re-encode it as UTF-8") from exc
    if not text.strip():
        raise SeqtrainError(f"{path} is empty; a language model needs some text")
    return text


def text_lines(text: str) -> list[str]:
    """`text` split at line feeds only (a CRLF's carriage return dropped), as files are read everywhere in seqtrain:
    `str.splitlines` would also break at form feeds, U+2028 and the like, which are characters inside a line."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def split_stream(items: Sequence[T], fraction: float = 0.05) -> tuple[Sequence[T], Sequence[T], Sequence[T]]:
    """Contiguous train / validation / test slices, the last two `fraction` of the stream each; never shuffled."""
    held = int(len(items) * fraction)
    cut = len(items) - 2 * held
    return items[:cut], items[cut : cut + held], items[cut + held :]


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """[B, N]: the stream cut into `batch_size` contiguous columns; the tail that does not fill a column is dropped."""
    columns = len(ids) // batch_size
    if columns < 2:
        raise SeqtrainError(
            f"the text ({len(ids)} tokens) is too short for --batch-size {batch_size}; "
            "use a smaller batch size or more text"
        )
    return ids[: columns * batch_size].view(batch_size, columns)


class StreamLoader:
    """Re-iterable (inputs, targets) chunks of `bptt` steps over batchified columns; targets are inputs shifted by one.

    Over one pass every position but the first of each column is a target
    exactly once, in order, so state carried between chunks is the true
    history of each column.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, bptt: int):
        if bptt < 1:
            raise SeqtrainError("--bptt must be at least 1")
        self.data = batchify(ids.long(), batch_size)
        self.bptt = bptt

    def __len__(self) -> int:
        return -(-(self.data.shape[1] - 1) // self.bptt)

    def set_epoch(self, epoch: int) -> None:
        """Every pass reads the stream in order: truncated BPTT needs each column's true history."""

    @property
    def tokens(self) -> int:
        """Targets per pass."""
        return self.data.shape[0] * (self.data.shape[1] - 1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        width = self.data.shape[1]
        for start in range(0, width - 1, self.bptt):
            end = min(start + self.bptt, width - 1)
            yield self.data[:, start:end], self.data[:, start + 1 : end + 1]
