"""Bounded by design: budgets on texts, batches and extractions, records split where their formats split
them, and damaged extractions rebuilt; each hostile input is one line, on small generated data."""

import csv
import io
import json
import logging
import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import write_imdb
from seqtrain.data.archives import Budget, unpack
from seqtrain.data.batching import bucket_batches
from seqtrain.data.download import extract
from seqtrain.data.labelled import read_labelled
from seqtrain.data.text import encode_texts, tokenize
from seqtrain.errors import SeqtrainError
from seqtrain_cli.main import app

SMALL = ["--embed-dim", "16", "--hidden", "8", "--batch-size", "8", "--threads", "1", "--epochs", "1", "-q"]
#: characters that str.splitlines() breaks at but csv and JSON Lines do not
LINE_LIKE = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, [line for line in result.output.splitlines() if line.strip()]


# ------------------------------------------------------------ records and lines
@pytest.mark.parametrize("char", LINE_LIKE, ids=[f"U+{ord(c):04X}" for c in LINE_LIKE])
def test_a_line_like_character_inside_a_csv_text_stays_inside_it(tmp_path, char):
    path = tmp_path / "d.csv"
    rows = [["text", "label"], [f"before{char}after", "a"], ["plain", "b"]]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    data = read_labelled(path)
    assert data.texts == [f"before{char}after", "plain"] and data.labels == [["a"], ["b"]]


@pytest.mark.parametrize("char", [c for c in LINE_LIKE if c != "\r"], ids=lambda c: f"U+{ord(c):04X}")
def test_a_line_like_character_inside_a_json_line_stays_inside_it(tmp_path, char):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"text": f"one{char}two", "label": "a"}, ensure_ascii=False), json.dumps({"text": "x", "label": "b"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_labelled(path).texts == [f"one{char}two", "x"]


def test_latin1_ellipsis_byte_keeps_the_true_line_number(tmp_path):
    # 0x85 is U+0085 under latin-1: splitlines() broke the row there and reported errors lines off
    path = tmp_path / "reviews.csv"
    body = b"text,label\n" + b"".join(b"review %d \x85 so so,pos\n" % i for i in range(5)) + b"broken row\n"
    path.write_bytes(body)
    with pytest.raises(SeqtrainError, match=r"reviews.csv line 7: 1 fields where the header has 2"):
        read_labelled(path, encoding="latin-1")


def test_a_csv_cell_longer_than_the_old_field_limit_is_read(tmp_path):
    path = tmp_path / "long.csv"
    long_text = "word " * 40_000  # 200,000 characters: past csv's default limit of 131,072
    path.write_text(f'text,label\n"{long_text}",a\nshort,b\n', encoding="utf-8")
    assert read_labelled(path).texts[0] == long_text


def test_a_csv_cell_past_the_text_budget_is_one_line_naming_its_line(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text('text,label\nfine,a\n"' + "w\n" * 3000 + '",b\n', encoding="utf-8")
    with pytest.raises(SeqtrainError, match=r"long.csv line \d+: a cell longer than 5,000 characters"):
        read_labelled(path, max_bytes=5000)
    assert csv.field_size_limit() == 131072  # the module's limit is put back


def test_a_json_line_past_the_text_budget_is_refused_before_it_is_read_whole(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "ok", "label": "a"}, {"text": "word " * 10_000, "label": "b"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(SeqtrainError, match=r"d.jsonl line 2: longer than 1,000 bytes, the most one text may take"):
        read_labelled(path, max_bytes=1000)


@pytest.mark.parametrize(("text", "what"), [(7, "number"), ({"a": 1}, "object"), (["x"], "array"), (None, "null")])
def test_json_lines_text_that_is_not_a_string_is_refused(tmp_path, text, what):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "fine", "label": "a"}) + "\n" + json.dumps({"text": text, "label": "b"}) + "\n")
    with pytest.raises(SeqtrainError, match=rf"d.jsonl line 2: the 'text' field is a JSON {what}, not a string"):
        read_labelled(path)


def test_numeric_json_labels_are_read_as_names_and_said_so(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "label": i % 2 + 6}) + "\n" for i in range(4)))
    data = read_labelled(path)
    assert data.labels == [["6"], ["7"], ["6"], ["7"]]
    assert len(data.notes) == 1 and "d.jsonl line 1: 6" in data.notes[0] and "JSON numbers" in data.notes[0]
    path.write_text(json.dumps({"text": "t", "label": True}) + "\n")
    with pytest.raises(SeqtrainError, match="line 1: a label in 'label' is a JSON boolean"):
        read_labelled(path)


