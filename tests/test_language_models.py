"""Language models: streams and BPTT chunks, carried state, generation, and the CLI end to end."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from seqtrain.config import LanguageModelModel
from seqtrain.data.streams import StreamLoader, batchify, read_text, split_stream
from seqtrain.errors import SeqtrainError
from seqtrain.generation import TokenSampler, check_sampling, sample
from seqtrain.models import language_model
from seqtrain.models.language_model import LanguageModel, adaptive_cutoffs
from seqtrain.models.recurrent import cell_stepper
from seqtrain.tasks.base import StepContext
from seqtrain.tasks.language_modeling import SHAKESPEARE_URL, CharLMTask
from seqtrain.training.device import detach_state
from seqtrain.training.runs import latest_run
from seqtrain.training.trainer import Trainer
from seqtrain_cli.main import app

from conftest import make, shared_data

runner = CliRunner()
TINY = ["--embed-dim", "16", "--hidden", "64", "--batch-size", "16", "--bptt", "32", "--lr", "0.01"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def small_text(n_lines: int = 2000, seed: int = 0) -> str:
    """Sentences from a tiny grammar: predictable enough to learn in seconds, not a copy of one line."""
    rng = random.Random(seed)
    subjects, verbs, objects = ["the cat", "a dog", "my friend", "the king"], ["sees", "likes", "finds"], ["the mat", "a bone", "the sea"]
    return "".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}.\n" for _ in range(n_lines))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(small_text())
    return path


# ----------------------------------------------------------------- streams
def test_batchify_lays_the_stream_out_in_contiguous_columns():
    data = batchify(torch.arange(103), 4)
    assert data.shape == (4, 25)
    assert torch.equal(data[1], torch.arange(25, 50))  # each column a contiguous stretch; the tail of 3 dropped


def test_chunks_see_every_token_once_with_targets_shifted_by_one():
    loader = StreamLoader(torch.arange(103), batch_size=4, bptt=5)
    chunks = list(loader)
    assert len(chunks) == len(loader) == 5  # 24 targets per column in chunks of 5: 5+5+5+5+4
    inputs = torch.cat([x for x, _ in chunks], dim=1)
    targets = torch.cat([y for _, y in chunks], dim=1)
    assert torch.equal(inputs, loader.data[:, :-1]) and torch.equal(targets, loader.data[:, 1:])
    assert torch.equal(targets, inputs + 1)  # on arange, "next token" is +1
    assert targets.numel() == loader.tokens == 4 * 24
    assert list(loader)[0][0].shape == (4, 5)  # re-iterable, same chunks again


def test_contiguous_90_5_5_split():
    train, val, test = split_stream(list(range(1000)))
    assert (len(train), len(val), len(test)) == (900, 50, 50)
    assert list(train) + list(val) + list(test) == list(range(1000))


def test_too_short_for_the_batch_is_one_clear_error():
    with pytest.raises(SeqtrainError, match="--batch-size"):
        batchify(torch.arange(10), 8)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"  \n\n", "empty"), (b"abc\x00\x01def", "binary"), (b"caf\xe9 au lait", "not valid UTF-8")],
)
def test_bad_text_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(SeqtrainError, match=message):
        read_text(path)


def test_a_folder_of_text_files_is_read_in_name_order(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    assert read_text(tmp_path) == "first\nsecond"


# --------------------------------------------------------- truncated BPTT
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_state_is_carried_but_gradient_stops_at_the_chunk_boundary(cell):
    torch.manual_seed(0)
    task = make("charlm", text="unused", cell=cell, embed_dim=8, hidden=16, layers=2, dropout=0.2)
    model = LanguageModel(12, task.config.model)
    first, second = list(StreamLoader(torch.randint(0, 12, (200,)), batch_size=4, bptt=10))[:2]
    ctx = StepContext(training=True)

    one = task.step(model, first, None, ctx)
    carried = detach_state(one.state)
    raw = one.state[0] if cell == "lstm" else one.state
    kept = carried[0] if cell == "lstm" else carried
    assert torch.equal(kept, raw) and raw.requires_grad and not kept.requires_grad
    assert raw.shape == (2, 4, 16)  # [layers, columns, hidden]

    model.eval()  # no dropout, so the two second-chunk losses differ only by the state
    with_state = task.step(model, second, carried, ctx)
    cold = task.step(model, second, None, ctx)
    assert not torch.allclose(with_state.loss, cold.loss)  # the state does reach the next chunk
    (grad,) = torch.autograd.grad(with_state.loss, raw, allow_unused=True)
    assert grad is None  # ... but no gradient flows back past the boundary
    undetached = task.step(model, second, one.state, ctx)
    (grad,) = torch.autograd.grad(undetached.loss, raw)
    assert grad.abs().sum() > 0  # (without the detach it would)


def test_trainer_resets_state_each_pass_and_carries_it_detached(text_file, tmp_path):
    seen: list[tuple[bool, bool]] = []

    class Recording(CharLMTask):
        def step(self, model, batch, state, ctx):
            seen.append((state is None, state is not None and state[0].requires_grad))
            return super().step(model, batch, state, ctx)

    config = make("charlm", text=str(text_file), logdir=str(tmp_path), epochs=2, hidden=16, embed_dim=8,
                  batch_size=8, bptt=50).config
    data = Recording(config).prepare(quiet=True)
    passes = [len(data.train), len(data.val), len(data.train), len(data.val), len(data.test)]
    Trainer(Recording(config)).fit()
    assert not any(grad for _, grad in seen)
    starts = [i for i, (fresh, _) in enumerate(seen) if fresh]
    assert starts == [sum(passes[:i]) for i in range(len(passes))]  # None exactly at the start of each pass


# -------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def lm() -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(20, LanguageModelModel(cell="lstm", embed_dim=8, hidden=16, layers=2)).eval()


def test_generation_is_repeatable_under_a_seed(lm):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    unseeded = list(sample(lm, [1, 2, 3], 50, temperature=1.0))
    assert torch.equal(torch.get_rng_state(), before)  # sampling never disturbs the training RNG
    assert unseeded != list(sample(lm, [1, 2, 3], 50, temperature=1.0))  # no seed: a fresh one each time
    a = list(sample(lm, [1, 2, 3], 50, temperature=1.0, seed=7))
    assert a == list(sample(lm, [1, 2, 3], 50, temperature=1.0, seed=7))
    assert a != list(sample(lm, [1, 2, 3], 50, temperature=1.0, seed=8))
    assert len(a) == 50 and all(0 <= t < 20 for t in a)


def test_each_new_token_costs_one_step_with_the_state_carried(lm):
    widths, steps = [], []
    hook = lm.rnn.register_forward_hook(lambda module, args, out: widths.append(args[0].shape[1]))
    original = lm.stepper

    def counting_stepper():
        step = original()
        return lambda token, state: steps.append(token.shape) or step(token, state)

    lm.stepper = counting_stepper
    try:
        tokens = list(sample(lm, [4, 5, 6, 7], 30, temperature=0.8, seed=0))
    finally:
        hook.remove()
        del lm.stepper
    assert widths == [4]  # the prime once through the sequence kernel ...
    assert steps == [(1,)] * 29  # ... then one single step per token (the last one is never fed)
    # carrying state is exact: the same as re-reading the whole prefix
    with torch.no_grad():
        full, _ = lm(torch.tensor([[4, 5, 6, 7] + tokens]))
        step_logits, state = lm(torch.tensor([[4, 5, 6, 7]]))
        for token in tokens[:5]:
            step_logits, state = lm.step(torch.tensor([token]), state)
    assert torch.allclose(step_logits[0], full[0, 8], atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("kernel", ["torch", "fused"])
@pytest.mark.parametrize("table", [True, False], ids=["projection-table", "embedding-rows"])
def test_one_step_is_the_sequence_kernel_on_one_step(cell, kernel, table, monkeypatch):
    if not table:  # a vocabulary too large for the table of first-layer input projections
        monkeypatch.setattr(language_model, "TABLE_NUMBERS", 0)
    torch.manual_seed(0)
    model = LanguageModel(20, LanguageModelModel(cell=cell, embed_dim=8, hidden=16, layers=2, kernel=kernel)).eval()
    with torch.no_grad():
        _, state = model(torch.tensor([[1, 2, 3], [4, 5, 6]]))
        expected, expected_state = model(torch.tensor([[7], [8]]), state)
        scores, new_state = model.step(torch.tensor([7, 8]), state)
    assert torch.allclose(scores, expected[:, 0], atol=1e-6)
    for a, b in zip(detach_state(new_state) if cell == "lstm" else [new_state], expected_state if cell == "lstm" else [expected_state]):
        assert torch.allclose(a, b, atol=1e-6)
    with torch.no_grad():  # no state yet: through the module, as forward
        assert torch.allclose(model.step(torch.tensor([7, 8]), None)[0], model(torch.tensor([[7], [8]]))[0][:, 0], atol=1e-6)


def test_loop_layers_step_through_the_module_itself():
    torch.manual_seed(0)
    model = LanguageModel(20, LanguageModelModel(embed_dim=8, hidden=16, layer_norm=True)).eval()
    with torch.no_grad():
        _, state = model(torch.tensor([[1, 2, 3]]))
        assert cell_stepper(model.rnn) is None
        expected, _ = model(torch.tensor([[4]]), state)
        scores, _ = model.step(torch.tensor([4]), state)
    assert torch.allclose(scores, expected[:, 0])


# ---------------------------------------------------------- adaptive softmax
def adaptive_lm(vocab: int = 50, cutoffs: str = "10,30") -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(vocab, LanguageModelModel(embed_dim=8, hidden=64, layers=2, output="adaptive", cutoffs=cutoffs))


def test_adaptive_softmax_gives_exact_normalised_log_probabilities():
    model = adaptive_lm().eval()
    assert model.adaptive and list(model.decoder.cutoffs) == [10, 30, 50]
    tokens = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scores, _ = model(tokens)
        loss, _ = model.loss(tokens, targets)
    assert scores.shape == (3, 7, 50)
    assert torch.allclose(scores.exp().sum(-1), torch.ones(3, 7), atol=1e-5)  # a distribution over every word
    # the training loss is the exact negative log-likelihood, not a sampled estimate
    assert torch.allclose(loss, -scores.gather(-1, targets[..., None]).mean(), atol=1e-5)


def test_adaptive_softmax_learns_words_in_every_cluster():
    model = adaptive_lm()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    pattern = [1, 12, 2, 40, 3, 31, 4, 25]  # each word names the next: head words and words of both tail clusters
    stream = torch.tensor(pattern * 8).view(4, -1)
    losses = []
    for _ in range(120):
        loss, _ = model.loss(stream[:, :-1], stream[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10] + losses[-1:]


def test_cutoffs_auto_fit_the_vocabulary_and_bad_ones_are_refused():
    assert adaptive_cutoffs("auto", 33278) == [2000, 10000]
    assert adaptive_cutoffs("auto", 5000) == [2000]
    assert adaptive_cutoffs("auto", 2001) == []  # too small for a cluster: the full softmax
    assert not adaptive_lm(50, "auto").adaptive
    for spec in ("10,5", "abc", "0,10", "49", ""):
        with pytest.raises(SeqtrainError, match="--cutoffs"):
            adaptive_cutoffs(spec, 50)
    with pytest.raises(SeqtrainError, match="--output full"):
        LanguageModel(50, LanguageModelModel(embed_dim=16, hidden=16, output="adaptive", cutoffs="10", tie_weights=True))


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_temperature_must_be_positive(lm, temperature):
    with pytest.raises(SeqtrainError, match="--temperature must be > 0"):
        list(sample(lm, [1], 5, temperature=temperature))


def test_tiny_temperature_and_top_1_are_greedy(lm):
    greedy = []
    with torch.no_grad():
        logits, state = lm(torch.tensor([[3]]))
        for _ in range(20):
            greedy.append(int(logits[0, -1].argmax()))
            logits, state = lm(torch.tensor([[greedy[-1]]]), state)
    assert list(sample(lm, [3], 20, temperature=1e-6, seed=1)) == greedy
    assert list(sample(lm, [3], 20, temperature=1e-45, seed=1)) == greedy  # logits / T overflows: still greedy
    assert list(sample(lm, [3], 20, temperature=5.0, top_k=1, seed=2)) == greedy
    assert len(set(sample(lm, [3], 200, temperature=100.0, seed=3))) > 10  # very hot: close to uniform, still finite


def multinomial_token(scores, temperature, top_k, generator) -> int:
    """The reference: torch.multinomial on the softmax of the scaled, cut scores; greedy where that softmax is NaN."""
    scaled = scores / temperature
    if top_k is not None:
        scaled = scaled.masked_fill(scaled < torch.topk(scaled, top_k).values[-1], float("-inf"))
    try:
        return int(torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator))
    except RuntimeError:  # multinomial refuses NaN probabilities before drawing anything
        return int(scores.argmax())


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.5, None), (0.8, 5), (2.0, 1), (1e-45, None)])
def test_token_sampler_draws_what_multinomial_draws(temperature, top_k):
    torch.manual_seed(0)
    vocab = 20
    scores = torch.randn(2000, vocab) * 3  # 2,000 tokens: the sampler refills its exponentials more than once
    scores[::7] *= 1e37  # some overflow when scaled (the softmax is NaN): greedy, and no draw used
    draw = TokenSampler(vocab, temperature, top_k, torch.Generator().manual_seed(5))
    reference = torch.Generator().manual_seed(5)
    got = [draw(row) for row in scores]
    assert 2000 // len(draw.rows) >= 2
    assert got == [multinomial_token(row, temperature, top_k, reference) for row in scores]
    if top_k == 1 or temperature < 1e-30:
        assert got == scores.argmax(1).tolist()


def test_top_k_outside_the_vocabulary_is_refused():
    for k in (0, 21):
        with pytest.raises(SeqtrainError, match="--top-k"):
            check_sampling(1.0, k, 20)


def test_tied_weights_share_one_matrix():
    model = LanguageModel(30, LanguageModelModel(embed_dim=16, hidden=16, tie_weights=True))
    assert model.decoder.weight is model.embedding.weight
    with pytest.raises(SeqtrainError, match="--tie-weights needs --embed-dim equal to --hidden"):
        LanguageModel(30, LanguageModelModel(embed_dim=8, hidden=16, tie_weights=True))


# ----------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def char_run(text_file, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs")
    result = invoke("fit", "--task", "charlm", "--text", text_file, "--logdir", logdir, "--epochs", "3", *TINY)
    assert result.exit_code == 0, result.output
    return logdir


def test_char_lm_learns_far_below_the_uniform_baseline(char_run):
    run = latest_run(char_run)
    assert {"best.pt", "last.pt", "config.toml", "metrics.json"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    uniform = metrics["extra"]["all"]["uniform"]["loss"]
    assert uniform == pytest.approx(math.log(len(set(small_text()))))
    assert metrics["best_val"]["loss"] < 0.4 * uniform, metrics
    assert metrics["test"]["loss"] < 0.4 * uniform, metrics
    assert metrics["best_val"]["bpc"] == pytest.approx(metrics["best_val"]["loss"] / math.log(2))
    assert metrics["best_val"]["ppl"] == pytest.approx(math.exp(metrics["best_val"]["loss"]))


def test_each_epoch_logs_lm_scalars_and_samples_at_two_temperatures(char_run):
    events = EventAccumulator(str(latest_run(char_run)), size_guidance={"tensors": 0})
    events.Reload()
    assert {"epoch/val/loss", "epoch/val/bpc", "epoch/val/ppl", "train/loss"} <= set(events.Tags()["scalars"])
    for temperature in ("0.5", "1.0"):
        samples = events.Tensors(f"sample/temperature_{temperature}/text_summary")
        assert [s.step for s in samples] == [1, 2, 3]


def test_generate_streams_repeatable_text_from_the_latest_lm_run(char_run):
    args = ("generate", "--logdir", char_run, "--prime", "the ", "--length", "200", "--temperature", "0.5", "--seed", "3")
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    assert first.output.startswith("the ") and len(first.output) == len("the ") + 200 + 1
    words = first.output.split()
    known = set(small_text().split())
    assert sum(w in known for w in words) > 0.7 * len(words)  # mostly real words of the corpus, at T=0.5


@pytest.mark.parametrize(
    "extra, message",
    [(["--temperature", "0"], "--temperature must be > 0"), (["--top-k", "0"], "--top-k"), (["--prime", "Ω"], "never saw")],
)
def test_generate_refuses_bad_arguments_in_one_line(char_run, extra, message):
    result = invoke("generate", "--logdir", char_run, *extra)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_generate_without_any_lm_run_says_what_to_do(tmp_path):
    result = invoke("generate", "--logdir", tmp_path)
    assert result.exit_code == 2 and "no language-model run" in result.output


def test_charlm_without_text_or_with_binary_text_is_one_error(tmp_path):
    result = invoke("fit", "--task", "charlm", "--logdir", tmp_path)
    assert result.exit_code == 2 and "needs --text" in result.output
    binary = tmp_path / "blob.txt"
    binary.write_bytes(bytes(range(256)))
    result = invoke("fit", "--task", "charlm", "--text", binary, "--logdir", tmp_path)
    assert result.exit_code == 2 and "binary" in result.output


@pytest.mark.parametrize("output", [["--tie-weights", "--output", "full"], ["--output", "adaptive", "--cutoffs", "4,10"]])
def test_word_lm_learns_and_generates_words(text_file, tmp_path, output):
    result = invoke("fit", "--task", "wordlm", "--text", text_file, "--logdir", tmp_path, "--epochs", "3",
                    "--embed-dim", "32", "--hidden", "32", *output, "--batch-size", "8", "--bptt", "20", "--lr", "0.01")
    assert result.exit_code == 0, result.output
    run = latest_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_val"]["ppl"] < 0.5 * metrics["extra"]["all"]["uniform"]["ppl"], metrics
    weights = torch.load(run / "best.pt", weights_only=True)["model"]
    assert ("decoder.head.weight" in weights) == ("adaptive" in output)
    out = invoke("generate", "--logdir", tmp_path, "--prime", "the king", "--length", "30", "--seed", "0")
    assert out.exit_code == 0, out.output
    vocabulary = set(small_text().split()) | {"<eos>", "<unk>"}
    assert set(out.output.split()) <= vocabulary
    assert len(out.output.split()) + out.output.count("\n") - 1 == 2 + 30  # <eos> prints as a line break
    assert out.output.startswith("the king ")
    scored = invoke("evaluate", run, "--split", "test")  # the checkpoint round-trips: the same test score
    assert scored.exit_code == 0, scored.output
    assert f"{metrics['test']['ppl']:.4f}" in scored.output


# ------------------------------------------------------------- real data
def test_shakespeare_downloads_through_a_verified_mirror(tmp_path):
    mirror = shared_data("tinyshakespeare/input.txt").parent
    data = make("shakespeare", mirror=str(mirror), cache_dir=str(tmp_path)).prepare(quiet=True)
    assert len(data.meta.vocab) == 65
    assert data.train.tokens + data.val.tokens + data.test.tokens > 1_110_000
    assert SHAKESPEARE_URL.endswith("input.txt")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "input.txt").write_text("not shakespeare")
    with pytest.raises(SeqtrainError, match="checksum mismatch"):
        make("shakespeare", mirror=str(tmp_path / "bad"), cache_dir=str(tmp_path / "other")).prepare(quiet=True)


def test_wikitext2_reads_the_standard_vocabulary():
    folder = shared_data("wikitext-2/valid.txt.gz").parent
    data = make("wikitext2", data=str(folder)).prepare(quiet=True)
    assert len(data.meta.vocab) == 33278  # the standard WikiText-2 vocabulary, <eos> and <unk> included
    assert data.val.data.numel() == pytest.approx(217646, abs=10)  # valid tokens, as pytorch/examples counts them


def test_wikitext2_downloads_verified_splits_through_a_mirror(tmp_path):
    folder = shared_data("wikitext-2/valid.txt.gz").parent
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for split in ("valid", "test"):
        (mirror / f"{split}.txt").write_bytes(gzip.decompress((folder / f"{split}.txt.gz").read_bytes()))
    task = make("wikitext2", mirror=str(mirror), cache_dir=str(tmp_path / "cache"))
    assert task.split_text("valid", quiet=True) == read_text(folder / "valid.txt.gz")  # sha256 verified
    (mirror / "test.txt").write_text("tampered")
    with pytest.raises(SeqtrainError, match="checksum mismatch"):
        task.split_text("test", quiet=True)


def test_word_tokens_end_lines_at_line_feeds_only():
    """A form feed or U+2028 inside a line is a character of that line, not an end of sentence."""
    from seqtrain.tasks.language_modeling import word_tokens

    assert word_tokens("a\x0cb\u2028c\r\nd") == ["a", "b", "c", "<eos>", "d", "<eos>"]
