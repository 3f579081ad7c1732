"""Pretrained word vectors: GloVe/word2vec text files, word2vec binary files, and the embedding layer of a
seqtrain run (a word2vec run's word vectors, or a classifier's or language model's embedding layer).

Text files may be plain, gzipped or zipped. Real GloVe files hold a few rows with bytes that are not
UTF-8; those words are decoded with replacement rather than failing the whole load. Text is parsed
in chunks of lines by numpy's C parser, one worker process per core, and the parsed vectors are
cached as one tensor file (the words as one UTF-8 buffer), so a second load is a file read
(scripts/bench_vectors.py measures both against parsing in one process).

Nothing in a file is trusted before it is checked: a word2vec header must agree with the rows (text)
or the file's size (binary, before anything is allocated), and a value that is not finite is refused
naming its word and line, in both formats alike.
"""

from __future__ import annotations

import gzip
import io
import multiprocessing
import os
import re
import sys
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import BinaryIO

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
#: lines written per numpy call when saving
BLOCK_LINES = 20000
#: bytes of text parsed per numpy call (in one worker): large enough to amortise the call and the
#: transfer between processes, small enough to bound the text held in flight
CHUNK_BYTES = 8 << 20
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
    return _binary_header(path)[1] if _is_binary(path) else _text_header(path, None)[1]


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

    parsed: list[WordVectors] = []

    def parse() -> dict:
        parsed.append(_parse_binary(path) if _is_binary(path) else _parse(path, member))
        packed = "\n".join(parsed[0].words).encode("utf-8")
        return {"words": torch.frombuffer(bytearray(packed), dtype=torch.uint8), "vectors": parsed[0].vectors}

    blob = cached_tensors(cached, parse)
    if parsed:  # parsed just now: its words are at hand (a second list of 400,000 strings would cost memory)
        return parsed[0]
    words = bytes(blob["words"].numpy()).decode("utf-8").split("\n")
    return WordVectors(words, blob["vectors"])


