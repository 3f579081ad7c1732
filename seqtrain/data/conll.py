"""Token-labelled sentences: CoNLL column files, CoNLL-U and JSON Lines; tag schemes and entity spans.

Formats (a `.gz` suffix is read through gzip):

- CoNLL columns (any other name): one token a line, columns separated by tabs
  (when the line has one) or runs of spaces, a blank line between sentences,
  `-DOCSTART-` lines skipped;
- CoNLL-U (`.conllu`): ten tab-separated columns; comments skipped; as UD
  prescribes, tags belong to syntactic words, so a multiword token's range
  line (`3-4 don't`) is skipped and its words (`3 do`, `4 n't`) kept, and
  empty nodes (`5.1`) of the enhanced graph are skipped;
- JSON Lines (`.jsonl`, `.ndjson`, `.json`): `{"tokens": [...], "tags": [...]}` a line.

Schemes: IOB1 (CoNLL-2003's originals: `I-X` throughout, `B-X` only where an
entity follows one of the same type), IOB2/BIO (`B-X` starts every entity),
BIOES (`S-X` single tokens, `E-X` ends) and plain tags (POS). Spans are
decoded by conlleval's chunk rules (`chunk_start`/`chunk_end`, the same as
seqeval's default mode), which also accept any ill-formed sequence a
softmax tagger may produce: `I-X` after `O` or another type starts an entity.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from seqtrain.errors import SeqtrainError

SCHEMES = ("iob1", "iob2", "bioes", "plain")
CONLLU_COLUMNS = {"form": 2, "lemma": 3, "upos": 4, "xpos": 5, "feats": 6, "head": 7, "deprel": 8, "deps": 9, "misc": 10}
JSON_LINES = (".jsonl", ".ndjson", ".json")
#: file-name parts that mark a split in a folder, checked in this order ("testa" is CoNLL-2003's dev set)
SPLIT_NAMES = (("val", ("dev", "valid", "testa")), ("test", ("testb", "test")), ("train", ("train",)))
_PREFIXED = re.compile(r"^([BIES])-(.+)$")


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]


@dataclass
class Tagged:
    """Sentences by split ("train", "val", "test"; a single file gives "train" only) and where each came from."""

    splits: dict[str, list[Sentence]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


# ------------------------------------------------------------------ readers
def read_tagged(path: Path, token_col: str = "1", tag_col: str = "auto", encoding: str = "utf-8") -> Tagged:
    """A file (all of it as "train") or a folder of split files named by their conventional names."""
    out = Tagged()
    if path.is_dir():
        for split, files in split_files(path).items():
            out.splits[split] = read_file(files, token_col, tag_col, encoding)
            out.files[split] = files
        if "train" not in out.splits:
            raise SeqtrainError(f"{path} holds no training file (a name with 'train' in it, e.g. eng.train or train.txt)")
    else:
        out.splits["train"] = read_file(path, token_col, tag_col, encoding)
        out.files["train"] = path
    return out


def split_files(folder: Path) -> dict[str, Path]:
    """The train/val/test files of a folder, by name; two files for one split is an error."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        name = path.name.lower()
        split = next((split for split, parts in SPLIT_NAMES if any(part in name for part in parts)), None)
        if split is None:
            continue
        if split in found:
            raise SeqtrainError(f"{folder} has two {split} files, {found[split].name} and {path.name}: keep one")
        found[split] = path
    return found


