"""`--ensemble K`: K members trained side by side, each on its own loss, used as the mean of their probabilities
(classifiers) or of their emission and CRF scores (taggers); saved, loaded, evaluated, exported and served as one
model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from seqtrain.api import load
from seqtrain.models.crf import CRF
from seqtrain.models.ensemble import ClassifierEnsemble, MeanCRF, TaggerEnsemble, split_members
from seqtrain.training.runs import resolve_checkpoint
from seqtrain_cli.main import app
from test_tagging import write_conll

runner = CliRunner()
TINY = ["--epochs", "1", "--quiet", "--device", "cpu", "--threads", "1"]


class Fixed(torch.nn.Module):
    """A member whose output is a given tensor times a learnable scale (so each member's gradient is its own)."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out, self.scale = out, torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out * self.scale


@pytest.mark.parametrize("classes", [2, 5])
def test_the_combined_logits_give_the_mean_of_the_members_probabilities(classes):
    torch.manual_seed(0)
    outs = [torch.randn(6) * 4 if classes == 2 else torch.randn(6, classes) * 4 for _ in range(3)]
    ensemble = ClassifierEnsemble([Fixed(o) for o in outs], sigmoid=classes == 2).eval()
    combined = ensemble(torch.zeros(6))
    assert combined.shape == outs[0].shape
    if classes == 2:
        expected = torch.stack([torch.sigmoid(o) for o in outs]).mean(0)
        torch.testing.assert_close(torch.sigmoid(combined), expected)
    else:
        expected = torch.stack([torch.softmax(o, -1) for o in outs]).mean(0)
        torch.testing.assert_close(torch.softmax(combined, -1), expected)


def test_in_training_each_member_learns_from_its_own_loss_not_the_mean_output():
    torch.manual_seed(0)
    outs = [torch.randn(4, 3) for _ in range(2)]
    targets = torch.tensor([0, 1, 2, 1])
    ensemble = ClassifierEnsemble([Fixed(o) for o in outs], sigmoid=False).train()
    stacked = ensemble(torch.zeros(4))
    assert stacked.shape == (2, 4, 3)
    loss, scored = split_members(ensemble, stacked, lambda z: F.cross_entropy(z, targets))
    loss.backward()
    for member, out in zip(ensemble.members, outs):
        alone = Fixed(out)
        (F.cross_entropy(alone(None), targets) / 2).backward()  # the mean over two members halves each one's gradient
        torch.testing.assert_close(member.scale.grad, alone.scale.grad)
    torch.testing.assert_close(scored, ensemble.combine(outs))
    plain = Fixed(outs[0])
    loss_alone, scored_alone = split_members(plain, plain(None), lambda z: F.cross_entropy(z, targets))
    assert scored_alone is not None and torch.equal(scored_alone, plain(None))


def test_the_mean_crf_averages_its_members_scores_and_owns_no_weights():
    tags = ["B-PER", "I-PER", "O"]
    crfs = [CRF(tags, "iob2") for _ in range(3)]
    for i, crf in enumerate(crfs):
        torch.nn.init.normal_(crf.transitions, std=i + 1.0)
    mean = MeanCRF(crfs)
    assert list(mean.state_dict()) == [] and list(mean.parameters()) == []
    for got, *each in zip(mean.scores(), *(c.scores() for c in crfs)):
        torch.testing.assert_close(got, torch.stack(each).mean(0))


@pytest.fixture(scope="module")
def ner(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ner")
    for name, count, seed in (("eng.train", 150, 0), ("eng.testa", 30, 1), ("eng.testb", 30, 2)):
        write_conll(folder / name, count, seed)
    return folder


def test_a_tagger_ensemble_trains_saves_and_scores_as_one_model(ner, tmp_path):
    args = ["--task", "conll2003", "--data", ner, "--embed-dim", "8", "--hidden", "16", "--char-dim", "8",
            "--char-hidden", "8", "--batch-size", "8", "--lr", "0.02", "--ensemble", "3"]
    result = runner.invoke(app, [str(a) for a in ["fit", *args, *TINY, "--logdir", tmp_path]])
    assert result.exit_code == 0, result.output
    run = resolve_checkpoint("latest", tmp_path).parent
    model = load(run)
    assert isinstance(model.module, TaggerEnsemble) and len(model.module.members) == 3
    keys = torch.load(run / "best.pt", weights_only=True)["model"].keys()
    assert keys and all(k.startswith("members.") for k in keys)
    assert {k.split(".")[1] for k in keys} == {"0", "1", "2"}
    # the members differ (each its own start), and the run's test score is the combined model's, again on reload
    first, second = (model.module.members[i].head.weight for i in (0, 1))
    assert not torch.equal(first, second)
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert model.evaluate("test")["test"]["f1"] == pytest.approx(test["f1"], abs=1e-9)
    (tagged,) = model.tag(["Anna met Peter in Rome .".split()])
    assert len(tagged) == 6


def text_ensemble(folder: Path, labels: int = 2) -> Path:
    """A briefly trained two-member text classifier over a generated CSV; its run folder."""
    words = ["good fine great", "bad awful poor", "dull flat slow"]
    rows = ["label,text"] + [f"l{i % labels},{words[i % labels]} film {i}" for i in range(120)]
    data = folder / "own.csv"
    data.write_text("\n".join(rows) + "\n")
    args = ["--task", "text", "--data", data, "--embed-dim", "8", "--hidden", "8", "--ensemble", "2", "--min-steps", "0",
            "--batch-size", "4"]
    result = runner.invoke(app, [str(a) for a in ["fit", *args, *TINY, "--logdir", folder / "runs"]])
    assert result.exit_code == 0, result.output
    return resolve_checkpoint("latest", folder / "runs").parent


def test_a_text_ensemble_predicts_the_mean_of_its_members(tmp_path):
    model = load(text_ensemble(tmp_path))
    assert isinstance(model.module, ClassifierEnsemble)
    text = "good fine great film"  # label l0
    (predictions,) = model.predict([text], top_k=2)
    task = model.trained.task
    tokens = torch.tensor([task.vocab().encode(text.split())])
    lengths = torch.tensor([tokens.shape[1]])
    with torch.no_grad():
        each = torch.stack([torch.sigmoid(m(tokens, lengths)) for m in model.module.members]).mean()
    positive = {p.label: p.probability for p in predictions}["l1"]
    assert positive == pytest.approx(float(each), abs=1e-6)


def test_an_ensemble_refuses_weights_transferred_into_one_model(tmp_path):
    result = runner.invoke(app, ["fit", "--task", "sine", "--ensemble", "2"])
    assert result.exit_code != 0  # a forecaster has no such setting
    data = tmp_path / "own.csv"
    data.write_text("label,text\npos,good\nneg,bad\n" * 20)
    result = runner.invoke(app, ["fit", "--task", "text", "--data", str(data), "--ensemble", "2", "--init-from", "x", *TINY])
    assert result.exit_code == 2
    assert "--init-from transfer weights into one model, not into --ensemble 2 members" in result.output


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_tagger_ensemble_exports_as_one_graph_with_parity(ner, tmp_path, fmt):
    pytest.importorskip("onnxruntime")
    from test_export import exported_with_parity

    args = ["--task", "conll2003", "--data", ner, "--embed-dim", "8", "--hidden", "8", "--char-encoder", "cnn",
            "--char-dim", "4", "--char-hidden", "4", "--batch-size", "8", "--ensemble", "2"]
    assert runner.invoke(app, [str(a) for a in ["fit", *args, *TINY, "--logdir", tmp_path]]).exit_code == 0
    sidecar = exported_with_parity(resolve_checkpoint("latest", tmp_path).parent, fmt, tmp_path / "export")
    assert sidecar["parity"]["tags_checked"] > 0 and sidecar["crf"] is not None


@pytest.mark.parametrize("labels", [2, 3])
def test_a_text_ensemble_exports_as_one_graph_with_parity(tmp_path, labels):
    pytest.importorskip("onnxruntime")
    from test_export import exported_with_parity

    sidecar = exported_with_parity(text_ensemble(tmp_path, labels), "onnx", tmp_path / "export")
    assert sidecar["labels"] == [f"l{i}" for i in range(labels)]