def _parse(path: Path, member: str | None, workers: int | None = None) -> WordVectors:
    """Text rows 'word v1 ... vd', read in line-aligned chunks that are parsed in worker processes
    (numpy's parser holds the GIL, so threads would not run it in parallel) and copied, in file order,
    into one matrix: the parent holds the matrix and a few chunks, never a second copy of either."""
    count, dim = _text_header(path, member)
    # A plain file's rows fit in size / (2 dim) (a value and a separator take 2 bytes at least): reserved
    # at once, as untouched pages that take no memory until written. A stream's matrix grows as it fills.
    matrix = np.empty((path.stat().st_size // (2 * dim) + 1 if _is_plain(path) else 1 << 14, dim), dtype=np.float32)
    words: list[str] = []
    rows = lines = 0  # rows filled, lines of the chunks before the current one
    with ExitStack() as stack:
        for chunk in _parsed_chunks(stack, path, member, dim, workers or parse_workers()):
            if chunk.problem is not None:
                number, what = chunk.problem
                raise SeqtrainError(f"{path}: line {lines + number} {what}")
            if rows + len(chunk.words) > len(matrix):  # realloc moves pages, copies no rows; new ones are zeroed
                matrix.resize((max(rows + len(chunk.words), len(matrix) * 5 // 4), dim), refcheck=False)
            matrix[rows : rows + len(chunk.words)] = chunk.matrix
            words += chunk.words
            rows += len(chunk.words)
            lines += chunk.lines
    if not rows:
        raise SeqtrainError(f"{path} holds no word vectors")
    if count is not None and count != rows:
        raise SeqtrainError(f"{path}: its header says {count:,} vectors but it holds {rows:,}; correct the first line "
                            "(or remove it: a file without a header is read too)")
    matrix.resize((rows, dim), refcheck=False)  # the unused end is given back
    return WordVectors(words, torch.from_numpy(matrix))


def parse_workers() -> int:
    """Processes for parsing a large text file: one per usable core, where processes can be forked
    (a fork starts at once; a spawned worker would spend a second importing torch)."""
    if not sys.platform.startswith("linux"):
        return 1
    return len(os.sched_getaffinity(0))


@dataclass
class _Chunk:
    """One parsed chunk of lines: its words and [rows, dim] values, or the first problem in it."""

    words: list[str]
    matrix: np.ndarray | None
    lines: int  # lines the chunk holds, to number the lines of the chunks after it
    problem: tuple[int, str] | None = None  # (line within the chunk, what is wrong with it)


def _parsed_chunks(stack: ExitStack, path: Path, member: str | None, dim: int, workers: int) -> Iterator[_Chunk]:
    """The chunks of a text file parsed in order: in this process for a file of one chunk or one worker,
    else in a pool of `workers` forked processes with a few chunks in flight each (bounded memory).
    A worker reads its own byte range of a plain file; a compressed one is read here and sent."""
    if not _is_plain(path):
        texts = _chunks(stack.enter_context(_open(path, member)))
        jobs: Iterator[tuple] = ((_parse_chunk, text, dim, number == 0) for number, text in enumerate(texts))
    else:
        size = path.stat().st_size
        jobs = ((_parse_range, path, start, start + CHUNK_BYTES, dim) for start in range(0, size, CHUNK_BYTES))
    head = list(islice(jobs, 2))
    if len(head) < 2 or workers < 2:
        for function, *arguments in chain(head, jobs):
            yield function(*arguments)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    stack.callback(pool.shutdown, cancel_futures=True)  # on an error, the chunks not yet started are dropped
    pending: deque[Future] = deque()
    for job in chain(head, jobs):
        if len(pending) >= 2 * workers:
            yield pending.popleft().result()
        pending.append(pool.submit(*job))
    while pending:
        yield pending.popleft().result()


def _is_plain(path: Path) -> bool:
    return not (zipfile.is_zipfile(path) or path.suffix == ".gz")


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The stream in pieces of about CHUNK_BYTES that end at a line break."""
    while chunk := handle.read(CHUNK_BYTES):
        if not chunk.endswith(b"\n"):
            chunk += handle.readline()
        yield chunk


def _parse_range(path: Path, start: int, end: int, dim: int) -> _Chunk:
    """The lines of a plain file that begin at a byte in [start, end), parsed."""
    with open(path, "rb") as handle:
        if start:
            handle.seek(start - 1)
            handle.readline()  # the rest of the line the range before owns
        begin = handle.tell()
        text = handle.read(max(end - begin, 0))
        if text and not text.endswith(b"\n"):
            text += handle.readline()
    return _parse_chunk(text, dim, start == 0)


def _text_header(path: Path, member: str | None) -> tuple[int | None, int]:
    """(vectors its word2vec header announces, or None without one; values per row), the row size being
    the first row's, which a header must agree with. Every chunk is checked against it, so a bad row is
    named wherever it is."""
    count = None
    with _open(path, member) as handle:
        for number, line in enumerate(handle, start=1):
            header = _HEADER.match(line) if number == 1 else None
            if header:
                count, dim = int(header.group(1)), int(header.group(2))
                continue
            values = line.rstrip(b"\r\n").partition(b" ")[2].strip(b" ")
            if not values:
                continue
            found = len(values.split(b" "))
            if count is not None and found != dim:
                raise SeqtrainError(f"{path}: its header says {dim:,} values per vector but line {number} holds {found:,}; "
                                    "correct the first line (or remove it)")
            return count, found
    raise SeqtrainError(f"{path} holds no word vectors")


def _parse_chunk(text: bytes, dim: int, first: bool) -> _Chunk:
    """Python splits off the words, numpy's C parser reads the numbers of all rows in one call."""
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the chunk ends with a line break
    words: list[str] = []
    rows: list[bytes] = []
    numbers: list[int] = []  # the line of each row, for error messages
    for number, line in enumerate(lines, start=1):
        word, _, rest = line.rstrip(b"\r").partition(b" ")
        rest = rest.strip(b" ")
        if not rest or (first and number == 1 and _HEADER.match(line)):
            continue  # blank lines, word2vec's header
        words.append(word.decode("utf-8", errors="replace"))
        rows.append(rest)
        numbers.append(number)
    if not rows:
        return _Chunk([], None, len(lines))
    try:
        matrix = np.loadtxt(rows, dtype=np.float32, delimiter=" ", comments=None, ndmin=2, encoding=None)
        if matrix.shape[1] == dim:
            bad = _first_non_finite(matrix)
            if bad is None:
                return _Chunk(words, matrix, len(lines))
            return _Chunk([], None, len(lines), (numbers[bad], _non_finite(words[bad], matrix[bad])))
    except ValueError:
        pass
    return _Chunk([], None, len(lines), _problem(rows, numbers, dim))


def _problem(rows: list[bytes], numbers: list[int], dim: int) -> tuple[int, str]:
    """The first row numpy could not read: a wrong number of values, or a value that is not a number."""
    for number, row in zip(numbers, rows):
        values = row.split(b" ")
        if len(values) != dim:
            return number, f"has {len(values)} values, expected {dim}"
        try:
            [float(v) for v in values]
        except ValueError as exc:
            return number, f"is not 'word v1 ... vd': {exc}"
    return numbers[0], f"to line {numbers[-1]} cannot be read as vectors"


def _first_non_finite(matrix: np.ndarray) -> int | None:
    """The first row holding nan or an infinity (None when every value is finite)."""
    finite = np.isfinite(matrix).all(axis=1)
    return None if finite.all() else int(np.argmin(finite))


def _non_finite(word: str, row: np.ndarray) -> str:
    value = row[~np.isfinite(row)][0]
    return (f"(word {word!r}) holds {value}, not a finite number; vectors must be finite (a nan would rank as "
            "every word's nearest neighbour): fix or drop that row")


def _is_binary(path: Path) -> bool:
    """A word2vec binary file: a '<count> <dim>' header, then rows whose values are raw float32 bytes."""
    if not _is_plain(path):
        return False
    with open(path, "rb") as handle:
        header = handle.readline(256)
        if not _HEADER.match(header):
            return False
        row = handle.read(4096)
    space = row.find(b" ")
    values = row[space + 1 :].split(b"\n")[0][:64]  # a text row: digits up to its line break
    return space >= 0 and (not values or any(byte not in _NUMBER_BYTES for byte in values))


def _binary_header(path: Path) -> tuple[int, int, int]:
    """(count, dim, header length) of a word2vec binary file, checked against the file's size before
    anything is allocated for them."""
    with open(path, "rb") as handle:
        line = handle.readline(256)
    count, dim = (int(x) for x in line.split())
    after = path.stat().st_size - len(line)
    least = count * (2 + 4 * dim)  # per vector: a word of one byte at least, a space, dim float32s
    if not count or not dim or least > after:
        raise SeqtrainError(
            f"{path}: its header says {count:,} vectors of {dim:,} values, {least:,} bytes at least, but "
            f"{after:,} bytes follow it; the header or the file is wrong"
        )
    return count, dim, len(line)


def _parse_binary(path: Path) -> WordVectors:
    """word2vec's binary format: '<count> <dim>\\n', then per word 'word ' and dim little-endian float32s."""
    count, dim, end = _binary_header(path)
    data = path.read_bytes()
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
    if data[position:].strip():
        raise SeqtrainError(f"{path}: its header says {count:,} vectors but more follow them; correct the header")
    bad = _first_non_finite(matrix)
    if bad is not None:
        raise SeqtrainError(f"{path}: vector {bad + 1} {_non_finite(words[bad], matrix[bad])}")
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


@contextmanager
def _open(path: Path, member: str | None) -> Iterator[BinaryIO]:
    """The bytes of a plain, gzipped or zipped (one .txt member, or `member`) text file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".txt")]
            name = member or (names[0] if len(names) == 1 else None)
            if name not in zf.namelist():
                raise SeqtrainError(f"{path}: choose one member of {', '.join(names)}")
            with zf.open(name) as handle:
                yield io.BufferedReader(handle)
    elif path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            yield handle
    else:
        with open(path, "rb") as handle:
            yield handle


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
