"""Own-data layouts beyond class folders and headed files: `label text` lines, one file per class, given
validation and test files, and stratified K-fold cross-validation."""

import json
import random
from pathlib import Path

import pytest
import torch

from conftest import NEUTRAL, shared_data
from seqtrain.crossval import summary_rows
from seqtrain.data.labelled import read_labelled
from seqtrain.errors import SeqtrainError
from seqtrain.tasks.classification import stratified_folds
from seqtrain.training.runs import latest_run
from test_text_task import CUES, SMALL, invoke


def lines(n: int, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        label = rng.choice(sorted(CUES))
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(5, 12))]
        words.insert(rng.randrange(len(words)), rng.choice(CUES[label]))
        yield label, " ".join(words)


def test_label_text_lines_keep_the_label_and_the_coarse_part(tmp_path):
    path = tmp_path / "questions.label"
    path.write_bytes("NUM:dist How far is it ?\nHUM:desc Who was Galileo ?\n\nLOC:city Where is Montr\xe9al ?\n".encode("latin-1"))
    fine = read_labelled(path, encoding="latin-1")
    assert fine.labels == [["NUM:dist"], ["HUM:desc"], ["LOC:city"]] and fine.texts[2] == "Where is Montréal ?"
    assert read_labelled(path, encoding="latin-1", coarse_sep=":").labels == [["NUM"], ["HUM"], ["LOC"]]
    with pytest.raises(SeqtrainError, match="line 4: byte 0xe9 is not valid utf-8"):
        read_labelled(path)
    other = tmp_path / "stsa.binary.train"
    other.write_text("1 a stirring , funny film\n0 apparently reassembled\n")
    with pytest.raises(SeqtrainError, match="--format lines"):
        read_labelled(other)
    assert read_labelled(other, format="lines").labels == [["1"], ["0"]]
    other.write_text("1 fine\n0\n")
    with pytest.raises(SeqtrainError, match="line 2: a label with no text"):
        read_labelled(other, format="lines")


def test_one_file_per_class_takes_the_part_of_the_name_the_files_do_not_share(tmp_path):
    polarity = tmp_path / "rt-polaritydata"
    polarity.mkdir()
    (polarity / "rt-polarity.pos").write_text("a gem of a film\nwarm and funny\n")
    (polarity / "rt-polarity.neg").write_text("dull\n\n")
    out = read_labelled(polarity)
    assert sorted(zip(out.texts, (x[0] for x in out.labels))) == [("a gem of a film", "pos"), ("dull", "neg"), ("warm and funny", "pos")]
    subjectivity = tmp_path / "subj"
    subjectivity.mkdir()
    (subjectivity / "quote.tok.gt9.5000").write_text("i think so\n")
    (subjectivity / "plot.tok.gt9.5000").write_text("he walks home\n")
    assert sorted(x[0] for x in read_labelled(subjectivity, format="files").labels) == ["plot", "quote"]


def test_stratified_folds_spread_every_class_evenly():
    keys = torch.tensor([0] * 10 + [1] * 5 + [2] * 3)
    fold = stratified_folds(keys, 5, seed=1)
    assert torch.equal(fold, stratified_folds(keys, 5, seed=1))
    for k in range(3):
        counts = torch.bincount(fold[keys == k], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert sorted(torch.bincount(fold).tolist()) == [3, 3, 4, 4, 4]


def test_summary_rows_give_mean_and_sample_std():
    rows = summary_rows([{"accuracy": 0.8}, {"accuracy": 0.9}, {"accuracy": 1.0}])
    assert rows["mean"]["accuracy"] == pytest.approx(0.9) and rows["std"]["accuracy"] == pytest.approx(0.1)
    assert list(rows) == ["mean", "std", "fold 0", "fold 1", "fold 2"]


def test_val_and_test_files_are_the_splits(tmp_path):
    for name, n, seed in (("train", 240, 0), ("dev", 30, 1), ("test", 50, 2)):
        (tmp_path / f"{name}.label").write_text("".join(f"{label} {text}\n" for label, text in lines(n, seed)))
    logdir = tmp_path / "runs"
    result = invoke("fit", "--task", "text", "--data", tmp_path / "train.label", "--val-data", tmp_path / "dev.label",
                    "--test-data", tmp_path / "test.label", "--epochs", "1", "--max-steps", "2", "--logdir", logdir, *SMALL)
    assert result.exit_code == 0, result.output
    assert "texts: train 240, val 30, test 50" in result.output
    result = invoke("fit", "--task", "text", "--data", tmp_path / "train.label", "--test-data", tmp_path / "nope.label",
                    "--epochs", "1", "--logdir", logdir, *SMALL)
    assert result.exit_code == 2 and "--test-data" in result.output and "does not exist" in result.output


def test_val_and_test_csv_files(tmp_path):
    for name, n, seed in (("train", 200, 0), ("test", 40, 2)):
        (tmp_path / f"{name}.csv").write_text("label,text\n" + "".join(f"{label},{text}\n" for label, text in lines(n, seed)))
    result = invoke("fit", "--task", "text", "--data", tmp_path / "train.csv", "--test-data", tmp_path / "test.csv",
                    "--epochs", "1", "--max-steps", "1", "--logdir", tmp_path / "runs", *SMALL)
    assert result.exit_code == 0, result.output
    assert "texts: train 180, val 20, test 40" in result.output  # --val-split 0.1 of train; the test file whole


def test_folds_run_every_fold_and_report_mean_and_std(tmp_path):
    path = tmp_path / "news.label"
    path.write_text("".join(f"{label} {text}\n" for label, text in lines(90, 0)))
    logdir = tmp_path / "runs"
    result = invoke("fit", "--task", "text", "--data", path, "--folds", "3", "--epochs", "1", "--max-steps", "2",
                    "--logdir", logdir, *SMALL)
    assert result.exit_code == 0, result.output
    assert "3-fold cross-validation" in result.output and "mean" in result.output and "std" in result.output
    summary = json.loads(next(logdir.glob("*-folds.json")).read_text())
    assert len(summary["runs"]) == 3 and set(summary["test"]) == {"mean", "std", "fold 0", "fold 1", "fold 2"}
    tests = [json.loads((p / "metrics.json").read_text())["test"] for p in map(Path, summary["runs"])]
    assert summary["test"]["mean"]["accuracy"] == pytest.approx(sum(t["accuracy"] for t in tests) / 3)
    assert result.output.count("texts: train") == 3 and "test 30" in result.output


def test_official_trec_and_sst2_files_read_as_distributed():
    trec = read_labelled(shared_data("sentences/trec/TREC_10.label"), encoding="latin-1", coarse_sep=":")
    assert len(trec.texts) == 500 and sorted({x[0] for x in trec.labels}) == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    sst = read_labelled(shared_data("sentences/sst2/stsa.binary.dev"), format="lines")
    assert len(sst.texts) == 872 and {x[0] for x in sst.labels} == {"0", "1"}