# ------------------------------------------------------------ texts and batches
def test_a_huge_text_file_is_read_to_the_budget_and_cut_with_a_notice(tmp_path):
    for label, text in (("a", "short one"), ("b", "word " * 100_000)):
        (tmp_path / "d" / label).mkdir(parents=True)
        (tmp_path / "d" / label / "0.txt").write_text(text)
    data = read_labelled(tmp_path / "d", max_bytes=20_000)
    assert len(data.texts[1]) == 20_000 and data.cut == [1]
    from seqtrain.tasks.classification import encode_labelled

    blob = encode_labelled(data, max_tokens=1_000)
    assert blob["offsets"].diff().tolist() == [2, 1_000]
    assert blob["notes"] == [f"1 text(s) longer than --max-text-tokens 1,000 were cut to their first 1,000 tokens: {tmp_path / 'd' / 'b' / '0.txt'}"]


def test_tokenize_with_a_limit_takes_the_first_tokens_only():
    text = "One, two " * 1000
    assert tokenize(text, 5) == tokenize(text)[:5] == ["one", ",", "two", "one", ","]
    cut: list[int] = []
    _, _, offsets = encode_texts(["a b c", "a b c d e"], max_tokens=4, cut=cut)
    assert offsets.tolist() == [0, 3, 7] and cut == [1]


def test_batches_keep_to_the_token_budget_and_a_long_text_gets_its_own():
    lengths = [10] * 50 + [5_000] + [300] * 20
    for generator in (None, torch.Generator().manual_seed(0)):
        batches = bucket_batches(lengths, 16, generator, max_tokens=2_000)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for batch in batches:
            padded = len(batch) * max(lengths[i] for i in batch)
            assert padded <= 2_000 or len(batch) == 1
            assert len(batch) <= 16
        assert [50] in batches


def test_fit_on_a_json_line_of_a_million_words_cuts_it_and_trains(tmp_path):
    rows = [{"text": f"good film {i}" if i % 2 else f"bad film {i}", "label": "pos" if i % 2 else "neg"} for i in range(40)]
    rows[3]["text"] = "long " * 1_000_000
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result, lines = invoke("fit", "--task", "text", "--data", path, "--logdir", tmp_path / "runs", "--max-text-tokens",
                           "200000", *SMALL)
    assert result.exit_code == 0, result.output
    result, lines = invoke("fit", "--task", "text", "--data", path, "--logdir", tmp_path / "runs", "--max-text-tokens", "1000",
                           *SMALL)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "d.jsonl line 4: longer than 50,000 bytes" in lines[0]


def test_the_cut_notice_reaches_the_run_output(tmp_path):
    rows = [{"text": f"good film {i}" if i % 2 else f"bad film {i}", "label": "pos" if i % 2 else "neg"} for i in range(40)]
    rows[5]["text"] = "long " * 3_000
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["fit", "--task", "text", "--data", str(path), "--logdir", str(tmp_path / "runs"),
                                      "--max-text-tokens", "1000", *SMALL[:-1]])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # as wide as the terminal: lines wrap
    assert "1 text(s) longer than --max-text-tokens 1,000 were cut to their first 1,000 tokens: " in output
    assert "line 6" in output


