"""A user's labelled texts: a folder of class folders, or a CSV, TSV or JSON Lines file with a header.

Layouts:

- `PATH/<label>/*.txt`: one text per file, the folder name is its label;
- `PATH/train/<label>/*.txt` and `PATH/test/<label>/*.txt` (as aclImdb): the
  given test split is kept;
- `*.csv`, `*.tsv` (or `*.tab`): a header row naming the text and label
  columns; `*.jsonl` (or `*.ndjson`, `*.json`): one object per line;
- one example a line, `label text` (SST-2's `1 a stirring ...`, TREC's
  `NUM:dist How far ...`): `*.label` files, or any file with `--format lines`;
- one file per class, one text a line (Pang & Lee's `rt-polarity.pos` and
  `rt-polarity.neg`): a folder holding only files, or `--format files`; each
  file's label is the first dot-separated part of its name that the files do
  not share (`pos`, `neg`).

With a label separator, a label cell may hold several labels (multi-label);
a JSON list in a label field does the same. Decoding is strict: a byte that
does not decode is an error naming the file, line and encoding, never a
silent replacement, since a dropped or garbled text would skew the counts.

Reading is bounded: files are read a record at a time (records split where
`csv` and JSON Lines split them, at line feeds, never at U+0085 or U+2028
inside a text), and no text is read past `max_bytes` (a text file is cut
there, a longer CSV cell or JSON line is refused naming its line), so one
huge text cannot take the machine's memory.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from seqtrain.errors import SeqtrainError

DELIMITED = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES = (".jsonl", ".ndjson", ".json")
#: the most bytes one text may take when read (the text budget); tasks pass their own from --max-text-tokens
MAX_TEXT_BYTES = 500_000
LINES = (".label",)
FORMATS = ("auto", "lines", "files")


@dataclass
class Labelled:
    """Texts with their labels (one or more each) and, where the layout gives one, test-split flags."""

    texts: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    test: list[bool] | None = None
    multi_label: bool = False
    origins: list[str] = field(default_factory=list)  # where each text came from, for notices
    cut: list[int] = field(default_factory=list)  # texts cut at the byte budget while reading
    notes: list[str] = field(default_factory=list)  # what the reader wants the user to know
    val: list[bool] | None = None  # validation flags, where the user gave a validation file

    def extend(self, other: Labelled) -> None:
        """Append another file's examples (--val-data, --test-data), with their origins, cuts and notes."""
        self.cut += [len(self.texts) + i for i in other.cut]
        self.texts += other.texts
        self.labels += other.labels
        self.origins += other.origins
        self.notes += other.notes
        self.multi_label |= other.multi_label


def read_labelled(
    path: Path, text_col: str = "text", label_col: str = "label", label_sep: str | None = None, encoding: str = "utf-8",
    classes: list[str] | None = None, max_bytes: int = MAX_TEXT_BYTES, format: str = "auto",
    coarse_sep: str | None = None,
) -> Labelled:
    """Read labelled texts from a folder or a file (see the module's docstring for the layouts).

    `classes` limits a folder layout to those class folders (aclImdb's `train/` also holds `unsup/`);
    `max_bytes` is the most one text may take.
    `coarse_sep` keeps each label's part before that separator (TREC's `NUM:dist` -> `NUM`).
    """
    if format not in FORMATS:
        raise SeqtrainError(f"--format must be one of {', '.join(FORMATS)}, not '{format}'")
    files_layout = path.is_dir() and not any(p.is_dir() for p in path.iterdir())
    if format == "files" or (format == "auto" and files_layout):
        out = _read_class_files(path, encoding, max_bytes)
    elif format == "lines" or (format == "auto" and path.is_file() and path.suffix.lower() in LINES):
        out = _read_lines(path, encoding, max_bytes)
    elif path.is_dir():
        out = _read_folders(path, encoding, classes, max_bytes)
    elif path.suffix.lower() in DELIMITED:
        out = _read_delimited(path, DELIMITED[path.suffix.lower()], text_col, label_col, label_sep, encoding, max_bytes)
    elif path.suffix.lower() in JSON_LINES:
        out = _read_json_lines(path, text_col, label_col, label_sep, encoding, max_bytes)
    else:
        raise SeqtrainError(
            f"{path}: cannot tell its format; give a folder of class folders, a .csv, .tsv or .jsonl file, "
            "or pass --format lines (one `label text` a line)"
        )
    if coarse_sep:
        out.labels = [list(dict.fromkeys(label.split(coarse_sep, 1)[0] for label in labels)) for labels in out.labels]
    if not out.texts:
        raise SeqtrainError(f"{path} holds no labelled texts")
    names = {label for labels in out.labels for label in labels}
    if len(names) < 2:
        raise SeqtrainError(
            f"{path} has only one label ({', '.join(map(repr, names)) or 'none'}): a classifier needs at least two"
        )
    return out


