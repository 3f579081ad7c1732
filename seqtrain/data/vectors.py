"""Pretrained word vectors: GloVe/word2vec text files, word2vec binary files, and the embedding layer of a
seqtrain run (a word2vec run's word vectors, or a classifier's or language model's embedding layer).

Text files may be plain, gzipped or zipped. Real GloVe files hold a few rows with bytes that are not
UTF-8; those words are decoded with replacement rather than failing the whole load. Text is parsed
in blocks of lines by numpy's C parser, and the parsed vectors are cached as one tensor file (the
words as one UTF-8 buffer), so a second load is a file read (scripts/bench_vectors.py: about 2x
faster cold than a line-by-line parse with a fifth of its memory, 0.26 s warm for 400,000 x 100).
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqtrain.data.download import cache_dir, cached_tensors, download, source_key
from seqtrain.data.text import PAD, UNK, Vocab
from seqtrain.errors import SeqtrainError
from seqtrain.files import atomic_write

GLOVE_URL = "https://nlp.stanford.edu/data/glove.6B.zip"
_GLOVE_NAME = re.compile(r"^glove\.6B\.(50|100|200|300)d$")
_HEADER = re.compile(rb"^\s*(\d+) (\d+)\s*$")  # word2vec's first line: "<count> <dim>"
_NUMBER_BYTES = frozenset(b"0123456789.-+eE \r\n")
#: state-dict entries that hold a run's word vectors (word2vec's input vectors, a model's embedding layer)
EMBEDDING_KEYS = ("in_vectors.weight", "embedding.weight")
#: lines parsed per numpy call: large enough to amortise the call, small enough to bound the text held
BLOCK_LINES = 20000
#: bump when the cache layout changes
CACHE_VERSION = 2
WHAT = "a GloVe/word2vec text or binary file, a seqtrain run, or glove.6B.<dim>d"


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
    """Vectors from a file, a seqtrain run (folder or checkpoint), or a named GloVe set downloaded into the cache."""
    if _GLOVE_NAME.match(spec) and not Path(spec).exists():
        # Stanford publishes no checksum for this zip; its members' CRCs are checked on read.
        archive = download(GLOVE_URL, None, cache, mirror)
        return load_vectors(archive, member=f"{spec}.txt", cache=cache)
    path = _existing(spec)
    if _is_run(path):
        return run_vectors(path)
    return load_vectors(path, cache=cache)


def vector_dim(spec: str) -> int:
    """The size of a vector set, read from its name (glove.6B.<d>d), header or first row: cheap, before any data loads."""
    named = _GLOVE_NAME.match(spec)
    if named and not Path(spec).exists():
        return int(named.group(1))
    path = _existing(spec)
    if _is_run(path):
        return run_vectors(path).dim
    for number, line in enumerate(_lines(path, None), start=1):
        header = _HEADER.match(line) if number == 1 else None
        if header:
            return int(header.group(2))
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) >= 2:
            return len(parts) - 1
    raise SeqtrainError(f"{path} holds no word vectors")


def _existing(spec: str) -> Path:
    path = Path(spec).expanduser()
    if not path.exists():
        raise SeqtrainError(f"embeddings file not found: {spec} (give {WHAT})")
    return path


def _is_run(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".pt"


def run_vectors(path: Path) -> WordVectors:
    """The word vectors a seqtrain run holds: its vocabulary and its embedding rows (padding and unknown left out)."""
    from seqtrain.training.checkpoint import load_checkpoint
    from seqtrain.training.runs import resolve_checkpoint

    checkpoint = resolve_checkpoint(str(path))
    blob = load_checkpoint(checkpoint)
    vocab, state = blob.get("meta", {}).get("vocab"), blob.get("model", {})
    weight = next((state[key] for key in EMBEDDING_KEYS if key in state), None)
    if vocab is None or weight is None or len(vocab) != len(weight):
        raise SeqtrainError(f"{checkpoint} holds no word embeddings (a word2vec, text-classifier or word-LM run has them)")
    keep = [i for i, word in enumerate(vocab) if word not in (PAD, UNK)]
    return WordVectors([vocab[i] for i in keep], weight[keep].float())


def load_vectors(path: Path, member: str | None = None, cache: str | None = None) -> WordVectors:
    """Parse a vector file once, then serve it from the cache."""
    key = source_key(path, member, CACHE_VERSION)
    cached = cache_dir(cache) / "vectors" / f"{path.name}-{member or ''}-{key}.pt"

    def parse() -> dict:
        vectors = _parse_binary(path) if _is_binary(path) else _parse(path, member)
        packed = "\n".join(vectors.words).encode("utf-8")
        return {"words": torch.frombuffer(bytearray(packed), dtype=torch.uint8), "vectors": vectors.vectors}

    blob = cached_tensors(cached, parse)
    words = bytes(blob["words"].numpy()).decode("utf-8").split("\n")
    return WordVectors(words, blob["vectors"])


def _parse(path: Path, member: str | None) -> WordVectors:
    """Text rows 'word v1 ... vd' in blocks: Python splits off the words, numpy parses the numbers."""
    words: list[str] = []
    blocks: list[np.ndarray] = []
    rows: list[bytes] = []
    numbers: list[int] = []  # the line number of each row, for error messages
    for number, line in enumerate(_lines(path, member), start=1):
        word, _, rest = line.rstrip(b"\r\n").partition(b" ")
        rest = rest.strip(b" ")
        if not rest or (number == 1 and _HEADER.match(line)):
            continue  # blank lines, word2vec's header
        words.append(word.decode("utf-8", errors="replace"))
        rows.append(rest)
        numbers.append(number)
        if len(rows) >= BLOCK_LINES:
            blocks.append(_parse_block(path, rows, numbers, blocks[0].shape[1] if blocks else None))
            rows, numbers = [], []
    if rows:
        blocks.append(_parse_block(path, rows, numbers, blocks[0].shape[1] if blocks else None))
    if not blocks:
        raise SeqtrainError(f"{path} holds no word vectors")
    return WordVectors(words, torch.from_numpy(np.concatenate(blocks) if len(blocks) > 1 else blocks[0]))


def _parse_block(path: Path, rows: list[bytes], numbers: list[int], dim: int | None) -> np.ndarray:
    """One block of value rows as a [rows, dim] array; a ragged or non-numeric row is one line naming it."""
    try:
        matrix = np.loadtxt(rows, dtype=np.float32, delimiter=" ", comments=None, ndmin=2, encoding=None)
        if dim is None or matrix.shape[1] == dim:
            return matrix
    except ValueError:
        pass
    expected = dim or len(rows[0].split(b" "))
    for number, row in zip(numbers, rows):
        values = row.split(b" ")
        if len(values) != expected:
            raise SeqtrainError(f"{path}: line {number} has {len(values)} values, expected {expected}")
        try:
            [float(v) for v in values]
        except ValueError as exc:
            raise SeqtrainError(f"{path}: line {number} is not 'word v1 ... vd': {exc}") from None
    raise SeqtrainError(f"{path}: lines {numbers[0]}-{numbers[-1]} cannot be read as vectors")


def _is_binary(path: Path) -> bool:
    """A word2vec binary file: a '<count> <dim>' header, then rows whose values are raw float32 bytes."""
    if zipfile.is_zipfile(path) or path.suffix == ".gz":
        return False
    with open(path, "rb") as handle:
        header = handle.readline(256)
        if not _HEADER.match(header):
            return False
        row = handle.read(4096)
    space = row.find(b" ")
    values = row[space + 1 :].split(b"\n")[0][:64]  # a text row: digits up to its line break
    return space >= 0 and (not values or any(byte not in _NUMBER_BYTES for byte in values))


def _parse_binary(path: Path) -> WordVectors:
    """word2vec's binary format: '<count> <dim>\\n', then per word 'word ' and dim little-endian float32s."""
    data = path.read_bytes()
    end = data.index(b"\n") + 1
    count, dim = (int(x) for x in data[:end].split())
    matrix = np.empty((count, dim), dtype=np.float32)
    words: list[str] = []
    size = 4 * dim
    position = end
    for row in range(count):
        space = data.find(b" ", position)
        if space < 0 or space + 1 + size > len(data):
            raise SeqtrainError(f"{path} ends after {row} of its {count} vectors: the file is cut short")
        words.append(data[position:space].lstrip(b"\n").decode("utf-8", errors="replace"))
        matrix[row] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        position = space + 1 + size
    return WordVectors(words, torch.from_numpy(matrix))