# ------------------------------------------------------------ archive budgets
def nul_bomb(path: Path, size: int, kind: str = "tar") -> Path:
    """An archive of one member of `size` NUL bytes: tiny, and a large expansion."""
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            with zf.open("aclImdb/train/pos/0_9.txt", "w", force_zip64=True) as member:
                for _ in range(size >> 20):
                    member.write(bytes(1 << 20))
        return path
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("aclImdb/train/pos/0_9.txt")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return path


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_compression_bomb_is_refused_past_the_ratio_and_leaves_nothing(tmp_path, kind):
    archive = nul_bomb(tmp_path / f"bomb.{'tar.gz' if kind == 'tar' else 'zip'}", 24 << 20, kind)
    assert archive.stat().st_size < 100_000
    budget = Budget(max_ratio=50, free_ratio_bytes=1 << 20)
    with pytest.raises(SeqtrainError, match=r"bomb\.(tar\.gz|zip) expands [\d,]+x .* past the 50x any data set needs: a compression bomb\? refused"):
        extract(archive, tmp_path / "cache" / "entry", budget=budget)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".entry.lock"]


def test_an_archive_past_the_total_budget_is_refused_before_writing_the_member(tmp_path):
    archive = nul_bomb(tmp_path / "big.tar.gz", 8 << 20)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(SeqtrainError, match=r"big.tar.gz expands past 4,194,304 bytes, the most an archive may write; refused"):
        unpack(archive, dest, Budget(max_bytes=4 << 20))
    assert not list(dest.rglob("*.txt"))  # its declared size was refused before a byte was written


def test_a_bomb_given_to_fit_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    import seqtrain.data.archives as archives

    monkeypatch.setattr(archives.Budget.__init__, "__defaults__", (32 << 30, 50.0, 1 << 20, 256 << 20))
    archive = nul_bomb(tmp_path / "bomb.tar.gz", 24 << 20)
    result, lines = invoke("fit", "--task", "imdb", "--data", archive, "--logdir", tmp_path / "runs")
    assert result.exit_code == 2 and len(lines) == 1 and "a compression bomb? refused" in lines[0], result.output
    cache = Path(os.environ["SEQTRAIN_CACHE"])
    assert sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) == 0


# ------------------------------------------------------------ damaged extractions
def tree_archive(tmp_path: Path, kind: str) -> Path:
    tree = write_imdb(tmp_path / "tree", train_per_class=6, test_per_class=3)
    if kind == "zip":
        archive = tmp_path / "reviews.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(tree.rglob("*.txt")):
                zf.write(path, path.relative_to(tree).as_posix())
        return archive
    archive = tmp_path / "reviews.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "aclImdb", arcname="aclImdb")
    return archive


@pytest.mark.parametrize("kind", ["tar", "zip"])
@pytest.mark.parametrize("damage", ["delete", "truncate", "add"])
def test_a_damaged_extraction_is_rebuilt_with_one_line(tmp_path, caplog, kind, damage):
    archive = tree_archive(tmp_path, kind)
    target = extract(archive, tmp_path / "cache" / "entry")
    review = sorted((target / "aclImdb" / "train" / "pos").iterdir())[0]
    original = review.read_bytes()
    if damage == "delete":
        review.unlink()
    elif damage == "truncate":
        review.write_bytes(original[:3])
    else:
        (review.parent / "intruder.txt").write_text("not in the archive")
    with caplog.at_level(logging.WARNING):
        extract(archive, target)
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{target} is damaged (") and message.endswith(f"): extracting {archive} again")
    assert review.read_bytes() == original and not (review.parent / "intruder.txt").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        extract(archive, target)  # an intact extraction is reused quietly
    assert not caplog.records


def test_fit_on_a_local_archive_rebuilds_a_damaged_extraction(tmp_path, caplog):
    archive = tree_archive(tmp_path, "tar")
    args = ["fit", "--task", "imdb", "--data", archive, "--logdir", tmp_path / "runs", "--max-steps", "1", *SMALL]
    assert invoke(*args)[0].exit_code == 0
    cache = Path(os.environ["SEQTRAIN_CACHE"])
    [review] = [p for p in cache.rglob("aclImdb/train/pos/*.txt")][:1]
    review.unlink()
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert review.exists() and [r.getMessage() for r in caplog.records if "is damaged (" in r.getMessage()]