def read_file(path: Path, token_col: str = "1", tag_col: str = "auto", encoding: str = "utf-8") -> list[Sentence]:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".conllu"):
        sentences = list(_read_conllu(path, tag_col, encoding))
    elif name.endswith(JSON_LINES):
        sentences = list(_read_json_lines(path, encoding))
    else:
        sentences = list(_read_columns(path, token_col, tag_col, encoding))
    if not sentences:
        raise SeqtrainError(f"{path} holds no tagged sentences")
    return sentences


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a plain or gzipped file, each line decoded strictly (a UTF-8 BOM dropped)."""
    opened = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    with opened as raw:
        for number, line in enumerate(raw, 1):
            try:
                text = line.decode("utf-8-sig" if number == 1 and encoding.lower() in ("utf-8", "utf8") else encoding)
            except UnicodeDecodeError as exc:
                raise SeqtrainError(
                    f"{path}:{number}: not valid {encoding} ({exc.reason}); give the file's encoding with --encoding"
                ) from None
            yield number, text.rstrip("\r\n")


def column_index(spec: str, width: int, path: Path, number: int, what: str) -> int:
    """A 1-based column number, or 'last', as a 0-based index into a line of `width` columns."""
    if spec in ("last", "auto"):
        return width - 1
    try:
        index = int(spec)
    except ValueError:
        raise SeqtrainError(f"--{what}-col must be a column number or 'last', not '{spec}'") from None
    if not 1 <= index <= width:
        raise SeqtrainError(f"{path}:{number}: --{what}-col {index} but the line has {width} columns")
    return index - 1


def _blocks(path: Path, encoding: str) -> Iterator[list[tuple[int, str]]]:
    """The numbered non-blank lines of each sentence (runs between blank lines)."""
    block: list[tuple[int, str]] = []
    for number, line in _lines(path, encoding):
        if line.strip():
            block.append((number, line))
        elif block:
            yield block
            block = []
    if block:
        yield block


def _read_columns(path: Path, token_col: str, tag_col: str, encoding: str) -> Iterator[Sentence]:
    width = token_at = tag_at = 0
    for block in _blocks(path, encoding):
        tokens: list[str] = []
        tags: list[str] = []
        for number, line in block:
            cells = [cell.strip() for cell in (line.split("\t") if "\t" in line else line.split())]
            if cells[0] == "-DOCSTART-":
                continue
            if not width:
                width = len(cells)
                if width < 2:
                    raise SeqtrainError(f"{path}:{number}: one column only; a tagged line needs a token and a tag")
                token_at = column_index(token_col, width, path, number, "token")
                tag_at = column_index(tag_col, width, path, number, "tag")
            if len(cells) != width:
                raise SeqtrainError(
                    f"{path}:{number}: {len(cells)} columns where the file's first line has {width} (a ragged line)"
                )
            if not cells[token_at] or not cells[tag_at]:
                raise SeqtrainError(f"{path}:{number}: an empty token or tag column")
            tokens.append(cells[token_at])
            tags.append(cells[tag_at])
        if tokens:
            yield Sentence(tokens, tags)


def _read_conllu(path: Path, tag_col: str, encoding: str) -> Iterator[Sentence]:
    column = CONLLU_COLUMNS["upos"] if tag_col == "auto" else CONLLU_COLUMNS.get(tag_col.lower())
    if column is None:
        try:
            column = int(tag_col)
        except ValueError:
            raise SeqtrainError(
                f"--tag-col for CoNLL-U must be upos, xpos, deprel (or another column name) or a number, not '{tag_col}'"
            ) from None
        if not 1 <= column <= 10:
            raise SeqtrainError(f"--tag-col {column}: CoNLL-U has columns 1 to 10")
    for block in _blocks(path, encoding):
        tokens: list[str] = []
        tags: list[str] = []
        for number, line in block:
            if line.startswith("#"):
                continue
            cells = line.split("\t")
            if len(cells) != 10:
                raise SeqtrainError(f"{path}:{number}: {len(cells)} tab-separated columns; CoNLL-U has 10")
            if "-" in cells[0] or "." in cells[0]:  # a multiword token's range, or an empty node
                continue
            tokens.append(cells[1])
            tags.append(cells[column - 1])
        if tokens:
            yield Sentence(tokens, tags)


def _read_json_lines(path: Path, encoding: str) -> Iterator[Sentence]:
    for number, line in _lines(path, encoding):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SeqtrainError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("tokens"), list) or not isinstance(row.get("tags"), list):
            raise SeqtrainError(f'{path}:{number}: expected {{"tokens": [...], "tags": [...]}}')
        if len(row["tokens"]) != len(row["tags"]):
            raise SeqtrainError(
                f"{path}:{number}: {len(row['tokens'])} tokens but {len(row['tags'])} tags"
            )
        if row["tokens"]:
            yield Sentence([str(t) for t in row["tokens"]], [str(t) for t in row["tags"]])


# ------------------------------------------------------------------ schemes
def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type): 'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); a tag without a prefix is its own type ('I')."""
    if tag == "O":
        return "O", ""
    match = _PREFIXED.match(tag)
    return (match.group(1), match.group(2)) if match else ("I", tag)