def save_vectors(vectors: WordVectors, path: Path, binary: bool = False) -> None:
    """Write word2vec's text ('<count> <dim>' then 'word v1 ... vd' rows) or binary format, atomically."""
    matrix = vectors.vectors.detach().float().cpu().numpy()
    with atomic_write(path) as temporary, open(temporary, "wb") as handle:
        handle.write(f"{len(vectors.words)} {matrix.shape[1]}\n".encode())
        if binary:
            little = matrix.astype("<f4")
            for word, row in zip(vectors.words, little):
                handle.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            buffer = io.StringIO()
            for start in range(0, len(matrix), BLOCK_LINES):
                block = matrix[start : start + BLOCK_LINES]
                np.savetxt(buffer, block, fmt="%.6g", delimiter=" ")
                values = buffer.getvalue().splitlines()
                buffer.seek(0)
                buffer.truncate()
                handle.write("".join(f"{w} {v}\n" for w, v in zip(vectors.words[start:], values)).encode("utf-8"))


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


def embedding_matrix(vectors: WordVectors, vocab: Vocab, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A [len(vocab), dim] matrix: pretrained rows where known (case-insensitive fallback), small
    random rows elsewhere, zeros for padding; and which vocabulary rows were found (a bool mask)."""
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(len(vocab), vectors.dim, generator=generator) * vectors.vectors.std().item()
    lookup = vectors.index()
    lowered: dict[str, int] = {}
    for word, row in lookup.items():
        lowered.setdefault(word.lower(), row)
    found = torch.zeros(len(vocab), dtype=torch.bool)
    for index, token in enumerate(vocab.itos):
        row = lookup.get(token)
        if row is None:
            row = lowered.get(token.lower())
        if row is not None and token not in vocab.specials:
            matrix[index] = vectors.vectors[row]
            found[index] = True
    matrix[0] = 0.0  # padding
    return matrix, found