# ------------------------------------------------------------ config files
def config_file(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text('task = "imdb"\n' + text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[model]\nhidden = "four"\n', r'\[model\] hidden = "four": --hidden takes a whole number, not a TOML string'),
        ('[model]\nhidden = "4"\n', r'\[model\] hidden = "4": --hidden takes a whole number, not a TOML string'),
        ("[model]\nhidden = 4.5\n", r"\[model\] hidden = 4.5: --hidden takes a whole number, not a TOML float"),
        ("[model]\nhidden = 4.0\n", r"\[model\] hidden = 4.0: --hidden takes a whole number, not a TOML float"),
        ("[model]\nhidden = true\n", r"\[model\] hidden = true: --hidden takes a whole number, not a TOML boolean"),
        ("[model]\nhidden = 12345678901234567890\n", r"\[model\] hidden = 12345678901234567890: too large for --hidden"),
        ("[model]\nhidden = 0\n", r"\[model\] hidden = 0: --hidden must be at least 1"),
        ("[model]\nbidirectional = 1\n", r"\[model\] bidirectional = 1: --bidirectional takes true or false, not a TOML integer"),
        ('[model]\ncell = "transformer"\n', r'\[model\] cell = "transformer": --cell takes one of rnn, lstm, gru'),
        ("[model]\ncell = [1, 2]\n", r"\[model\] cell = \[1, 2\]: --cell takes one of rnn, lstm, gru, not a TOML array"),
        ('[train]\nlr = "fast"\n', r'\[train\] lr = "fast": --lr takes a number, not a TOML string'),
        ("[train]\nprecision = 64\n", r"\[train\] precision = 64: --precision takes one of 32, bf16, 16, not a TOML integer"),
        ("[data]\nval_split = 1.5\n", r"\[data\] val_split = 1.5: --val-split must be at least 0 and below 1"),
        ("[bogus]\nx = 1\n", r"unknown \[bogus\]; a seqtrain config holds"),
        ("stray = 1\n", r"unknown key 'stray'"),
        ("[model]\nwindow = 3\n", r"\[model\] window is not a setting of task 'imdb'"),
        ("[train]\nhidden = 3\n", r"\[train\] hidden is not a setting of task 'imdb' \(it belongs in \[model\]\)"),
    ],
)
def test_each_bad_config_value_is_one_line_naming_file_and_key(tmp_path, text, message):
    from seqtrain.tasks import read_config

    path = config_file(tmp_path, text)
    with pytest.raises(SeqtrainError, match=re.escape(str(path)) + ": " + message):
        read_config(path)


def test_config_values_are_taken_as_their_flags_take_them(tmp_path):
    from seqtrain.tasks import read_config

    config = read_config(config_file(tmp_path, '[train]\nprecision = 32\nlr = 1\n[model]\nhidden = 7\n[data]\nmax_len = 0\n'))
    assert config.train.precision == "32" and config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.model.hidden == 7
    assert read_config(config_file(tmp_path, '[train]\nprecision = "bf16"\n')).train.precision == "bf16"


def test_a_yaml_or_broken_toml_config_is_one_line_naming_the_file(tmp_path):
    from seqtrain.tasks import read_config

    yaml = tmp_path / "settings.yaml"
    yaml.write_text("task: imdb\nmodel:\n  hidden: 4\n")
    with pytest.raises(SeqtrainError, match=r"settings.yaml: seqtrain reads TOML config files .* not YAML"):
        read_config(yaml)
    broken = config_file(tmp_path, "[model]\nhidden: 4\n")
    with pytest.raises(SeqtrainError, match=r"config.toml line 3: not valid TOML \(Expected '=' after a key"):
        read_config(broken)
    result, lines = invoke("fit", "--config", broken, "--logdir", tmp_path / "runs")
    assert result.exit_code == 2 and len(lines) == 1 and "config.toml line 3: not valid TOML" in lines[0], result.output
    result, lines = invoke("fit", "--config", config_file(tmp_path, "[bogus]\n"), "--logdir", tmp_path / "runs")
    assert result.exit_code == 2 and len(lines) == 1 and "unknown [bogus]" in lines[0], result.output


