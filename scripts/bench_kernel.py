"""Fused recurrent layers (seqtrain/models/fused.py) against nn.LSTM/GRU/RNN on CPU, side by side in one process.

    python scripts/bench_kernel.py [--threads 1] [--cells lstm gru rnn] [--repeats 7] [--busy 1]

For each size and cell, times one training step's recurrent work (forward,
then backward from a loss over every output) and one inference forward
(no_grad) of nn's module and of the fused one with the same weights,
interleaved repeat by repeat, and prints the medians, the ratio
nn / fused (> 1: fused is faster) and which of the two kernel "auto" trains with. The load average before and after is
printed because these machines are shared: compare ratios, not times.
`--busy N` runs N CPU-bound processes alongside, as other users' jobs would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from seqtrain.models.fused import FusedGRU, FusedLSTM, FusedRNN

SIZES = {  # name: (batch, steps, input, hidden)
    "lectures": (128, 200, 32, 32),
    "char-lm": (64, 100, 64, 512),
}
CELLS = {"lstm": (nn.LSTM, FusedLSTM), "gru": (nn.GRU, FusedGRU), "rnn": (nn.RNN, FusedRNN)}


def train_step(module: nn.Module, x: torch.Tensor) -> None:
    out, _ = module(x)
    out.sum().backward()


def infer(module: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        module(x)


def seconds(work, *args) -> float:
    start = time.perf_counter()
    work(*args)
    return time.perf_counter() - start


def compare(cell: str, size: tuple[int, int, int, int], repeats: int) -> tuple[dict[str, tuple[float, float]], str]:
    """Median milliseconds (nn, fused) per measurement, the two timed alternately; what "auto" picks for training."""
    batch, steps, inputs, hidden = size
    torch_cls, fused_cls = CELLS[cell]
    reference = torch_cls(inputs, hidden, batch_first=True)
    fused = fused_cls(inputs, hidden, batch_first=True, kernel="fused")
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(batch, steps, inputs, requires_grad=True)
    results = {}
    for name, work in (("train fwd+bwd", train_step), ("infer fwd", infer)):
        times: dict[nn.Module, list[float]] = {reference: [], fused: []}
        for index in range(repeats + 1):  # the first round warms up
            for module in times:
                elapsed = seconds(work, module, x)
                if index:
                    times[module].append(elapsed)
        results[name] = (1000 * statistics.median(times[reference]), 1000 * statistics.median(times[fused]))
    fused.kernel = "auto"
    return results, "fused" if fused.uses_fused(x) else "nn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"], choices=list(CELLS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound competitor processes to run alongside")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    competitors = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        report(args)
    finally:
        for competitor in competitors:
            competitor.kill()


def report(args: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, {args.busy} competing "
          f"processes, load average {os.getloadavg()[0]:.2f}; median of {args.repeats} interleaved repeats")
    print(f"{'size (B, T, I, H)':28} {'cell':5} {'measure':14} {'nn ms':>9} {'fused ms':>9} {'nn/fused':>9}  auto trains")
    for size_name in args.sizes:
        size = SIZES[size_name]
        label = f"{size_name} {size}"
        for cell in args.cells:
            results, auto = compare(cell, size, args.repeats)
            for measure, (ms_torch, ms_fused) in results.items():
                print(f"{label:28} {cell:5} {measure:14} {ms_torch:9.1f} {ms_fused:9.1f} {ms_torch / ms_fused:8.2f}x  {auto}",
                      flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
