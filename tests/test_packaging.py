"""The dependency floors in pyproject.toml are the versions the code really needs."""

import tomllib
from pathlib import Path

import torch
from torch import nn

from seqtrain.config import TrainSettings
from seqtrain.training.trainer import make_optimizer

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_torch_floor_has_the_fused_adam_step_on_cpu():
    """make_optimizer asks for fused Adam/AdamW on CPU: torch 2.3 refuses that ("`fused=True` requires ... supported
    devices: ['cuda', 'xpu', ...]"); torch 2.4 added 'cpu' to those devices."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert [d for d in dependencies if d.startswith("torch")] == ["torch>=2.4"]
    model = nn.Linear(3, 1)
    for name in ("adam", "adamw"):
        optimizer = make_optimizer(TrainSettings(optimizer=name), model.parameters())
        assert optimizer.defaults["fused"] is True
        model(torch.ones(2, 3)).sum().backward()
        before = model.weight.detach().clone()
        optimizer.step()
        assert not torch.equal(before, model.weight)