def test_a_huge_integer_flag_is_one_line():
    from seqtrain.tasks import build_config, make_task

    with pytest.raises(SeqtrainError, match="--hidden must be at most 9,223,372,036,854,775,807"):
        make_task(build_config("imdb", {"hidden": 10**20}))


# ------------------------------------------------------------ word-vector files
def vectors_text(path: Path, rows: list[str], header: str | None = None) -> Path:
    path.write_text((header + "\n" if header else "") + "".join(row + "\n" for row in rows))
    return path


def vectors_binary(path: Path, rows: dict[str, list[float]], header: bytes | None = None) -> Path:
    import numpy as np

    dim = len(next(iter(rows.values())))
    body = b"".join(w.encode() + b" " + np.asarray(v, dtype="<f4").tobytes() + b"\n" for w, v in rows.items())
    path.write_bytes((header or f"{len(rows)} {dim}\n".encode()) + body)
    return path


ROWS = ["the 0.1 0.2 0.3", "cat 0.4 0.5 0.6", "dog 0.7 0.8 0.9"]
BINARY = {"the": [0.1, 0.2, 0.3], "cat": [0.4, 0.5, 0.6], "dog": [0.7, 0.8, 0.9]}


def load(path: Path):
    from seqtrain.data.vectors import load_vectors

    return load_vectors(path, cache=str(path.parent / "cache"))


def test_a_binary_header_claiming_a_huge_dimension_is_refused_before_allocating(tmp_path):
    path = vectors_binary(tmp_path / "v.bin", BINARY, b"3 1000000000\n")
    with pytest.raises(SeqtrainError, match=r"v.bin: its header says 3 vectors of 1,000,000,000 values, 12,000,000,006 bytes at least, but 51 bytes follow it"):
        load(path)
    from seqtrain.data.vectors import vector_dim

    with pytest.raises(SeqtrainError, match="its header says 3 vectors of 1,000,000,000 values"):
        vector_dim(str(path))


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("count", [2, 5])
def test_a_wrong_header_count_is_refused_in_both_formats(tmp_path, kind, count):
    if kind == "text":
        path = vectors_text(tmp_path / "v.txt", ROWS, f"{count} 3")
    else:
        path = vectors_binary(tmp_path / "v.bin", BINARY, f"{count} 3\n".encode())
    with pytest.raises(SeqtrainError, match=rf"v\.(txt|bin): its header says {count} vectors"):
        load(path)
    assert load(vectors_text(tmp_path / "ok.txt", ROWS, "3 3")).vectors.shape == (3, 3)
    assert load(vectors_binary(tmp_path / "ok.bin", BINARY)).vectors.shape == (3, 3)