def decoder(encoding: str) -> codecs.IncrementalDecoder:
    """A strict incremental decoder for `encoding`, or one line when Python does not know it."""
    try:
        return codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError:
        raise SeqtrainError(f"--encoding {encoding} is not an encoding Python knows (try utf-8, cp1252, latin-1)") from None


def decode(raw: bytes, path: Path, encoding: str, line: int = 1, final: bool = True) -> str:
    """`raw` (which starts at `line` of `path`) decoded strictly; an undecodable byte is one line naming the
    file, line and encoding. Without `final`, an incomplete character at the end is left out (a cut text)."""
    try:
        return decoder(encoding).decode(raw, final=final)
    except UnicodeDecodeError as exc:
        line += raw[: exc.start].count(b"\n")
        byte = raw[exc.start : exc.start + 1].hex()
        raise SeqtrainError(
            f"{path} line {line}: byte 0x{byte} is not valid {encoding}; pass --encoding (e.g. cp1252) "
            "or fix the file"
        ) from None


def read_text_file(path: Path, encoding: str, max_bytes: int) -> tuple[str, bool]:
    """A text file's first `max_bytes` bytes, decoded, and whether the file went on past them."""
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    cut = len(raw) > max_bytes
    return decode(raw[:max_bytes], path, encoding, final=not cut), cut


def physical_lines(path: Path, encoding: str, max_bytes: int) -> Iterator[tuple[int, str]]:
    """(line number, decoded line with its line feed) for each line of `path`, split at line feeds only, as
    `csv` and JSON Lines split records; a line longer than `max_bytes` is refused before it is read whole."""
    decoder(encoding)  # one line for a name Python does not know
    if "\n".encode(encoding) != b"\n":
        raise SeqtrainError(f"--encoding {encoding}: CSV, TSV and JSON Lines files are read in encodings that "
                            "write a line feed as one byte (utf-8, cp1252, latin-1, ...); convert the file to utf-8")
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(max_bytes + 1):
            number += 1
            if len(raw) > max_bytes:
                raise SeqtrainError(
                    f"{path} line {number}: longer than {max_bytes:,} bytes, the most one text may take "
                    "(--max-text-tokens x 50 bytes); raise --max-text-tokens or shorten that text"
                )
            text = decode(raw, path, encoding, number)
            yield number, text.lstrip("\ufeff") if number == 1 else text


def _read_folders(root: Path, encoding: str, classes: list[str] | None, max_bytes: int) -> Labelled:
    splits = [root / "train", root / "test"]
    if all(s.is_dir() and any(p.is_dir() for p in s.iterdir()) for s in splits):
        out = Labelled(test=[])
        for is_test, split in enumerate(splits):
            _add_class_folders(out, split, encoding, bool(is_test), classes, max_bytes)
        return out
    out = Labelled()
    _add_class_folders(out, root, encoding, None, classes, max_bytes)
    return out


def _add_class_folders(
    out: Labelled, root: Path, encoding: str, is_test: bool | None, classes: list[str] | None, max_bytes: int
) -> None:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (classes is None or p.name in classes))
    if not folders:
        raise SeqtrainError(f"{root} holds no class folders (expected {root}/<label>/*.txt)")
    for folder in folders:
        for path in sorted(folder.glob("*.txt")):
            text, cut = read_text_file(path, encoding, max_bytes)
            if cut:
                out.cut.append(len(out.texts))
            out.texts.append(text)
            out.labels.append([folder.name])
            out.origins.append(str(path))
            if is_test is not None:
                out.test.append(is_test)


def _read_lines(path: Path, encoding: str, max_bytes: int) -> Labelled:
    """One example a line: the label, whitespace, the text."""
    if not path.is_file():
        raise SeqtrainError(f"--format lines reads one file, and {path} is not a file")
    out = Labelled()
    for number, line in physical_lines(path, encoding, max_bytes):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            raise SeqtrainError(f"{path} line {number}: a label with no text; each line is `label text`")
        out.labels.append([parts[0]])
        out.texts.append(parts[1])
    return out


def _read_class_files(root: Path, encoding: str, max_bytes: int) -> Labelled:
    """One file per class, one text a line; the label is the first part of the name the files do not share."""
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")) if root.is_dir() else []
    if len(files) < 2:
        raise SeqtrainError(f"{root}: one file per class needs a folder of at least two files, one per label")
    parts = [p.name.split(".") for p in files]
    differing = [i for i in range(max(map(len, parts))) if len({tuple(x[i : i + 1]) for x in parts}) > 1]
    out = Labelled()
    for path, name in zip(files, parts):
        label = ".".join(name[differing[0] : differing[0] + 1]) or path.name
        for _, line in physical_lines(path, encoding, max_bytes):
            if line.strip():
                out.texts.append(line.strip())
                out.labels.append([label])
    return out


