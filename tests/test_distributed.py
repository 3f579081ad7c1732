"""Data parallel training: batch parts per rank, and two gloo processes under torchrun training one model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from seqtrain.data.batching import Batch
from seqtrain.training import distributed
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

from test_resume import small_text

ROOT = Path(__file__).resolve().parents[1]
# gloo on the loopback device: no lookup of the machine's name, which a closed network may leave hanging
LOOPBACK_ENV = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}


def test_parts_split_every_row_once_whatever_the_batch_type():
    batch = Batch(torch.arange(14).view(7, 2), torch.arange(7), torch.arange(7) * 10)
    parts = [distributed.part(batch, i, 3) for i in range(3)]
    assert [len(p) for p in parts] == [2, 2, 3]
    assert torch.equal(torch.cat([p.targets for p in parts]), batch.targets)
    inputs, targets = torch.arange(20).view(4, 5), torch.arange(20).view(4, 5) + 1  # 4 columns of a token stream
    first, second = (distributed.part((inputs, targets), i, 2) for i in range(2))
    assert torch.equal(first[0], inputs[:2]) and torch.equal(second[1], targets[2:])
    assert distributed.rows(distributed.part(batch, 0, 8)) == 0  # an undersized batch leaves a part empty


def test_accumulating_micro_batches_gives_the_whole_batch_step(tmp_path):
    text = small_text(tmp_path / "text.txt")
    common = ["fit", "--task", "charlm", "--text", text, "--epochs", "1", "--max-steps", "3", "--batch-size", "8",
              "--bptt", "25", "--hidden", "16", "--embed-dim", "8", "--dropout", "0", "--threads", "1", "-q"]
    runs = {}
    for accumulate in (1, 4):
        result = CliRunner().invoke(app, [str(a) for a in common] + ["--accumulate", str(accumulate), "--logdir", str(tmp_path / str(accumulate))])
        assert result.exit_code == 0, result.output
        runs[accumulate] = load_checkpoint(latest_run(tmp_path / str(accumulate)) / "last.pt")
    assert "accumulate = 4" in (latest_run(tmp_path / "4") / "config.toml").read_text()
    for key, value in runs[1]["model"].items():
        torch.testing.assert_close(runs[4]["model"][key], value, rtol=0, atol=1e-5)


def test_two_gloo_processes_train_one_model_and_rank_0_writes_the_run(tmp_path):
    text = small_text(tmp_path / "text.txt")
    common = ["--task", "charlm", "--text", text, "--epochs", "2", "--max-steps", "4", "--batch-size", "8",
              "--bptt", "25", "--hidden", "16", "--embed-dim", "8", "--dropout", "0", "--threads", "1", "--device", "cpu",
              "--save-every", "2"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "seqtrain", "fit"]
    done = subprocess.run(launch + [str(a) for a in common] + ["--logdir", str(tmp_path / "ddp"), "-q"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=LOOPBACK_ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    run = latest_run(tmp_path / "ddp")
    names = sorted(p.name for p in run.iterdir())
    assert [n for n in names if not n.startswith("events.")] == ["best.pt", "config.toml", "last.pt", "metrics.json"]
    assert len([n for n in names if n.startswith("events.")]) == 1  # TensorBoard from rank 0 alone
    saved = load_checkpoint(run / "last.pt")
    assert len(saved["ranks"]) == 2 and saved["ranks"][0]["weights"] == saved["ranks"][1]["weights"]
    assert saved["state"]["global_step"] == 8

    result = CliRunner().invoke(app, ["fit", *map(str, common), "--logdir", str(tmp_path / "one"), "-q"])
    assert result.exit_code == 0, result.output
    alone = load_checkpoint(latest_run(tmp_path / "one") / "last.pt")
    for key, value in alone["model"].items():  # the same steps over the same batches, up to rounding
        torch.testing.assert_close(saved["model"][key], value, rtol=0, atol=1e-5)
    ddp_test = json.loads((run / "metrics.json").read_text())["test"]["loss"]
    assert abs(ddp_test - json.loads((latest_run(tmp_path / "one") / "metrics.json").read_text())["test"]["loss"]) < 1e-4

    more = subprocess.run(launch + ["--resume", str(run), "--epochs", "3", "-q"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=LOOPBACK_ENV)  # every rank resumes from the same checkpoint
    assert more.returncode == 0, more.stderr[-3000:]
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["state"]["global_step"] == 12 and resumed["ranks"][0]["weights"] == resumed["ranks"][1]["weights"]


WRAPPED_STEP = """
import socket
import torch
import torch.distributed as dist
from datetime import timedelta
from seqtrain.tasks.base import StepContext
from seqtrain.training import distributed
from conftest import make

task = make("sine", hidden=8)
model = task.build_model(task.default_meta())
with socket.socket() as probe:  # a free loopback port for the store
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                        timeout=timedelta(seconds=60))
try:
    net = distributed.wrap(model, torch.device("cpu"))
    x, y = torch.randn(4, 50, 1), torch.randn(4, 50, 1)
    result = task.step(net, (x, y), None, StepContext(True))
    result.loss.backward()
    assert net.target_std is model.target_std and all(p.grad is not None for p in model.parameters())
finally:
    dist.destroy_process_group()
print("ok")
"""


def test_a_task_step_reads_its_model_through_the_ddp_wrapper():
    """The forecaster's step reads model.target_std: DataParallel passes model attributes through.

    A process of its own, on loopback, with a timeout: a process group that cannot form must fail this
    test, not hang the suite."""
    done = subprocess.run([sys.executable, "-c", WRAPPED_STEP], cwd=ROOT / "tests", capture_output=True, text=True,
                          timeout=180, env=LOOPBACK_ENV)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
