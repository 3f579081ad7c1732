"""Truncated BPTT: time and memory per training step do not grow with the length of the text.

Runs the trainer's own training pass (Trainer.train_epoch: carried, detached state)
for a fixed number of steps on streams of increasing length, and reports the
median time per step, the bytes autograd saves for backward in one step (the memory
that full BPTT would grow with the text), and the process's resident memory.

    python scripts/bench_tbptt.py
    python scripts/bench_tbptt.py --lengths 100000 1000000 10000000 30000000 --steps 20
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from seqtrain.data.streams import StreamLoader
from seqtrain.tasks import build_config, make_task
from seqtrain.tasks.language_modeling import LanguageModelMeta
from seqtrain.training.tensorboard import RunLogger
from seqtrain.training.trainer import Trainer, make_optimizer


class StepMeter:
    """Per training step: the wall time, and the distinct tensors autograd keeps for backward (peak over steps)."""

    def __init__(self) -> None:
        self.seen: set[tuple] = set()
        self.current = self.peak = 0
        self.starts: list[float] = []

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        # a tensor saved by several ops (the weights, at every time step) counts once; a view
        # (an input chunk of the stream) counts its own bytes, not the stream it looks into
        key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if key not in self.seen:
            self.seen.add(key)
            self.current += tensor.numel() * tensor.element_size()
            self.peak = max(self.peak, self.current)
        return tensor

    def new_step(self, *_) -> None:
        self.seen.clear()
        self.current = 0
        self.starts.append(time.perf_counter())

    def median_step(self) -> float:
        gaps = sorted(b - a for a, b in zip(self.starts, self.starts[1:]))
        return gaps[len(gaps) // 2]


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000, 30_000_000])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = make_task(build_config("shakespeare", {"max_steps": args.steps}))
    config = task.config
    vocab = 65
    m, t = config.model, config.train
    print(f"model {m.layers}x{m.hidden} {m.cell}, batch {t.batch_size}, bptt {t.bptt}, {args.steps} steps, "
          f"{args.threads} thread(s), CPU")
    print(f"{'text tokens':>12} {'chunks/epoch':>13} {'median ms/step':>15} {'saved for backward MiB/step':>28} {'RSS MiB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        log = RunLogger(Path(tmp))
        for length in args.lengths:
            torch.manual_seed(0)
            loader = StreamLoader(torch.randint(0, vocab, (length,)), t.batch_size, t.bptt)
            model = task.build_model(LanguageModelMeta("char", [str(i) for i in range(vocab)]))
            trainer = Trainer(task)
            optimizer = make_optimizer(t, model.parameters())
            meter = StepMeter()
            model.register_forward_pre_hook(meter.new_step)  # one forward per training step
            with torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda x: x):
                trainer.train_epoch(model, loader, torch.device("cpu"), optimizer, log)
            print(f"{length:>12,} {len(loader):>13,} {meter.median_step() * 1e3:>15.1f} {meter.peak / 2**20:>28.1f} "
                  f"{rss_mib():>8.0f}", flush=True)
        log.close()


if __name__ == "__main__":
    main()
