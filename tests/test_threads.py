"""CPU threads: the count a run chooses from its model, shown in its first line, and results that do not depend on it."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from seqtrain.config import LanguageModelModel
from seqtrain.models.language_model import LanguageModel
from seqtrain.tasks import build_config, make_task
from seqtrain.tasks.classification import ClassifierMeta
from seqtrain.training import device as device_module
from seqtrain.training.device import choose_threads, recurrent_step_cost
from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

CPU = torch.device("cpu")


def imdb_default_model():
    task = make_task(build_config("imdb"))
    return task, task.build_model(ClassifierMeta(["<pad>", "<unk>"] + [f"w{i}" for i in range(98)], ["neg", "pos"]))


def test_small_recurrent_steps_get_one_thread_and_the_flag_overrides():
    task, model = imdb_default_model()
    # bidirectional GRU 96: each direction's weight_hh is 288 x 96, batch 64
    assert recurrent_step_cost(model, 64) == 64 * 288 * 96
    threads, why = choose_threads(0, model, 64, CPU)
    assert threads == 1 and why.startswith("auto")
    assert choose_threads(3, model, 64, CPU) == (3, "--threads")
    assert choose_threads(0, model, 64, torch.device("cuda"))[0] == device_module.CORES


def test_large_recurrent_steps_and_models_without_one_use_every_core():
    big = LanguageModel(10, LanguageModelModel(embed_dim=8, hidden=2048))  # weight_hh 8192 x 2048
    assert recurrent_step_cost(big, 64) >= device_module.MIN_STEP_FOR_THREADS
    assert choose_threads(0, big, 64, CPU)[0] == device_module.CORES
    assert choose_threads(0, torch.nn.Linear(3, 3), 64, CPU)[0] == device_module.CORES
    looped = LanguageModel(10, LanguageModelModel(embed_dim=8, hidden=16, layer_norm=True))
    assert recurrent_step_cost(looped, 4) == 4 * 64 * 16  # loop layers count their hidden-to-hidden product too


def test_the_chosen_count_is_in_the_first_line_and_does_not_change_the_weights(tmp_path):
    """Thread count changes float summation order at most: the same seed gives the same weights within float noise."""
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat.\n" * 300)
    weights, first_lines = [], []
    for threads in ("0", "2"):
        logdir = tmp_path / threads
        result = CliRunner().invoke(app, ["fit", "--task", "charlm", "--text", str(text), "--logdir", str(logdir), "--epochs", "1",
                                          "--max-steps", "4", "--hidden", "32", "--embed-dim", "8", "--batch-size", "8",
                                          "--bptt", "16", "--threads", threads])
        assert result.exit_code == 0, result.output
        first_lines.append(" ".join(result.output.split()).partition("parameters")[0])  # the run's first line, unwrapped
        weights.append(torch.load(latest_run(logdir) / "last.pt", weights_only=True)["model"])
    assert "threads 1 (auto: recurrent step of" in first_lines[0]
    assert "threads 2 (--threads)" in first_lines[1]
    for name, value in weights[0].items():
        assert torch.allclose(value, weights[1][name], atol=1e-6), name
    # the commands that use a trained model choose the same way
    torch.set_num_threads(2)
    result = CliRunner().invoke(app, ["generate", "--logdir", str(tmp_path / "0"), "--length", "5", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    torch.set_num_threads(1)
