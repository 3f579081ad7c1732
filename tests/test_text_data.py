"""The labelled-text reader: every input format, multi-label, encodings, and one-line errors."""

import json

import pytest
import torch

from seqtrain.data.labelled import read_labelled
from seqtrain.errors import SeqtrainError
from seqtrain.tasks.classification import stratified_split


def write_folders(root, layout):
    for relative, texts in layout.items():
        folder = root / relative
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}.txt").write_text(text, encoding="utf-8")
    return root


def test_class_folders(tmp_path):
    root = write_folders(tmp_path / "d", {"sport": ["goal", "match"], "politics": ["vote"]})
    data = read_labelled(root)
    assert sorted(zip(data.texts, (l[0] for l in data.labels))) == [("goal", "sport"), ("match", "sport"), ("vote", "politics")]
    assert data.test is None and not data.multi_label


def test_train_and_test_class_folders_keep_the_given_test_split(tmp_path):
    root = write_folders(tmp_path / "d", {"train/a": ["x", "y"], "train/b": ["z"], "test/a": ["t"], "test/b": ["u"]})
    data = read_labelled(root)
    assert [(t, l[0], s) for t, l, s in zip(data.texts, data.labels, data.test)] == [
        ("x", "a", False), ("y", "a", False), ("z", "b", False), ("t", "a", True), ("u", "b", True)]


def test_csv_with_quoted_commas_and_line_breaks(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('id,review,stars\n1,"Good, really\nGood",pos\n2,Bad,neg\n', encoding="utf-8")
    data = read_labelled(path, text_col="review", label_col="stars")
    assert data.texts == ["Good, really\nGood", "Bad"] and data.labels == [["pos"], ["neg"]]


def test_tsv(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("label\ttext\nspam\tWin money, now\nham\tsee you\n", encoding="utf-8")
    data = read_labelled(path)
    assert data.texts == ["Win money, now", "see you"] and data.labels == [["spam"], ["ham"]]


def test_json_lines_with_a_list_of_labels_is_multi_label(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": "y"}]) + "\n")
    data = read_labelled(path)
    assert data.multi_label and data.labels == [["x", "y"], ["y"]]


def test_label_separator_makes_csv_multi_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nwheat prices,grain|trade\noil,crude\n")
    data = read_labelled(path, label_sep="|")
    assert data.multi_label and data.labels == [["grain", "trade"], ["crude"]]


def test_cp1252_file_with_encoding(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\ncaf\u00e9 \u201cnice\u201d,pos\nbad,neg\n".encode("cp1252"))
    with pytest.raises(SeqtrainError, match=r"d.csv line 2: byte 0x.. is not valid utf-8; pass --encoding"):
        read_labelled(path)
    assert read_labelled(path, encoding="cp1252").texts[0] == "caf\u00e9 \u201cnice\u201d"


def test_undecodable_text_file_names_the_file_and_line(tmp_path):
    root = write_folders(tmp_path / "d", {"a": ["fine"], "b": ["fine"]})
    (root / "b" / "bad.txt").write_bytes(b"line one\nline \xff two\n")
    with pytest.raises(SeqtrainError, match=r"b/bad.txt line 2: byte 0xff is not valid utf-8"):
        read_labelled(root)


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("text,label\na,x\nb,y\n", {"text_col": "body"}, "has no column 'body' (columns: text, label); name it with --text-col"),
        ("text,label\na,x\nb,y\n", {"label_col": "tag"}, "has no column 'tag'"),
        ("text,label\na,x\nb,x\n", {}, "has only one label ('x'): a classifier needs at least two"),
        ("text,label\na,x\nb,\n", {}, "line 3: the label is empty"),
        ("text,label\na,x,extra\n", {}, "line 2: 3 fields where the header has 2"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, kwargs, message):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(SeqtrainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_labelled(path, **kwargs)


def test_unknown_format_and_unknown_encoding(tmp_path):
    (tmp_path / "d.xml").write_text("<x/>")
    with pytest.raises(SeqtrainError, match="cannot tell its format"):
        read_labelled(tmp_path / "d.xml")
    (tmp_path / "d.csv").write_text("text,label\na,x\nb,y\n")
    with pytest.raises(SeqtrainError, match="--encoding nope is not an encoding"):
        read_labelled(tmp_path / "d.csv", encoding="nope")


def test_stratified_split_keeps_each_class_share_and_is_seeded():
    keys = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    held, kept = stratified_split(keys, 0.2, seed=3)
    assert len(held) == 20 and sorted(held.tolist() + kept.tolist()) == list(range(100))
    assert torch.bincount(keys[held], minlength=3).tolist() == [16, 3, 1]
    assert torch.equal(held, stratified_split(keys, 0.2, seed=3)[0])
    assert not torch.equal(held, stratified_split(keys, 0.2, seed=4)[0])
