"""Sequence to sequence: pairs data, BLEU, teacher forcing, schedules, decoding, and the CLI on `dates`."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import zipfile
from datetime import date

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from seqtrain.bleu import bleu_from_stats, bleu_stats, corpus_bleu
from seqtrain.config import Seq2SeqModel
from seqtrain.data.pairs import PairBatch, PairLoader, date_pairs, read_pairs
from seqtrain.data.text import tokenize
from seqtrain.errors import SeqtrainError
from seqtrain.models.seq2seq import Seq2Seq
from seqtrain.tasks.base import StepContext
from seqtrain.tasks.seq2seq import Seq2SeqMeta, split_pairs, verify_fra_eng
from seqtrain.training.runs import latest_run
from seqtrain.tasks.schedules import decay_schedule, inverse_sigmoid_k
from seqtrain_cli.main import app

from conftest import make, shared_data

runner = CliRunner()


# ------------------------------------------------------------------ data
def test_read_pairs_from_txt_gz_and_zip(tmp_path):
    text = "Go.\tVa !\tCC-BY 2.0 (France) Attribution\nRun!\tCours\u202f!\n\nWho?\tQui ?\n"
    (tmp_path / "fra.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "fra.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write(text)
    with zipfile.ZipFile(tmp_path / "fra-eng.zip", "w") as zf:
        zf.writestr("_about.txt", "about")
        zf.writestr("fra.txt", text)
    expected = [("Go.", "Va !"), ("Run!", "Cours !"), ("Who?", "Qui ?")]
    for name in ("fra.txt", "fra.txt.gz", "fra-eng.zip"):
        assert read_pairs(tmp_path / name) == expected
    assert read_pairs(tmp_path / "fra.txt", limit=2) == expected[:2]


def test_read_pairs_names_the_bad_line(tmp_path):
    (tmp_path / "bad.tsv").write_text("a\tb\nno tab here\n")
    with pytest.raises(SeqtrainError, match="line 2"):
        read_pairs(tmp_path / "bad.tsv")
    with pytest.raises(SeqtrainError, match="does not exist"):
        read_pairs(tmp_path / "missing.tsv")


def test_dates_are_reproducible_and_correct():
    pairs = date_pairs(500, seed=3)
    assert pairs == date_pairs(500, seed=3) and pairs != date_pairs(500, seed=4)
    for human, iso in pairs:
        day = date.fromisoformat(iso)
        assert str(day.day) in human and (str(day.year) in human)
    assert len({h for h, _ in pairs}) > 450


def test_split_keeps_each_source_in_one_split():
    pairs = [(f"s{i % 40}", f"t{i}") for i in range(200)]
    train, val, test = split_pairs(pairs, 0.1, seed=0)
    sources = [{s for s, _ in part} for part in (train, val, test)]
    assert len(sources[1]) == len(sources[2]) == 4
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2]) and not (sources[1] & sources[2])
    assert len(train) + len(val) + len(test) == 200


def test_loader_gives_every_translation_as_references():
    pairs = [("Go.", "Va !"), ("Go.", "Marche."), ("Hi.", "Salut !")]
    ids = [torch.tensor([4, 5])] * 3
    batch = next(iter(PairLoader(pairs, ids, ids, batch_size=3, shuffle=False)))
    assert sorted(map(sorted, batch.references)) == [["Marche.", "Va !"], ["Marche.", "Va !"], ["Salut !"]]


# ------------------------------------------------------------------ BLEU
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]


def test_bleu_matches_sacrebleu_reference_value():
    # sacreBLEU's README example: corpus_bleu(SYS, REFS).score == 48.530827009929865
    hyps = [tokenize(s) for s in SYS]
    refs = [[tokenize(r[i]) for r in REFS] for i in range(len(SYS))]
    assert corpus_bleu(hyps, refs) == pytest.approx(48.530827009929865, abs=1e-9)
    assert corpus_bleu([tokenize(s) for s in REFS[0]], [[tokenize(s)] for s in REFS[0]]) == pytest.approx(100.0)
    assert corpus_bleu([["x", "y"]], [[["a", "b", "c"]]]) == 0.0


def test_bleu_is_summed_statistics():
    hyps = [tokenize(s) for s in SYS]
    refs = [[tokenize(r[i])] for i in range(3) for r in REFS[:1]]
    stats = [sum(col) for col in zip(*(bleu_stats(h, r) for h, r in zip(hyps, refs)))]
    assert bleu_from_stats(stats) == pytest.approx(corpus_bleu(hyps, refs))
    # brevity penalty: a short but precise hypothesis is punished
    short = corpus_bleu([["the", "dog", "bit", "the"]], [[["the", "dog", "bit", "the", "man", "today"]]])
    assert short == pytest.approx(100 * math.exp(1 - 6 / 4))


def test_bleu_agrees_with_sacrebleu_when_installed():
    sacrebleu = pytest.importorskip("sacrebleu")
    generator = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(12)]
    hyps, refs = [], []
    for _ in range(60):
        hyps.append([words[i] for i in torch.randint(0, 12, (int(torch.randint(1, 15, (1,), generator=generator)),), generator=generator)])
        refs.append([words[i] for i in torch.randint(0, 12, (int(torch.randint(1, 15, (1,), generator=generator)),), generator=generator)])
    expected = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]], tokenize="none").score
    assert corpus_bleu(hyps, [[r] for r in refs]) == pytest.approx(expected, abs=1e-9)


# -------------------------------------------------------------- schedules
def test_schedule_values():
    constant = decay_schedule("constant", 0.5, 100)
    assert constant(0) == constant(99) == 0.5
    linear = decay_schedule("linear", 0.2, 101)
    assert linear(0) == 1.0 and linear(50) == pytest.approx(0.6) and linear(100) == pytest.approx(0.2)
    assert linear(1000) == pytest.approx(0.2)
    sigmoid = decay_schedule("inverse-sigmoid", 0.0, 1000)
    k = inverse_sigmoid_k(1000)
    assert k * math.log(k) == pytest.approx(500, rel=1e-6)
    assert sigmoid(500) == pytest.approx(0.5)
    assert sigmoid(0) == pytest.approx(k / (k + 1)) and sigmoid(0) > 0.98
    assert sigmoid(999) < 0.05
    values = [sigmoid(s) for s in range(0, 1000, 50)]
    assert values == sorted(values, reverse=True)
    assert decay_schedule("inverse-sigmoid", 0.5, 1000)(500) == pytest.approx(0.75)
    with pytest.raises(SeqtrainError, match="--teacher-forcing"):
        decay_schedule("linear", 1.5, 10)


# ------------------------------------------------------------------ model
def tiny_model(attention: str = "dot", cell: str = "lstm", bidirectional: bool = True, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = Seq2SeqModel(cell=cell, embed_dim=16, hidden=24, layers=2, bidirectional=bidirectional, attention=attention)
    return Seq2Seq(20, 15, cfg, bos=2, eos=3).eval()


def toy_batch(seed: int = 1) -> PairBatch:
    generator = torch.Generator().manual_seed(seed)
    source_lengths = torch.tensor([7, 3, 5, 1])
    target_lengths = torch.tensor([4, 6, 2, 5])
    source = torch.randint(4, 20, (4, 7), generator=generator) * (torch.arange(7) < source_lengths[:, None])
    target = torch.randint(4, 15, (4, 6), generator=generator) * (torch.arange(6) < target_lengths[:, None])
    target[torch.arange(4), target_lengths - 1] = 3  # <eos>
    return PairBatch(source, source_lengths, target, target_lengths, [["x"]] * 4)


@pytest.mark.parametrize("attention,cell", [("none", "gru"), ("dot", "lstm"), ("bahdanau", "rnn")])
def test_teacher_forcing_one_is_the_teacher_forced_pass(attention, cell):
    model, batch = tiny_model(attention, cell), toy_batch()
    forced = model(batch.source, batch.source_lengths, batch.target, teacher_forcing=1.0)
    memory = model.encode(batch.source, batch.source_lengths)
    bos = torch.full_like(batch.target[:, :1], 2)
    stepwise = model._scheduled(batch.target, memory, bos, ratio=1.0)  # token by token, always the true token
    assert torch.allclose(forced, stepwise, atol=1e-5)
    # and the task's loss at ratio 1.0 is exactly the teacher-forced cross-entropy over real tokens
    task = toy_task()
    result = task.step(model, batch, None, StepContext(True, scheduled={"teacher_forcing": 1.0}))
    expected = F.cross_entropy(forced.flatten(0, 1), batch.target.flatten(), ignore_index=0)
    assert result.loss.item() == expected.item()
    assert result.count == int(batch.target_lengths.sum())


def test_teacher_forcing_zero_feeds_own_predictions():
    model, batch = tiny_model(), toy_batch()
    free = model(batch.source, batch.source_lengths, batch.target, teacher_forcing=0.0)
    other = batch.target.clone()
    other[other > 3] = 4  # different true tokens, same shape
    assert torch.equal(free, model(batch.source, batch.source_lengths, other, teacher_forcing=0.0))
    greedy = model.greedy(batch.source, batch.source_lengths, max_len=batch.target.shape[1])
    own = model._choosable(free).argmax(-1)  # decoding never picks padding or <bos>
    for row in range(4):  # identical until greedy stops at <eos>
        n = greedy.shape[1]
        stop = next((i + 1 for i, t in enumerate(greedy[row].tolist()) if t == 3), n)
        assert own[row, :stop].tolist() == greedy[row, :stop].tolist()
    forced = model(batch.source, batch.source_lengths, batch.target, teacher_forcing=1.0)
    assert not torch.allclose(free, forced)


def test_teacher_forcing_is_decided_per_token():
    model, batch = tiny_model(), toy_batch()
    torch.manual_seed(0)
    mixed = model(batch.source, batch.source_lengths, batch.target, teacher_forcing=0.5)
    forced = model(batch.source, batch.source_lengths, batch.target, teacher_forcing=1.0)
    free = model(batch.source, batch.source_lengths, batch.target, teacher_forcing=0.0)
    assert not torch.allclose(mixed, forced) and not torch.allclose(mixed, free)


def toy_task():
    """A dates task whose metadata matches toy_batch's vocabulary."""
    task = make("dates")
    vocab = ["<pad>", "<unk>", "<bos>", "<eos>"] + [f"t{i}" for i in range(11)]
    task.meta = Seq2SeqMeta(vocab, vocab, "char", "char", 6, {})
    return task


