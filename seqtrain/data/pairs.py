"""Source/target sentence pairs: reading them, tokenizing them, and batching them.

Pair files are tab-separated, `source<TAB>target[<TAB>anything]` per line, as
plain text, gzip, or a zip holding one such file (manythings.org's
`fra-eng.zip` holds `fra.txt` and `_about.txt`). Extra columns (newer
releases add an attribution) are ignored.
"""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import torch

from seqtrain.data.batching import epoch_batches, pad_batch
from seqtrain.data.text import PAD, UNK, Vocab, tokenize
from seqtrain.errors import SeqtrainError

BOS, EOS = "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)


def _open_text(path: Path) -> io.TextIOBase:
    """A text stream over a .txt/.tsv, .gz, or a .zip holding one pair file."""
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if n.endswith((".txt", ".tsv")) and not Path(n).name.startswith("_")]
        if len(members) != 1:
            raise SeqtrainError(f"{path} should hold one pair file (.txt/.tsv besides _about.txt), found {members or 'none'}")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", errors="replace")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def clean(text: str) -> str:
    """Collapse whitespace runs (tabs, the narrow no-break spaces French punctuation uses) to one space."""
    return " ".join(text.split())


def read_pairs(path: str | Path, limit: int = 0) -> list[tuple[str, str]]:
    """(source, target) pairs in file order; the first `limit` only when it is positive."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SeqtrainError(f"--data {path} does not exist")
    pairs: list[tuple[str, str]] = []
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                columns = line.rstrip("\r\n").split("\t")
                if len(columns) < 2 or not columns[0].strip() or not columns[1].strip():
                    raise SeqtrainError(
                        f"{path} line {number} is not 'source<TAB>target': {line.strip()[:60]!r}; "
                        "pair files need one tab-separated pair per line"
                    )
                pairs.append((clean(columns[0]), clean(columns[1])))
                if limit and len(pairs) >= limit:
                    break
    except (OSError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile) as exc:
        raise SeqtrainError(f"cannot read pairs from {path}: {exc}") from exc
    if not pairs:
        raise SeqtrainError(f"{path} holds no 'source<TAB>target' lines")
    return pairs


def split_tokens(text: str, level: str) -> list[str]:
    """Characters, or lower-cased words and punctuation (the project's word tokenizer)."""
    return list(text) if level == "char" else tokenize(text)


def join_tokens(tokens: Sequence[str], level: str) -> str:
    return "".join(tokens) if level == "char" else " ".join(tokens)


def build_vocab(texts: Sequence[str], level: str, max_size: int, min_freq: int) -> Vocab:
    """<pad>, <unk>, <bos>, <eos>, then tokens by frequency."""
    return Vocab.build((split_tokens(t, level) for t in texts), max_size or None, min_freq, SPECIALS)


def encode(text: str, vocab: Vocab, level: str, eos: bool = False) -> torch.Tensor:
    ids = vocab.encode(split_tokens(text, level))
    return torch.tensor(ids + ([vocab.stoi[EOS]] if eos else []), dtype=torch.long)


# ----------------------------------------------------------------- batching
@dataclass
class PairBatch:
    """Padded source ids [B, S] with lengths, and target ids [B, T] ending in <eos>, with lengths.

    The decoder reads `<bos> + target[:-1]` and predicts `target`; padding is 0.
    `references` are each example's raw target texts (every translation of its
    source in the split), for BLEU: free of <unk>. `sizes` are the target
    lengths again, kept on the host (a list per row, so a batch split in parts
    splits them too), so a step on a GPU counts its tokens without reading the device.
    """

    source: torch.Tensor
    source_lengths: torch.Tensor
    target: torch.Tensor
    target_lengths: torch.Tensor
    references: list[list[str]]
    sizes: list[int] | None = None

    def __post_init__(self) -> None:
        if self.sizes is None:
            self.sizes = self.target_lengths.tolist()

    @property
    def tokens(self) -> int:
        """Target tokens (padding excluded) of the batch."""
        return sum(self.sizes)

    def to(self, device: torch.device) -> PairBatch:
        tensors = (self.source, self.source_lengths, self.target, self.target_lengths)
        return PairBatch(*(t.to(device) for t in tensors), self.references, self.sizes)

    def __len__(self) -> int:
        return self.source.shape[0]


class PairLoader:
    """Re-iterable, length-bucketed batches of (source, target) id sequences; reshuffled per epoch, seeded."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        sources: Sequence[torch.Tensor],
        targets: Sequence[torch.Tensor],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
    ):
        self.pairs, self.sources, self.targets = pairs, sources, targets
        translations: dict[str, list[str]] = {}
        for source, target in pairs:
            translations.setdefault(source, []).append(target)
        self.references = [translations[source] for source, _ in pairs]
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.lengths = [len(s) + len(t) for s, t in zip(sources, targets)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.sources) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[PairBatch]:
        for indices in epoch_batches(self.lengths, self.batch_size, self.shuffle, self.seed, self.epoch):
            source, source_lengths = pad_batch([self.sources[i] for i in indices])
            target, target_lengths = pad_batch([self.targets[i] for i in indices])
            yield PairBatch(source, source_lengths, target, target_lengths, [self.references[i] for i in indices])


# -------------------------------------------------------------- dates task
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def human_date(day: date, rng: random.Random) -> str:
    """One of several ways people write a date (day before month where it is numeric)."""
    month, short = MONTHS[day.month - 1], MONTHS[day.month - 1][:3]
    weekday = WEEKDAYS[day.weekday()]
    formats = [
        f"{day.day} {month} {day.year}",
        f"{day.day} {short} {day.year}",
        f"{day.day:02d} {short} {day.year}",
        f"{month} {day.day}, {day.year}",
        f"{short} {day.day} {day.year}",
        f"{weekday}, {month} {day.day}, {day.year}",
        f"{weekday[:3]} {day.day} {short} {day.year}",
        f"{day.day:02d}.{day.month:02d}.{day.year}",
        f"{day.day}/{day.month}/{day.year}",
        f"{day.year}/{day.month}/{day.day}",
    ]
    text = rng.choice(formats)
    return text.upper() if rng.random() < 0.1 else text.capitalize() if rng.random() < 0.3 else text


def date_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (human-written date, ISO 8601) pairs between 1950 and 2049, reproducible from `seed`."""
    rng = random.Random(seed)
    first, span = date(1950, 1, 1), (date(2049, 12, 31) - date(1950, 1, 1)).days
    pairs = []
    for _ in range(count):
        day = first + timedelta(days=rng.randrange(span + 1))
        pairs.append((human_date(day, rng), day.isoformat()))
    return pairs
