"""--precision bf16 on CPU: the fused layers' products in bfloat16 against float32, and the fallback without native bf16."""

import itertools

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from seqtrain.models import fused
from seqtrain.models.recurrent import RecurrentEncoder
from seqtrain.training import device as device_module
from seqtrain.training.device import resolve_precision

#: bfloat16 keeps 8 significant bits (a relative rounding of 2^-9 per operand): over a dozen steps of products
#: the outputs and gradients move by a few parts in a thousand of their scale, float32 by a few in ten million.
BF16_TOL = 2e-2


def run_encoder(encoder: RecurrentEncoder, x: torch.Tensor, lengths: torch.Tensor, bf16: bool) -> list[torch.Tensor]:
    """Outputs, last states and the gradients of the input and of every parameter, under bf16 autocast or not."""
    inputs = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out, last = encoder(inputs, lengths)
    loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() + last.square().sum()
    return [out, last, *torch.autograd.grad(loss, [inputs, *encoder.parameters()])]


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).detach().norm() / expected.detach().norm().clamp_min(1e-12))


@pytest.mark.parametrize("cell,layers,bidirectional", list(itertools.product(["rnn", "lstm", "gru"], [1, 2], [False, True])))
def test_bf16_products_match_float32_within_bf16_rounding(cell, layers, bidirectional):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(cell, 5, 16, layers=layers, bidirectional=bidirectional, packing="off", kernel="fused")
    x, lengths = torch.randn(6, 12, 5), torch.tensor([12, 3, 1, 7, 12, 9])
    exact = run_encoder(encoder, x, lengths, bf16=False)
    narrow = run_encoder(encoder, x, lengths, bf16=True)
    for got, expected in zip(narrow, exact, strict=True):
        assert got.dtype == torch.float32  # states, outputs and every gradient stay float32
        assert relative_error(got, expected) < BF16_TOL
    # the products really were bfloat16: float32 rounding alone moves nothing by a thousandth
    assert max(relative_error(got, expected) for got, expected in zip(narrow, exact)) > 1e-4


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bf16_with_the_embedding_folded_into_the_first_product(cell):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(cell, 6, 16, kernel="fused")
    embedding = torch.nn.Embedding(30, 6, padding_idx=0)
    tokens, lengths = torch.randint(1, 30, (4, 10)), torch.tensor([10, 4, 7, 2])
    assert encoder.folds(embedding)
    results = []
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, last = encoder(tokens, lengths, embedding=embedding)
        (out.sum() + last.square().sum()).backward()
        results.append([out.float(), last.float(), embedding.weight.grad.clone(), *[p.grad.clone() for p in encoder.parameters()]])
        embedding.zero_grad()
        encoder.zero_grad()
    for got, expected in zip(results[1], results[0], strict=True):
        assert relative_error(got, expected) < BF16_TOL


def test_bf16_runs_the_python_loop_on_float32_states_and_bfloat16_weights():
    weights = torch.zeros(4, 4, dtype=torch.bfloat16)
    assert fused.loop(torch.zeros(2, 4), weights) is fused.PythonLoop
    out = fused.product(torch.full((2, 4), 1 + 2**-12), torch.ones(4, 3, dtype=torch.bfloat16))
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((2, 3), 4.0))  # the operand rounded to bfloat16


def test_without_native_bf16_the_cpu_trains_in_float32_and_says_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    cpu = torch.device("cpu")
    precision, note = resolve_precision("bf16", cpu)
    assert precision == "32" and "no native bfloat16" in note and "\n" not in note
    assert resolve_precision("32", cpu) == ("32", "")
    args = ["fit", "--task", "sine", "--epochs", "1", "--max-steps", "3", "--hidden", "8", "--batch-size", "16",
            "--threads", "1", "--precision", "bf16", "--device", "cpu", "--logdir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "no native bfloat16" in line]
    assert len(lines) == 1 and "float32" in lines[0]


def test_with_native_bf16_the_cpu_keeps_bf16(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("bf16", torch.device("cpu")) == ("bf16", "")
