"""Batch preparation against the training step: whether DataLoader workers would pay.

For each task, with its defaults and real data, two things are timed in one
process, interleaved over rounds (best round of each, these machines are
noisy): the training loader's iteration alone over N batches (what worker
processes would take off the main one: bucketing, padding, slicing), and the
trainer's own training pass over the same N batches, already made. The share
is preparation / (preparation + steps).

    SEQTRAIN_CACHE=... python scripts/bench_loader.py imdb=../shared/data/imdb/aclImdb-labeled.tar.gz \\
        shakespeare=../shared/data/tinyshakespeare/input.txt [--batches 30] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import torch

from seqtrain.tasks import build_config, make_task
from seqtrain.training.trainer import Trainer, make_optimizer


class Made:
    """Batches made beforehand, as the trainer's Loader: the pass then times the steps alone."""

    def __init__(self, batches: list[Any]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)

    def set_epoch(self, epoch: int) -> None:
        pass


def measure(name: str, data: str, batches: int, rounds: int) -> tuple[float, float]:
    """(seconds per batch made, seconds per training step), the best round of each."""
    task = make_task(build_config(name, {"data": data, "device": "cpu"}))
    prepared = task.prepare(quiet=True)
    model = task.build_model(prepared.meta)
    optimizer = task.optimizer(model) or make_optimizer(task.config.train, model.parameters())
    trainer = Trainer(task)
    loader = prepared.train
    made_best = step_best = float("inf")
    for round_ in range(rounds):
        loader.set_epoch(round_)
        start = time.perf_counter()
        made = list(itertools.islice(loader, batches))
        making = (time.perf_counter() - start) / len(made)
        start = time.perf_counter()
        trainer.train_epoch(model, Made(made), torch.device("cpu"), optimizer)
        step = (time.perf_counter() - start) / len(made)
        made_best, step_best = min(made_best, making), min(step_best, step)
        print(f"  {name} round {round_ + 1}: {making * 1e3:.2f} ms a batch made, {step * 1e3:.1f} ms a step", flush=True)
    return made_best, step_best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="+", help="TASK=DATA: a task name and its --data")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.batches} batches, {args.rounds} rounds")
    results = {}
    for spec in args.tasks:
        name, _, data = spec.partition("=")
        results[name] = measure(name, data, args.batches, args.rounds)
    print("\ntask          batch made   training step   preparation share")
    for name, (made, step) in results.items():
        print(f"{name:12s} {made * 1e3:8.2f} ms   {step * 1e3:9.1f} ms   {made / (made + step):9.3%}")


if __name__ == "__main__":
    main()