def test_a_text_header_whose_dimension_disagrees_with_the_rows_is_refused(tmp_path):
    path = vectors_text(tmp_path / "v.txt", ROWS, "3 1000000000")
    with pytest.raises(SeqtrainError, match="v.txt: its header says 1,000,000,000 values per vector but line 2 holds 3"):
        load(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_text_values_are_refused_naming_word_and_line(tmp_path, value):
    path = vectors_text(tmp_path / "v.txt", [ROWS[0], ROWS[1], f"dog 0.7 {value} 0.9"])
    with pytest.raises(SeqtrainError, match=r"v.txt: line 3 \(word 'dog'\) holds -?(nan|inf), not a finite number"):
        load(path)


def test_non_finite_binary_values_are_refused_naming_the_word(tmp_path):
    path = vectors_binary(tmp_path / "v.bin", {**BINARY, "cat": [0.4, float("nan"), 0.6]})
    with pytest.raises(SeqtrainError, match=r"v.bin: vector 2 \(word 'cat'\) holds nan, not a finite number"):
        load(path)


# ------------------------------------------------------------ model size
@pytest.mark.parametrize(("flag", "value"), [("--hidden", "1000000"), ("--embed-dim", "100000000")])
def test_an_oversized_model_is_refused_before_building_with_its_figure(tmp_path, flag, value):
    result, lines = invoke("fit", "--task", "imdb", flag, value, "--logdir", tmp_path / "runs")
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "make a model of at least" in lines[0] and "GiB to train" in lines[0] and "choose smaller sizes" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_the_parameter_estimate_is_a_lower_bound_of_the_real_model():
    from seqtrain.models.size import parameter_count
    from seqtrain.tasks import build_config, make_task

    for task, settings in [("imdb", {"max_vocab": 500}), ("shakespeare", {}), ("sine", {}), ("translate", {"layers": 2})]:
        config = build_config(task, settings)
        real = sum(p.numel() for p in make_task(config).build_model(make_task(config).default_meta()).parameters())
        assert 0.5 * real <= parameter_count(config) <= real, task


# ------------------------------------------------------------ predict's input, read as fit reads it
def test_predict_reads_input_as_fit_does_and_never_echoes_control_bytes(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(20)))
    logdir = tmp_path / "runs"
    result, _ = invoke("fit", "--task", "text", "--data", path, "--logdir", logdir, "--max-steps", "1", *SMALL)
    assert result.exit_code == 0, result.output
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"\x1b[31mred\x1b[0m good film\nsecond\xe2\x80\xa8line\n")
    result, lines = invoke("predict", "latest", "--file", texts, "--logdir", logdir, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u2028" not in result.output
    assert [line.split("\t")[2] for line in lines] == ["\\x1b[31mred\\x1b[0m good film", "second\\u2028line"]
    texts.write_bytes(b"fine\nnot \xff text\n")
    result, lines = invoke("predict", "latest", "--file", texts, "--logdir", logdir, "--threads", "1")
    assert result.exit_code == 2 and len(lines) == 1 and "texts.txt line 2: byte 0xff is not valid UTF-8" in lines[0]
    path.write_bytes(path.read_bytes() + b"not \xff text,pos\n")
    result, lines = invoke("fit", "--task", "text", "--data", path, "--logdir", logdir, *SMALL)
    assert result.exit_code == 2 and len(lines) == 1 and "line 42: byte 0xff is not valid utf-8" in lines[0]


# ------------------------------------------------------------ a frozen peer under torchrun
def test_a_frozen_rank_stops_the_others_within_the_timeout_in_one_line(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from test_distributed import LOOPBACK_ENV, ROOT
    from test_resume import small_text

    text = small_text(tmp_path / "text.txt")
    args = ["--task", "charlm", "--text", text, "--epochs", "50", "--batch-size", "8", "--bptt", "25", "--hidden", "16",
            "--embed-dim", "8", "--threads", "1", "--device", "cpu", "--save-every", "2", "--logdir", tmp_path / "runs", "-q"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "seqtrain", "fit"]
    env = {**LOOPBACK_ENV, "SEQTRAIN_DIST_TIMEOUT": "5"}
    agent = subprocess.Popen(launch + [str(a) for a in args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    frozen = None
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "runs").rglob("last.pt")) and time.monotonic() < deadline and agent.poll() is None:
            time.sleep(0.5)
        workers = subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True).stdout.split()
        for pid in workers:
            if b"RANK=1\0" in Path(f"/proc/{pid}/environ").read_bytes().replace(b"LOCAL_RANK=1\0", b""):
                frozen = int(pid)
        assert frozen is not None, "rank 1 not found"
        os.kill(frozen, signal.SIGSTOP)
        started = time.monotonic()
        _, stderr = agent.communicate(timeout=120)
        waited = time.monotonic() - started
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGKILL) if Path(f"/proc/{frozen}").exists() else None
        agent.kill()
    assert agent.returncode != 0 and waited < 100
    assert "rank 0: rank 1 stopped answering for 5 s (SEQTRAIN_DIST_TIMEOUT); check that process" in stderr, stderr[-2000:]


def test_the_benchmarks_measure_a_command_in_a_process_of_its_own(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from bench_memory import peak_run

    result = peak_run(["fit", "--task", "text", "--data", str(tmp_path / "missing.csv")], tmp_path)
    assert result["rc"] == 2 and len(result["stderr"]) == 1 and "does not exist" in result["stderr"][0]
    assert 50 < result["peak_mib"] < 2048 and result["wall_s"] > 0
