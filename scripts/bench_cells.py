"""What recurrent dropout and layer norm cost: one training step of the sine forecaster, fused vs loop cells.

    OMP_NUM_THREADS=1 python scripts/bench_cells.py [--cell gru] [--steps 30]

Prints milliseconds per step (batch 32, 50 time steps, 2 layers of 32) and
the ratio to the fused nn.GRU/LSTM/RNN that `make_rnn` picks when neither
feature is asked for.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from seqtrain.config import ForecastModel
from seqtrain.models.cells import LoopRNN
from seqtrain.models.forecaster import Forecaster


def step_ms(model: torch.nn.Module, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters())
    x, y = torch.randn(32, 50, 1), torch.randn(32, 1)
    for index in range(steps + 3):  # three warm-up steps
        if index == 3:
            started = time.perf_counter()
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="gru", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    variants = {
        "fused (nn module)": {},
        "loop, plain": {"loop": True},
        "loop, --recurrent-dropout 0.2": {"recurrent_dropout": 0.2},
        "loop, --layer-norm": {"layer_norm": True},
    }
    base = None
    print(f"{'variant':32} {'ms/step':>8} {'ratio':>6}   ({args.cell}, threads {torch.get_num_threads()})")
    for name, options in variants.items():
        cfg = ForecastModel(cell=args.cell, hidden=32, layers=2, recurrent_dropout=options.get("recurrent_dropout", 0.0),
                          layer_norm=options.get("layer_norm", False))
        model = Forecaster(1, 1, 50, cfg)
        if options.get("loop"):
            model.rnn = LoopRNN(args.cell, 1, 32, 2)
        ms = step_ms(model.train(), args.steps)
        base = base or ms
        print(f"{name:32} {ms:8.1f} {ms / base:6.2f}x")


if __name__ == "__main__":
    main()