def test_padding_never_counts_in_the_loss():
    model, batch = tiny_model(), toy_batch()
    task = toy_task()
    ctx = StepContext(True, scheduled={"teacher_forcing": 1.0})
    base = task.step(model, batch, None, ctx)
    wider = PairBatch(
        F.pad(batch.source, (0, 5)), batch.source_lengths, F.pad(batch.target, (0, 4)), batch.target_lengths, batch.references
    )
    padded = task.step(model, wider, None, ctx)
    assert padded.loss.item() == pytest.approx(base.loss.item(), abs=1e-6)
    assert padded.count == base.count
    assert padded.sums["token_accuracy"] == base.sums["token_accuracy"]
    # padding at source positions is never attended to
    assert torch.allclose(model(wider.source, batch.source_lengths, batch.target), model(batch.source, batch.source_lengths, batch.target), atol=1e-5)


@pytest.mark.parametrize("attention", ["none", "dot", "bahdanau"])
def test_beam_one_is_greedy(attention):
    model, batch = tiny_model(attention, seed=5), toy_batch(seed=7)
    greedy = model.greedy(batch.source, batch.source_lengths, max_len=12)
    beams = model.beam_search(batch.source, batch.source_lengths, beam=1, max_len=12)
    for row, tokens in enumerate(beams):
        expected = [t for t in greedy[row].tolist() if t != 0]
        expected = expected[: expected.index(3)] if 3 in expected else expected
        assert tokens == expected


