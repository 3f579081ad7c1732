"""`seqtrain export` for the families over tokens' tags and numeric sequences: tagger (emissions + CRF scores),
signal and audio classifiers (normalisation and the log-mel front end inside the graph) and CTC, each in ONNX
and TorchScript with parity on the run's test batches; the no-seqtrain examples for the tagger and CTC; the served
tagger's /tag route."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seqtrain.data.conll import convert, tokenize_sentence
from seqtrain.errors import SeqtrainError
from seqtrain.export import core
from seqtrain.export.tagger import tagger
from seqtrain.inference import load_trained
from seqtrain.tasks.tagging import collate, encode_sentence, render
from seqtrain.training.runs import resolve_checkpoint
from seqtrain_cli.main import app
from test_audio import write_tone_corpus
from test_export import exported_with_parity
from test_signals import write_toy_ts
from test_tagging import write_conll

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--quiet", "--device", "cpu", "--threads", "1"]
SENTENCES = ["Anna met Peter in Rome .", "the shares went to Berlin", "Jim", "Tom bought 1,000 U.S. shares in Madrid ."]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A briefly trained run per family, in shapes that exercise the export: a char-LSTM BiLSTM-CRF tagger over
    IOB1 data trained as BIOES, frame stacking, the audio front end, CTC (small batches: several test batches)."""
    root = tmp_path_factory.mktemp("sequence-runs")
    ner = root / "ner"
    ner.mkdir()
    for name, count, seed in (("eng.train", 150, 0), ("eng.testa", 30, 1), ("eng.testb", 30, 2)):
        write_conll(ner / name, count, seed)
    tones = write_tone_corpus(root / "tones", count=40)
    audio = ["--sample-rate", "8000", "--n-mels", "16", "--hidden", "8", "--batch-size", "4", "--max-steps", "4"]
    settings = {
        "tagger": ["--task", "conll2003", "--data", ner, "--char-encoder", "lstm", "--embed-dim", "8", "--hidden", "16",
                   "--char-dim", "8", "--char-hidden", "8", "--batch-size", "8", "--lr", "0.02", "--dropout", "0"],
        "signal": ["--task", "signal", "--data", write_toy_ts(root / "toy"), "--hidden", "8", "--stack", "3",
                   "--batch-size", "8", "--max-steps", "4"],
        "audio": ["--task", "audio", "--data", tones, "--test-split", "0.3", *audio],
        "ctc": ["--task", "ctc", "--data", tones / "transcripts.csv", "--stack", "2", "--mfcc", "8", *audio],
    }
    out = {}
    for name, args in settings.items():
        result = invoke("fit", *args, *TINY, "--logdir", root / name)
        assert result.exit_code == 0, result.output
        out[name] = resolve_checkpoint("latest", root / name).parent
    out["tones"], out["ner"] = tones, ner
    return out


@pytest.mark.parametrize("family", ["tagger", "signal", "audio", "ctc"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_each_family_exports_with_parity_and_a_sidecar(runs, family, fmt, tmp_path):
    sidecar = exported_with_parity(runs[family], fmt, tmp_path / "export")
    (graph,) = sidecar["graphs"].values()
    if family == "tagger":
        tags = sidecar["tags"]
        assert [i["name"] for i in graph["inputs"]] == ["words", "casings", "chars", "lengths"]
        assert sidecar["tag_scheme"] == "bioes" and sidecar["data_scheme"] == "iob1" and sidecar["parity"]["tags_checked"] > 0
        transitions = np.array(sidecar["crf"]["transitions"])
        assert transitions.shape == (len(tags), len(tags))
        assert transitions[tags.index("O"), tags.index("I-PER")] == sidecar["crf"]["forbidden"]  # BIOES: O -> I-X
    elif family == "ctc":
        assert sidecar["blank"] == 0 and sidecar["symbols"] == ["a", "b", "c"] and sidecar["frontend"]["features"] == "mfcc"
        assert [o["name"] for o in graph["outputs"]] == ["log_probs", "frames"]
    else:
        assert sidecar["labels"] and sidecar["normalisation"]["in_graph"]
        assert graph["inputs"][0]["name"] == ("values" if family == "signal" else "waveforms")


def test_a_signal_regressor_exports_its_number_and_scores_rmse(tmp_path):
    rng = np.random.default_rng(3)
    lines = ["id,t,x,score"]
    for i in range(48):
        steps, level = int(rng.integers(4, 12)), rng.uniform(0, 10)
        lines += [f"s{i},{t},{level + rng.normal(0, 0.1):.3f},{level:.3f}" for t in range(steps)]
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    fitted = invoke("fit", "--task", "signal", "--data", tmp_path / "long.csv", "--features", "x", "--label-col", "score",
                    "--objective", "regress", "--hidden", "8", "--batch-size", "4", "--max-steps", "4", "--dtw-window", "0",
                    *TINY, "--logdir", tmp_path / "runs")
    assert fitted.exit_code == 0, fitted.output
    out = tmp_path / "export"
    result = invoke("export", "latest", "--logdir", tmp_path / "runs", "--quantize", "int8", "--force", "--out", out)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "seqtrain.json").read_text())
    assert sidecar["family"] == "signal_regressor" and sidecar["parity"]["max_abs_diff"] <= 1e-5
    assert [o["name"] for o in sidecar["graphs"]["regressor"]["outputs"]] == ["prediction"]
    assert sidecar["quantized"]["metric"] == "rmse" and "test rmse" in result.output


