"""Pretrained word vectors in the GloVe/word2vec text format (`word v1 ... vd`).

Files may be plain, gzipped or zipped. Real GloVe files hold a few rows with
bytes that are not UTF-8; those words are decoded with replacement rather
than failing the whole load. Parsed vectors are cached as a tensor file, so
the second load skips parsing.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from seqtrain.data.download import cache_dir, cached_tensors, download, source_key
from seqtrain.data.text import Vocab
from seqtrain.errors import SeqtrainError

GLOVE_URL = "https://nlp.stanford.edu/data/glove.6B.zip"
_GLOVE_NAME = re.compile(r"^glove\.6B\.(50|100|200|300)d$")


@dataclass
class WordVectors:
    words: list[str]
    vectors: torch.Tensor  # [n, dim]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}


def resolve_vectors(spec: str, cache: str | None = None, mirror: str | None = None) -> WordVectors:
    """Load vectors from a path, or download a named GloVe set (e.g. glove.6B.100d) into the cache."""
    if _GLOVE_NAME.match(spec) and not Path(spec).exists():
        # Stanford publishes no checksum for this zip; its members' CRCs are checked on read.
        archive = download(GLOVE_URL, None, cache, mirror)
        return load_vectors(archive, member=f"{spec}.txt", cache=cache)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SeqtrainError(f"embeddings file not found: {spec} (give a GloVe/word2vec text file or glove.6B.<dim>d)")
    return load_vectors(path, cache=cache)


def vector_dim(spec: str) -> int:
    """The size of a vector set, read from its name (glove.6B.<d>d) or its first row: cheap, before any data loads."""
    named = _GLOVE_NAME.match(spec)
    if named and not Path(spec).exists():
        return int(named.group(1))
    path = Path(spec).expanduser()
    if not path.exists():
        raise SeqtrainError(f"embeddings file not found: {spec} (give a GloVe/word2vec text file or glove.6B.<dim>d)")
    for number, line in enumerate(_lines(path, None), start=1):
        parts = line.rstrip(b"\r\n").split(b" ")
        if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            return int(parts[1])  # word2vec header: "<count> <dim>"
        if len(parts) >= 2:
            return len(parts) - 1
    raise SeqtrainError(f"{path} holds no word vectors")


def load_vectors(path: Path, member: str | None = None, cache: str | None = None) -> WordVectors:
    """Parse a vector file once, then serve it from the cache."""
    cached = cache_dir(cache) / "vectors" / f"{path.name}-{member or ''}-{source_key(path, member)}.pt"

    def parse() -> dict:
        vectors = _parse(path, member)
        return {"words": vectors.words, "vectors": vectors.vectors}

    blob = cached_tensors(cached, parse)
    return WordVectors(blob["words"], blob["vectors"])


def _parse(path: Path, member: str | None) -> WordVectors:
    words: list[str] = []
    rows: list[list[float]] = []
    dim = None
    for number, line in enumerate(_lines(path, member), start=1):
        parts = line.rstrip(b"\r\n").split(b" ")
        if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue  # word2vec header: "<count> <dim>"
        if len(parts) < 2 or parts == [b""]:
            continue
        word, values = parts[0].decode("utf-8", errors="replace"), parts[1:]
        if dim is None:
            dim = len(values)
        if len(values) != dim:
            raise SeqtrainError(f"{path}: line {number} has {len(values)} values, expected {dim}")
        try:
            rows.append([float(v) for v in values])
        except ValueError as exc:
            raise SeqtrainError(f"{path}: line {number} is not 'word v1 ... vd': {exc}") from exc
        words.append(word)
    if not rows:
        raise SeqtrainError(f"{path} holds no word vectors")
    return WordVectors(words, torch.tensor(rows, dtype=torch.float32))


def _lines(path: Path, member: str | None) -> Iterator[bytes]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".txt")]
            name = member or (names[0] if len(names) == 1 else None)
            if name not in zf.namelist():
                raise SeqtrainError(f"{path}: choose one member of {', '.join(names)}")
            with zf.open(name) as handle:
                yield from io.BufferedReader(handle)
    elif path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            yield from handle
    else:
        with open(path, "rb") as handle:
            yield from handle


def embedding_matrix(vectors: WordVectors, vocab: Vocab, seed: int = 0) -> tuple[torch.Tensor, float]:
    """A [len(vocab), dim] matrix: pretrained rows where known (case-insensitive fallback), small
    random rows elsewhere, zeros for padding; and the fraction of the vocabulary covered."""
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(len(vocab), vectors.dim, generator=generator) * vectors.vectors.std().item()
    lookup = vectors.index()
    lowered: dict[str, int] = {}
    for word, row in lookup.items():
        lowered.setdefault(word.lower(), row)
    found = 0
    for index, token in enumerate(vocab.itos):
        row = lookup.get(token)
        if row is None:
            row = lowered.get(token.lower())
        if row is not None:
            matrix[index] = vectors.vectors[row]
            found += 1
    matrix[0] = 0.0  # padding
    real = max(len(vocab) - len(vocab.specials), 1)
    return matrix, found / real