def chunk_end(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether an entity ended at the previous token (conlleval's endOfChunk, with BIOES' E and S)."""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag != "O" and prev_type != type_


def chunk_start(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether an entity starts at this token (conlleval's startOfChunk, with BIOES' E and S)."""
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and prev_type != type_


def spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities as (type, first, last) token positions (inclusive), decoded by conlleval's rules."""
    out = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        tag_, type_ = split_tag(tag)
        if i and chunk_end(prev_tag, tag_, prev_type, type_) and prev_tag != "O":
            out.append((prev_type, begin, i - 1))
        if chunk_start(prev_tag, tag_, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag_, type_
    return out


def tags_from_spans(entities: list[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    """The tags of `length` tokens holding `entities` in a span scheme (iob1, iob2 or bioes)."""
    tags = ["O"] * length
    previous_end, previous_type = -2, ""
    for type_, first, last in entities:
        if scheme == "bioes":
            if first == last:
                tags[first] = f"S-{type_}"
            else:
                tags[first], tags[last] = f"B-{type_}", f"E-{type_}"
                tags[first + 1 : last] = [f"I-{type_}"] * (last - first - 1)
        else:
            tags[first : last + 1] = [f"I-{type_}"] * (last - first + 1)
            if scheme == "iob2" or (previous_end == first - 1 and previous_type == type_):
                tags[first] = f"B-{type_}"
        previous_end, previous_type = last, type_
    return tags


def convert(tags: list[str], scheme: str) -> list[str]:
    """Tags in another span scheme, through their entities; plain tags stay as they are."""
    return list(tags) if scheme == "plain" else tags_from_spans(spans(tags), len(tags), scheme)


def detect_scheme(sentences: list[Sentence]) -> str:
    """plain unless every tag is O or prefixed B-/I-/E-/S-; then bioes if E- or S- occurs, iob1 if some I-X starts
    an entity (after O, another type or at a sentence start), else iob2."""
    prefixes = set()
    for sentence in sentences:
        for tag in sentence.tags:
            if tag != "O" and not _PREFIXED.match(tag):
                return "plain"
            prefixes.add(tag[0])
    if not prefixes - {"O"}:
        return "plain"
    if prefixes & {"E", "S"}:
        return "bioes"
    for sentence in sentences:
        prev = "O"
        for tag in sentence.tags:
            if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
                return "iob1"
            prev = tag
    return "iob2"


# ------------------------------------------------------------------ scores
@dataclass
class SpanCounts:
    """Per type: entities found in the truth, predicted, and predicted exactly (type, first and last token)."""

    gold: dict[str, int] = field(default_factory=dict)
    predicted: dict[str, int] = field(default_factory=dict)
    correct: dict[str, int] = field(default_factory=dict)

    def add(self, gold_tags: list[str], predicted_tags: list[str]) -> None:
        truth, guess = set(spans(gold_tags)), set(spans(predicted_tags))
        for counts, entities in ((self.gold, truth), (self.predicted, guess), (self.correct, truth & guess)):
            for type_, _, _ in entities:
                counts[type_] = counts.get(type_, 0) + 1


def prf(correct: float, predicted: float, gold: float) -> dict[str, float]:
    """precision, recall and F1 as fractions (conlleval prints them times 100; 0 where undefined)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# ------------------------------------------------------------------ tokens
#: how `seqtrain tag` splits raw text, the way CoNLL-2003 and UD English tokenise: abbreviations with inner
#: periods (U.S.) and a capitalised word of 2-4 letters with its period before more text (Corp., Mr., Inc.) stay
#: whole; n't and 's, 're, 've, 'll, 'd, 'm split off (do n't, John 's); hyphenated words and numbers with inner
#: , . / stay whole (1,000 3.5 well-known); every other punctuation mark is a token of its own
_TOKEN = re.compile(
    r"(?:[^\W\d_]\.){2,}"
    r"|[A-Z][a-z]{1,3}\.(?=\s+\S)"
    r"|\w+(?=n't\b)|n't\b"
    r"|'(?:s|re|ve|ll|d|m)\b"
    r"|\w+(?:[-./,]\w+)*"
    r"|\S"
)


def tokenize_sentence(text: str) -> list[str]:
    """Tokens of raw text, split as CoNLL and UD English split theirs (see `_TOKEN`); case kept."""
    return _TOKEN.findall(text)
