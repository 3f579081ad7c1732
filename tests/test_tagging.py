"""The tagging task end to end: learning a synthetic pattern, the CLI (fit, evaluate, tag, summary, resume), errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqtrain.errors import SeqtrainError
from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

runner = CliRunner()
SMALL = ["--embed-dim", "16", "--hidden", "24", "--char-dim", "8", "--char-hidden", "8", "--batch-size", "16",
         "--threads", "1", "--dropout", "0.1", "--lr", "0.01"]
NAMES = ["Jim", "Anna", "Peter", "Maria", "Tom", "Lena"]
PLACES = ["Paris", "Berlin", "Rome", "Madrid"]
FILLER = "the a bought saw in of shares and went to with from met .".split()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """Filler words with names (PER, one or two tokens) and places (LOC) inserted, tagged IOB1."""
    tokens, tags = [], []
    for _ in range(rng.randint(3, 8)):
        roll = rng.random()
        if roll < 0.2:
            size = rng.randint(1, 2)
            tokens += rng.sample(NAMES, size)
            tags += ["I-PER"] * size
        elif roll < 0.3:
            tokens.append(rng.choice(PLACES))
            tags.append("I-LOC")
        else:
            tokens.append(rng.choice(FILLER))
            tags.append("O")
    return tokens, tags


def write_conll(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- O O", ""]
    for _ in range(n):
        for token, tag in zip(*sentence(rng)):
            lines.append(f"{token} NN I-NP {tag}")
        lines.append("")
    path.write_text("\n".join(lines))


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ner")
    data = folder / "data"
    data.mkdir()
    for name, n, seed in (("eng.train", 300, 0), ("eng.testa", 60, 1), ("eng.testb", 60, 2)):
        write_conll(data / name, n, seed)
    logdir = folder / "runs"
    result = invoke("fit", "--task", "conll2003", "--data", data, "--logdir", logdir, "--epochs", "6", *SMALL)
    assert result.exit_code == 0, result.output
    return latest_run(logdir), data, logdir


def test_tagger_learns_the_pattern_and_reports_per_type_scores(ner_run):
    run, _, _ = ner_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["f1"] > 0.9 and metrics["best_val"]["f1"] > 0.9
    assert set(metrics["extra"]["test"]) >= {"most-frequent-tag", "type PER", "type LOC"}
    assert metrics["extra"]["test"]["type PER"]["support"] > 10
    assert metrics["test"]["f1"] > metrics["extra"]["test"]["most-frequent-tag"]["f1"]


def test_tag_command_writes_the_inputs_scheme(ner_run):
    run, _, logdir = ner_run
    result = invoke("tag", run, "the Jim Anna went to Paris", "--format", "conll")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.strip().splitlines()]
    assert [tag for _, tag in lines] == ["O", "I-PER", "I-PER", "O", "O", "I-LOC"]  # IOB1, as the training files
    spans = invoke("tag", run, "Tom met Lena in Rome.", "--format", "spans").output.strip().splitlines()
    assert spans == ["PER\t0\t0\tTom", "PER\t2\t2\tLena", "LOC\t4\t4\tRome"]
    piped = runner.invoke(app, ["tag", str(run), "--tokens", "--format", "json"], input="Maria\nsaw\nBerlin\n\nthe\n")
    rows = [json.loads(line) for line in piped.output.strip().splitlines()]
    assert rows[0]["spans"] == [{"type": "PER", "start": 0, "end": 0, "text": "Maria"}, {"type": "LOC", "start": 2, "end": 2, "text": "Berlin"}]
    assert rows[1]["tags"] == ["O"]


def test_evaluate_summary_and_config_rerun(ner_run):
    run, data, logdir = ner_run
    result = invoke("evaluate", run)
    assert result.exit_code == 0 and "type PER" in result.output and "most-frequent" in result.output
    assert invoke("summary", run).exit_code == 0
    again = invoke("fit", "--config", run / "config.toml", "--epochs", "1", "--logdir", logdir, "--max-steps", "2")
    assert again.exit_code == 0, again.output
    resumed = invoke("fit", "--resume", run, "--epochs", "7")
    assert resumed.exit_code == 0, resumed.output


def test_plain_tags_pick_by_accuracy(tmp_path):
    rng = random.Random(3)
    path = tmp_path / "pos.jsonl"
    rows = []
    for _ in range(120):
        tokens, tags = sentence(rng)
        rows.append(json.dumps({"tokens": tokens, "tags": ["NOUN" if t != "O" else "X" for t in tags]}))
    path.write_text("\n".join(rows))
    result = invoke("fit", "--task", "tag", "--data", path, "--logdir", tmp_path / "runs", "--epochs", "2", "--no-crf", *SMALL)
    assert result.exit_code == 0, result.output
    metrics = json.loads((latest_run(tmp_path / "runs") / "metrics.json").read_text())
    assert "f1" not in metrics["test"] and metrics["test"]["accuracy"] > 0.5
    out = invoke("tag", latest_run(tmp_path / "runs"), "Anna saw the Paris").output.split()
    assert out[1] in ("NOUN", "X")


def test_bad_data_is_one_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU I-ORG\nrejects\n")
    result = runner.invoke(app, ["fit", "--task", "tag", "--data", str(path), "--logdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "bad.txt:2: 1 columns where the file's first line has 2" in result.output
    assert "Traceback" not in result.output


def test_pos_preset_downloads_ewt_with_checksums_from_a_mirror(tmp_path):
    import gzip
    import shutil

    from conftest import shared_data

    source = shared_data("ud-english-ewt")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("train", "dev", "test"):
        with gzip.open(source / f"en_ewt-ud-{name}.conllu.gz", "rb") as packed, open(mirror / f"en_ewt-ud-{name}.conllu", "wb") as out:
            shutil.copyfileobj(packed, out)
    from seqtrain.tasks import build_config, make_task

    task = make_task(build_config("pos", {"mirror": str(mirror), "cache_dir": str(tmp_path / "cache")}))
    tagged = task.load_tagged(quiet=True)
    sizes = {split: sum(len(s.tokens) for s in sentences) for split, sentences in tagged.splits.items()}
    assert sizes == {"train": 204577, "val": 25147, "test": 25094}
    assert {t for s in tagged.splits["test"] for t in s.tags} == set(
        "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
    )
    (mirror / "en_ewt-ud-dev.conllu").write_text("1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n")
    fresh = make_task(build_config("pos", {"mirror": str(mirror), "cache_dir": str(tmp_path / "other")}))
    with pytest.raises(SeqtrainError, match="checksum mismatch"):
        fresh.load_tagged(quiet=True)


def test_bench_tagging_times_both_variants(ner_run):
    from test_bench_scripts import load_script

    _, data, _ = ner_run
    bench = load_script("bench_tagging")
    task, model, optimizer, batches = bench.variant(str(data), False, 1)
    assert bench.train_rate(task, model, optimizer, batches) > 0 and bench.tag_rate(model, batches) > 0


def test_pretrained_embeddings_are_looked_up_case_insensitively(ner_run, tmp_path):
    _, data, _ = ner_run
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("paris 0.1 0.2 0.3 0.4\nJim 0.5 0.6 0.7 0.8\n")
    result = invoke("fit", "--task", "conll2003", "--data", data, "--logdir", tmp_path / "runs", "--embeddings", vectors,
                    "--epochs", "1", "--max-steps", "2", *SMALL[2:])
    assert result.exit_code == 0, result.output
    assert "pretrained embeddings cover" in result.output
    from seqtrain.training.checkpoint import load_checkpoint

    blob = load_checkpoint(latest_run(tmp_path / "runs") / "best.pt")
    vocab = blob["meta"]["vocab"]
    assert blob["config"]["model"]["embed_dim"] == 4
    assert blob["model"]["embedding.weight"][vocab.index("jim")].shape == (4,)


def test_presets_decay_the_learning_rate_to_zero(ner_run):
    """At a constant rate dev F1 rose and fell by a point an epoch; the presets decay it over the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(ner_run[0]))
    events.Reload()
    rates = [point.value for point in events.Scalars("train/lr")]
    assert rates[0] == pytest.approx(0.01, rel=0.05) and rates[-1] < 0.001


