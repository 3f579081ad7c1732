"""Pre-training on IMDB's own reviews (--task imdblm) and fine-tuning a classifier from it: the LM reads
train + unsup with the classifiers' tokenizer (never test), --init-from maps its whole vocabulary, and
the fine-tuning options (--unfreeze-epochs, --lr-pretrained-scale) act on the transferred weights only."""

import pytest
import torch
from typer.testing import CliRunner

from conftest import make, write_imdb
from seqtrain.tasks.imdblm import HOLD_OUT, review_stream
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

runner = CliRunner()
#: the shapes both sides share: a one-layer GRU of 8 over 16-dim embeddings
SHAPES = ["--cell", "gru", "--hidden", "8", "--embed-dim", "16"]
CLASSIFIER = [*SHAPES, "--batch-size", "16", "--max-steps", "3", "--seed", "42"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """An aclImdb tree with train/unsup beside the labelled reviews; words that occur in one part only."""
    root = write_imdb(tmp_path_factory.mktemp("imdb"), train_per_class=60, test_per_class=20)
    unsup = root / "aclImdb" / "train" / "unsup"
    unsup.mkdir()
    for i in range(60):
        (unsup / f"{i}_0.txt").write_text("Zyzzyva's movie was GREAT, really." * 3)
    (root / "aclImdb" / "test" / "pos" / "0_10.txt").write_text("onlyintest " * 20)
    return root


@pytest.fixture(scope="module")
def lm_run(reviews, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    result = invoke("fit", "--task", "imdblm", "--data-dir", reviews, "--logdir", folder, *SHAPES, "--epochs", "1",
                    "--max-steps", "5", "--batch-size", "4", "--bptt", "10")
    assert result.exit_code == 0, result.output
    return latest_run(folder)


def test_review_stream_closes_each_kept_review():
    ids, offsets = torch.tensor([5, 6, 7, 8, 9, 10]), torch.tensor([0, 2, 3, 6])
    assert review_stream(ids, offsets, torch.tensor([True, False, True]), 0).tolist() == [5, 6, 0, 8, 9, 10, 0]
    assert review_stream(ids, offsets, torch.tensor([False, False, False]), 0).tolist() == []


def test_imdblm_reads_train_and_unsup_with_the_classifiers_tokenizer(lm_run, reviews):
    checkpoint = load_checkpoint(lm_run / "best.pt")
    vocab = checkpoint["meta"]["vocab"]
    assert checkpoint["meta"]["level"] == "word" and vocab[0] == "<unk>" and "<eos>" in vocab
    assert "zyzzyva's" in vocab and "great" in vocab and "," in vocab  # unsup read; lower-cased, punctuation split
    assert "GREAT," not in vocab and "<br" not in vocab and "onlyintest" not in vocab  # never a test review
    assert checkpoint["state"]["best_val"]["ppl"] > 1  # held-out reviews give a validation perplexity
    task = make("imdblm", data_dir=str(reviews), batch_size=4, bptt=10)
    data = task.prepare(quiet=True)
    held = data.val.data.numel()
    assert 0 < held < data.train.data.numel() / (HOLD_OUT / 4)
    assert task.encode_prime("Great,") == [vocab.index("great"), vocab.index(",")]


def test_classifier_from_imdblm_maps_the_whole_vocabulary(lm_run, reviews, tmp_path):
    result = invoke("fit", "--data-dir", reviews, "--logdir", tmp_path, "--init-from", lm_run, *CLASSIFIER, "--epochs", "1")
    assert result.exit_code == 0, result.output
    vocab = load_checkpoint(latest_run(tmp_path) / "best.pt")["meta"]["vocab"]
    words = len(vocab) - 1  # every row but padding
    assert f"{words:,} of {len(vocab):,} vocabulary rows" in " ".join(result.output.split())


def transferred(state):
    return {k: v for k, v in state.items() if k == "embedding.weight" or ".fwd." in k}


def test_unfreeze_epochs_keeps_transferred_weights_fixed_then_releases_them_on_resume(lm_run, reviews, tmp_path):
    lm = load_checkpoint(lm_run / "best.pt")
    result = invoke("fit", "--data-dir", reviews, "--logdir", tmp_path, "--init-from", lm_run, *CLASSIFIER,
                    "--epochs", "1", "--unfreeze-epochs", "1")
    assert result.exit_code == 0, result.output
    assert "transferred weights: fixed for the first 1 epoch(s)" in " ".join(result.output.split())
    run = latest_run(tmp_path)
    first = load_checkpoint(run / "last.pt")
    fresh = first["model"]
    vocab, lm_vocab = first["meta"]["vocab"], lm["meta"]["vocab"]
    rows = [i for i, word in enumerate(vocab) if word != "<pad>"]
    assert torch.equal(fresh["embedding.weight"][rows], lm["model"]["embedding.weight"][[lm_vocab.index(vocab[i]) for i in rows]])
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert torch.equal(fresh[f"encoder.layers.0.fwd.{name}_l0"], lm["model"][f"rnn.{name}_l0"])
    # the fresh weights (backward direction, head) did train: Adam holds moments for them alone
    fresh_group, taken_group = first["optimizer"]["param_groups"]
    moments = first["optimizer"]["state"]
    assert all(i in moments for i in fresh_group["params"]) and not any(i in moments for i in taken_group["params"])

    result = invoke("fit", "--resume", run, "--epochs", "2")
    assert result.exit_code == 0, result.output
    second = load_checkpoint(run / "last.pt")
    assert second["state"]["epoch"] == 2
    changed = [k for k in transferred(fresh) if not torch.equal(second["model"][k], fresh[k])]
    assert sorted(changed) == sorted(transferred(fresh))


def test_lr_pretrained_scale_puts_transferred_weights_in_a_group_of_their_own(lm_run, reviews, tmp_path):
    task = make("imdb", data_dir=str(reviews), init_from=str(lm_run), cell="gru", hidden=8, embed_dim=16,
                lr=0.01, lr_pretrained_scale=0.3)
    data = task.prepare(quiet=True)
    model = task.build_model(data.meta)
    fresh, taken = task.optimizer(model).param_groups
    assert fresh["lr"] == pytest.approx(0.01) and taken["lr"] == pytest.approx(0.003)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in taken["params"]) == sorted(
        ["embedding.weight"] + [n for n in names.values() if ".fwd." in n])
    assert not any(".fwd." in names[id(p)] or names[id(p)] == "embedding.weight" for p in fresh["params"])
    # in a run: the checkpoint's optimizer keeps both rates, and resuming carries on with them
    result = invoke("fit", "--data-dir", reviews, "--logdir", tmp_path, "--init-from", lm_run, *CLASSIFIER,
                    "--epochs", "1", "--lr", "0.01", "--lr-pretrained-scale", "0.3", "--lr-schedule", "constant")
    assert result.exit_code == 0, result.output
    run = latest_run(tmp_path)
    assert [g["lr"] for g in load_checkpoint(run / "last.pt")["optimizer"]["param_groups"]] == pytest.approx([0.01, 0.003])
    result = invoke("fit", "--resume", run, "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert [g["lr"] for g in load_checkpoint(run / "last.pt")["optimizer"]["param_groups"]] == pytest.approx([0.01, 0.003])


def test_fine_tuning_options_refuse_a_run_with_nothing_transferred(reviews, tmp_path):
    for flags in (["--unfreeze-epochs", "1"], ["--lr-pretrained-scale", "0.3"]):
        result = invoke("fit", "--data-dir", reviews, "--logdir", tmp_path, *CLASSIFIER, "--epochs", "2", *flags)
        assert result.exit_code == 2
        assert "add --init-from RUN or --embeddings VECTORS" in result.output and "Traceback" not in result.output
    result = invoke("fit", "--data-dir", reviews, "--logdir", tmp_path, *CLASSIFIER, "--epochs", "2",
                    "--embeddings", "glove.6B.50d", "--unfreeze-epochs", "3")
    assert result.exit_code == 2 and "--unfreeze-epochs 3 is more than --epochs 2" in result.output


def test_generate_from_an_imdblm_run_tokenizes_the_prime_as_the_reviews(lm_run):
    result = invoke("generate", lm_run, "--prime", "The MOVIE,", "--length", "5", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("The MOVIE, ") and len(result.output.split()) >= 5