def _split_labels(cell: object, label_sep: str | None, where: str) -> list[str]:
    if isinstance(cell, list):
        labels = [str(x).strip() for x in cell]
    elif cell is None:
        labels = []
    else:
        text = str(cell)
        labels = [x.strip() for x in text.split(label_sep)] if label_sep else [text.strip()]
    labels = [x for x in labels if x]
    if not labels:
        raise SeqtrainError(f"{where}: the label is empty; every text needs a label")
    return list(dict.fromkeys(labels))  # each label once, in the order given


def _missing_column(path: Path, flag: str, name: str, columns: list[str]) -> SeqtrainError:
    return SeqtrainError(f"{path} has no column '{name}' (columns: {', '.join(columns)}); name it with {flag}")


def _read_delimited(
    path: Path, delimiter: str, text_col: str, label_col: str, label_sep: str | None, encoding: str, max_bytes: int
) -> Labelled:
    previous = csv.field_size_limit(max_bytes)  # a cell may be as long as a text may be, no longer
    try:
        return _read_rows(path, delimiter, text_col, label_col, label_sep, encoding, max_bytes)
    finally:
        csv.field_size_limit(previous)


def _csv_problem(exc: csv.Error, max_bytes: int) -> str:
    if "field larger than field limit" in str(exc):
        return (f"a cell longer than {max_bytes:,} characters, the most one text may take "
                "(--max-text-tokens x 50); raise --max-text-tokens or shorten that text")
    return f"not a valid CSV/TSV file ({exc})"


def _csv_rows(reader, path: Path, max_bytes: int) -> Iterator[list[str]]:
    """The reader's rows, a malformed one (or a cell past the budget) as one line naming its line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SeqtrainError(f"{path} line {reader.line_num}: {_csv_problem(exc, max_bytes)}") from None
        yield row


def _read_rows(
    path: Path, delimiter: str, text_col: str, label_col: str, label_sep: str | None, encoding: str, max_bytes: int
) -> Labelled:
    reader = csv.reader((line for _, line in physical_lines(path, encoding, max_bytes)), delimiter=delimiter)
    rows = _csv_rows(reader, path, max_bytes)
    header = next(rows, None)
    if not header:
        raise SeqtrainError(f"{path} is empty; it needs a header row naming its columns")
    header = [h.strip() for h in header]
    for flag, name in (("--text-col", text_col), ("--label-col", label_col)):
        if name not in header:
            raise _missing_column(path, flag, name, header)
    ti, li = header.index(text_col), header.index(label_col)
    out = Labelled()
    for row in rows:
        where = f"{path} line {reader.line_num}"
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise SeqtrainError(f"{where}: {len(row)} fields where the header has {len(header)}")
        out.texts.append(row[ti])
        out.labels.append(_split_labels(row[li], label_sep, where))
        out.origins.append(where)
    out.multi_label = label_sep is not None
    return out


def _read_json_lines(
    path: Path, text_col: str, label_col: str, label_sep: str | None, encoding: str, max_bytes: int
) -> Labelled:
    out = Labelled(multi_label=label_sep is not None)
    numeric: list[str] = []
    for number, line in physical_lines(path, encoding, max_bytes):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SeqtrainError(f"{where}: not a JSON object ({exc.msg})") from None
        if not isinstance(record, dict):
            raise SeqtrainError(f"{where}: not a JSON object")
        for flag, name in (("--text-col", text_col), ("--label-col", label_col)):
            if name not in record:
                raise _missing_column(path, flag, name, list(record))
        text, label = record[text_col], record[label_col]
        if not isinstance(text, str):
            raise SeqtrainError(f"{where}: the {text_col!r} field is a JSON {_json_type(text)}, not a string; "
                                "every text must be a JSON string")
        for cell in label if isinstance(label, list) else [label]:
            if isinstance(cell, (dict, list)) or cell is True or cell is False:
                raise SeqtrainError(f"{where}: a label in {label_col!r} is a JSON {_json_type(cell)}; "
                                    "labels are strings (or numbers, or a list of them)")
            if isinstance(cell, (int, float)) and len(numeric) < 3:
                numeric.append(f"{where}: {cell!r}")
        out.multi_label |= isinstance(label, list)
        out.texts.append(text)
        out.labels.append(_split_labels(label, label_sep, where))
        out.origins.append(where)
    if numeric:
        out.notes.append(f"labels written as JSON numbers are read as class names ({'; '.join(numeric)}): "
                         "a number is a name here, not an order or a value")
    return out


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")