def test_two_gloo_processes_tag_as_one(ner_run, tmp_path):
    """torchrun on CPU: two ranks train the same tagger as one process does, and score the same spans."""
    import subprocess
    import sys

    from test_distributed import LOOPBACK_ENV, ROOT

    from seqtrain.training.checkpoint import load_checkpoint

    _, data, _ = ner_run
    common = ["--task", "conll2003", "--data", data, "--epochs", "2", "--dropout", "0", "--unk-replace", "0",
              "--device", "cpu", *SMALL[:-4], "--lr", "0.01", "-q"]  # SMALL without its dropout
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "seqtrain", "fit"]
    done = subprocess.run(launch + [str(a) for a in common] + ["--logdir", str(tmp_path / "ddp")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=LOOPBACK_ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    alone = invoke("fit", *common, "--logdir", tmp_path / "one")
    assert alone.exit_code == 0, alone.output
    runs = {name: latest_run(tmp_path / name) for name in ("ddp", "one")}
    metrics = {name: json.loads((run / "metrics.json").read_text()) for name, run in runs.items()}
    assert metrics["one"]["test"]["f1"] > 0.3
    assert metrics["ddp"]["test"] == pytest.approx(metrics["one"]["test"], abs=1e-4)
    assert metrics["ddp"]["extra"]["test"]["type PER"] == pytest.approx(metrics["one"]["extra"]["test"]["type PER"], abs=1e-4)
    weights = {name: load_checkpoint(run / "last.pt")["model"] for name, run in runs.items()}
    for key, value in weights["one"].items():
        torch.testing.assert_close(weights["ddp"][key], value, rtol=0, atol=1e-4)