def test_beam_search_finds_a_better_scoring_output():
    """A wider beam never returns a lower length-normalised log-probability than greedy."""
    model, batch = tiny_model("dot", seed=11), toy_batch(seed=3)
    with torch.no_grad():
        model.out.bias[3] += 2.0  # make <eos> likely enough that hypotheses end

    def score(row: int, tokens: list[int]) -> float:
        target = torch.tensor([tokens + [3]])
        logits = model(batch.source[row : row + 1], batch.source_lengths[row : row + 1], target)
        return torch.log_softmax(logits, -1)[0, torch.arange(len(tokens) + 1), target[0]].sum().item() / (len(tokens) + 1)

    greedy = model.beam_search(batch.source, batch.source_lengths, beam=1, max_len=30)
    wide = model.beam_search(batch.source, batch.source_lengths, beam=5, max_len=30)
    ended = [row for row in range(4) if len(greedy[row]) < 30 and len(wide[row]) < 30]
    assert ended
    for row in ended:
        assert score(row, wide[row]) >= score(row, greedy[row]) - 1e-5


# -------------------------------------------------------------- download
def test_fra_eng_download_through_mirror(tmp_path):
    archive = shared_data("fra-eng/fra-eng-2017-09-29.zip")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(archive, mirror / "fra-eng.zip")
    settings = {"mirror": str(mirror), "cache_dir": str(tmp_path / "cache"), "num_pairs": 500}
    data = make("translate", **settings).prepare(quiet=True)
    assert sum(data.meta.pairs.values()) == 500
    assert "va" in data.meta.target_vocab and "go" in data.meta.source_vocab
    reverse = make("translate", **settings, reverse=True).prepare(quiet=True)
    assert "va" in reverse.meta.source_vocab and "go" in reverse.meta.target_vocab