def test_graphs_take_lengths_they_were_not_traced_with(runs, tmp_path):
    """The front end and frame stacking keep the number of steps variable: a recording shorter than one analysis
    window, odd lengths and a long one give PyTorch's outputs."""
    for family, name in (("audio", "classifier"), ("ctc", "ctc"), ("signal", "classifier")):
        out = tmp_path / family
        assert invoke("export", runs[family], "--out", out).exit_code == 0
        graph = core.load_runner(out / f"{name}.onnx")
        model = core.plain_recurrent(load_trained(runs[family] / "best.pt", "cpu").model)
        shapes = [(3, 7, 1), (2, 61, 1)] if family == "signal" else [(1, 150), (3, 2001), (2, 9000)]
        for shape in shapes:
            x = torch.randn(*shape, generator=torch.Generator().manual_seed(len(shape)))
            lengths = torch.tensor([shape[1]] + [shape[1] - 5] * (shape[0] - 1))
            with torch.no_grad():
                expected = model(x, lengths)
            expected = expected if isinstance(expected, tuple) else (torch.softmax(expected, -1),)
            for want, have in zip(expected, graph((x.numpy(), lengths.numpy()))):
                np.testing.assert_allclose(have, want.numpy(), atol=1e-5, rtol=1e-5)


def blocked_env(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "blocked" / "seqtrain"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the example must run without seqtrain')\n")
    return {"PYTHONPATH": str(blocker.parent), "PATH": "/usr/bin:/bin"}


def run_example(name: str, *args, env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, ROOT / "docs" / "examples" / name, *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_no_seqtrain_tagger_example_tags_like_seqtrain_tag(runs, tmp_path):
    out = tmp_path / "onnx"
    assert invoke("export", runs["tagger"], "--out", out).exit_code == 0
    lines = run_example("tag_onnx.py", out, *SENTENCES, env=blocked_env(tmp_path))
    got = [[line.split("\t") for line in block.splitlines()] for block in "\n".join(lines).split("\n\n")]
    trained = load_trained(runs["tagger"] / "best.pt", "cpu")
    sentences = [tokenize_sentence(text) for text in SENTENCES]
    expected = trained.task.tag(trained.model, sentences, trained.device)
    assert [[token for token, _ in rows] for rows in got[: len(SENTENCES)]] == sentences
    assert [[tag for _, tag in rows] for rows in got[: len(SENTENCES)]] == [convert(tags, "bioes") for tags in expected]
    assert any(tag != "O" for tags in expected for tag in tags)  # the run has learned to find some entities


@pytest.mark.parametrize("variant", [["--char-encoder", "cnn", "--no-crf"], ["--char-encoder", "none"]])
def test_tagger_variants_export_and_the_example_decodes_them(runs, variant, tmp_path):
    """A character CNN with a softmax head (argmax decoding), and words and casings alone (no chars input)."""
    fitted = invoke("fit", "--task", "tag", "--data", runs["ner"], *variant, "--hidden", "8", "--embed-dim", "8",
                    "--batch-size", "8", "--max-steps", "4", *TINY, "--logdir", tmp_path / "runs")
    assert fitted.exit_code == 0, fitted.output
    run = resolve_checkpoint("latest", tmp_path / "runs").parent
    assert invoke("export", run, "--out", tmp_path / "onnx").exit_code == 0
    lines = run_example("tag_onnx.py", tmp_path / "onnx", *SENTENCES, env=blocked_env(tmp_path))
    trained = load_trained(run / "best.pt", "cpu")
    meta, model = trained.task.meta, trained.model
    words, chars = {w: i for i, w in enumerate(meta.vocab)}, {c: i for i, c in enumerate(meta.chars)}
    sentences = [tokenize_sentence(text) for text in SENTENCES]
    batch = collate([encode_sentence(s, [0] * len(s), words, chars) for s in sentences])
    with torch.no_grad():
        decoded = model.decode(model(batch.words, batch.casings, batch.chars, batch.lengths), batch.lengths)
    expected = [f"{token}\t{meta.tags[i]}" for row, s in enumerate(sentences) for token, i in zip(s, decoded[row].tolist())]
    assert [line for line in lines if line] == expected


def test_the_no_seqtrain_ctc_example_transcribes_like_greedy_seqtrain_transcribe(runs, tmp_path):
    out = tmp_path / "onnx"
    assert invoke("export", runs["ctc"], "--out", out).exit_code == 0
    wavs = sorted(runs["tones"].glob("*/*.wav"))[:4]
    lines = run_example("transcribe_onnx.py", out, *wavs, env=blocked_env(tmp_path))
    trained = load_trained(runs["ctc"] / "best.pt", "cpu")
    expected = trained.task.transcribe(trained.model, [str(w) for w in wavs], trained.device, beam=1)
    assert [line.split("\t") for line in lines] == [[text, name] for name, text in expected]


def test_tags_decoded_from_different_emissions_fail_the_export(runs):
    trained = load_trained(runs["tagger"] / "best.pt", "cpu")
    core.plain_recurrent(trained.model)
    with torch.no_grad():
        export = tagger(trained, core.test_loader(trained))
    graph = export.graphs[0]
    honest = {"tagger": lambda arrays: [graph.module(*map(torch.from_numpy, arrays)).detach().numpy()]}
    assert export.check(honest)["tags_checked"] == sum(int(s[-1].sum()) for s in graph.samples)
    reversed_tags = {"tagger": lambda arrays: [honest["tagger"](arrays)[0][..., ::-1].copy()]}
    with pytest.raises(SeqtrainError, match="tags decoded from the exported emissions differ"):
        export.check(reversed_tags)


@pytest.mark.parametrize("family, metric", [("tagger", "f1"), ("ctc", "ler"), ("audio", "accuracy")])
def test_int8_reports_each_familys_test_metric(runs, family, metric, tmp_path):
    out = tmp_path / "int8"
    result = invoke("export", runs[family], "--quantize", "int8", "--out", out, "--force")
    assert result.exit_code == 0, result.output
    quantized = json.loads((out / "seqtrain.json").read_text())["quantized"]
    assert quantized["metric"] == metric and f"test {metric}" in result.output
    assert all((out / file).is_file() for file in quantized["files"].values())


def test_serve_tags_like_seqtrain_tag(runs):
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from seqtrain.serving.app import ServeSettings, build_app

    trained = load_trained(runs["tagger"] / "best.pt", "cpu")
    app = build_app(ServeSettings({}), {"ner": trained})

    async def calls(client):
        good = await client.post("/v1/ner/tag", json={"texts": SENTENCES[:2]})
        empty = await client.post("/v1/ner/tag", json={"texts": ["  "]})
        wrong = await client.post("/v1/ner/predict", json={"texts": ["x"]})
        return good, empty, wrong

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await calls(client)

    good, empty, wrong = asyncio.run(main())
    assert good.status_code == 200, good.text
    sentences = [tokenize_sentence(text) for text in SENTENCES[:2]]
    expected = trained.task.tag(trained.model, sentences, trained.device)
    assert good.json()["sentences"] == [json.loads(render(s, t, "json", False)) for s, t in zip(sentences, expected)]
    assert empty.status_code == 422 and "without tokens" in empty.json()["error"]
    assert wrong.status_code == 404
