"""Fused recurrent layers (seqtrain/models/fused.py) against nn.LSTM/GRU/RNN on CPU, side by side in one process.

    python scripts/bench_kernel.py [--threads 1] [--cells lstm gru rnn] [--repeats 7] [--busy 1]

For each size and cell, times one training step's recurrent work (forward,
then backward from a loss over every output) and one inference forward
(no_grad) of nn's module and of the fused one with the same weights,
interleaved repeat by repeat, and prints the medians, the ratio
nn / fused (> 1: fused is faster) and which of the two kernel "auto" runs for
that measure. The "floor" columns time, in the same rounds, the matrix products
alone that any implementation of the layer must do (forward: the input
projection of all steps and one recurrent product per step; backward: one
recurrent product per step for dh, then dW_ih, dW_hh and dx), each the
fastest way at hand and the per-step ones as one big product: nn / floor
bounds what any kernel built on these matrix products could gain over nn here. The load average before and after is
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
from seqtrain.models.fused_loop import compiled_loop

SIZES = {  # name: (batch, steps, input, hidden)
    "lectures": (128, 200, 32, 32),
    "char-lm": (64, 100, 64, 512),
}
CELLS = {"lstm": (nn.LSTM, FusedLSTM), "gru": (nn.GRU, FusedGRU), "rnn": (nn.RNN, FusedRNN)}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def fastest_product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor):
    """A function computing a @ b into out by whichever is faster here: torch.mm or the compiled loop's kernel."""
    ways = [lambda: torch.mm(a, b, out=out)]
    if compiled_loop() is not None and a.is_contiguous():
        ways.append(lambda: compiled_loop().matmul(a, b, None, out))
    return min(ways, key=lambda way: min(seconds(way) for _ in range(3)))


def matrix_products(cell: str, size: tuple[int, int, int, int]):
    """(forward, backward): a lower bound on the time of the layer's matrix products, as two functions.

    Forward: the input projection of all steps, then the T recurrent products
    [B, H] @ [H, gates*H] done as ONE product over all T*B rows (the same
    arithmetic without the per-step calls); backward: likewise the T products
    for dh, then dW_ih, dW_hh and dx. Each by the faster of torch.mm and the
    compiled loop's kernel, into preallocated buffers.
    """
    batch, steps, inputs, hidden = size
    rows, width = steps * batch, GATES[cell] * hidden
    x, w_ih, w_hh = torch.randn(rows, inputs), torch.randn(width, inputs), torch.randn(width, hidden)
    gates, h = torch.randn(rows, width), torch.randn(rows, hidden)
    forward = [fastest_product(x, w_ih.t(), torch.empty(rows, width)), fastest_product(h, w_hh.t(), gates)]
    backward = [
        fastest_product(gates, w_hh, torch.empty(rows, hidden)),
        fastest_product(gates.t(), x, torch.empty(width, inputs)),
        fastest_product(gates.t(), h, torch.empty(width, hidden)),
        fastest_product(gates, w_ih, torch.empty(rows, inputs)),
    ]
    return (lambda: [product() for product in forward]), (lambda: [product() for product in backward])


def train_step(module: nn.Module, x: torch.Tensor) -> None:
    out, _ = module(x)
    out.sum().backward()


def infer(module: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        module(x)


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def compare(cell: str, size: tuple[int, int, int, int], repeats: int) -> dict[str, tuple[float, float, float, str]]:
    """Per measurement: median milliseconds of nn, fused and the matrix products alone, timed alternately; what "auto" runs."""
    batch, steps, inputs, hidden = size
    torch_cls, fused_cls = CELLS[cell]
    reference = torch_cls(inputs, hidden, batch_first=True)
    fused = fused_cls(inputs, hidden, batch_first=True, kernel="fused")
    fused.load_state_dict(reference.state_dict())
    auto = fused_cls(inputs, hidden, batch_first=True)
    x = torch.randn(batch, steps, inputs, requires_grad=True)
    forward, backward = matrix_products(cell, size)
    floors = {"train fwd+bwd": lambda: (forward(), backward()), "infer fwd": forward}
    results = {}
    for name, work in (("train fwd+bwd", train_step), ("infer fwd", infer)):
        runs = {"nn": lambda: work(reference, x), "fused": lambda: work(fused, x), "floor": floors[name]}
        times: dict[str, list[float]] = {key: [] for key in runs}
        for index in range(repeats + 1):  # the first round warms up
            for key, run in runs.items():
                elapsed = seconds(run)
                if index:
                    times[key].append(elapsed)
        with torch.set_grad_enabled(name == "train fwd+bwd"):
            chosen = "fused" if auto.uses_fused(x) else "nn"
        results[name] = (*(1000 * statistics.median(times[key]) for key in runs), chosen)
    return results


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
          f"processes, load average {os.getloadavg()[0]:.2f}; median of {args.repeats} interleaved repeats; "
          f"fused loop: {'compiled' if compiled_loop() is not None else 'Python'}")
    print(f"{'size (B, T, I, H)':28} {'cell':5} {'measure':14} {'nn ms':>9} {'fused ms':>9} {'nn/fused':>9} "
          f"{'floor ms':>9} {'nn/floor':>9}  auto runs")
    for size_name in args.sizes:
        size = SIZES[size_name]
        label = f"{size_name} {size}"
        for cell in args.cells:
            for measure, (ms_torch, ms_fused, ms_floor, auto) in compare(cell, size, args.repeats).items():
                print(f"{label:28} {cell:5} {measure:14} {ms_torch:9.1f} {ms_fused:9.1f} {ms_torch / ms_fused:8.2f}x "
                      f"{ms_floor:9.1f} {ms_torch / ms_floor:8.2f}x  {auto}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