def test_broken_download_is_removed(tmp_path):
    broken = tmp_path / "fra-eng.zip"
    broken.write_bytes(b"<html>moved</html>")
    with pytest.raises(SeqtrainError, match="not a zip"):
        verify_fra_eng(broken)
    assert not broken.exists()
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("deu.txt", "Hi.\tHallo!\n")
    with pytest.raises(SeqtrainError, match="no fra.txt"):
        verify_fra_eng(broken)


# ------------------------------------------------------------------- CLI
def test_pairs_task_needs_data(tmp_path):
    result = runner.invoke(app, ["fit", "--task", "pairs", "--logdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--data FILE" in result.output and "Traceback" not in result.output
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{a} plus {b}\t{a + b}\n" for a in range(20) for b in range(20)))
    fitted = runner.invoke(app, ["fit", "--task", "pairs", "--data", str(tsv), "--epochs", "1", "--hidden", "16",
                                 "--embed-dim", "8", "--logdir", str(tmp_path), "--quiet", "--device", "cpu"])
    assert fitted.exit_code == 0, fitted.output
    report = json.loads((latest_run(tmp_path) / "metrics.json").read_text())
    assert set(report["test"]) == {"loss", "token_accuracy", "exact_match", "bleu"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("one column only\n")
    failed = runner.invoke(app, ["fit", "--task", "pairs", "--data", str(bad), "--logdir", str(tmp_path)])
    assert failed.exit_code == 2 and "line 1" in failed.output


def test_cli_dates_end_to_end(tmp_path):
    logdir = str(tmp_path)
    args = ["fit", "--task", "dates", "--num-pairs", "3000", "--epochs", "6", "--batch-size", "32", "--hidden", "64",
            "--tf-schedule", "linear", "--teacher-forcing", "0.8", "--logdir", logdir, "--quiet", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = latest_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["exact_match"] > 0.9, metrics
    assert metrics["test"]["bleu"] > 85
    assert (run / "best.pt").is_file() and list(run.glob("events.out.tfevents.*"))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    ratios = [e.value for e in events.Scalars("train/teacher_forcing")]
    assert ratios[0] == 1.0 and ratios[-1] == pytest.approx(0.8) and ratios == sorted(ratios, reverse=True)

    evaluated = runner.invoke(app, ["evaluate", "--logdir", logdir, "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "bleu" in evaluated.output and "exact_match" in evaluated.output and "token_accuracy" in evaluated.output

    translated = runner.invoke(app, ["translate", " 3 may  1998", "july 14, 2021", "--logdir", logdir, "--device", "cpu"])
    assert translated.exit_code == 0, translated.output
    lines = translated.output.split()
    assert lines[0] == "1998-05-03" and lines[1] == "2021-07-14"
    beam = runner.invoke(app, ["translate", str(run), "3 may 1998", "--beam", "3", "--logdir", logdir, "--device", "cpu"])
    assert beam.exit_code == 0 and beam.output.strip() == "1998-05-03"

    generated = runner.invoke(app, ["generate", str(run), "--logdir", logdir])
    assert generated.exit_code == 2 and f"seqtrain translate {run}" in generated.output

    wrong = runner.invoke(app, ["translate", "--logdir", str(tmp_path / "none"), "hello"])
    assert wrong.exit_code == 2 and "seqtrain fit" in wrong.output
