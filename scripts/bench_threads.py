"""Training on a busy machine: the thread count seqtrain chooses against torch's default, with and without a competitor.

The same training (bench_train.py's lectures' model: Embedding(10000, 32) ->
LSTM(32) -> Dense(1) through seqtrain's Trainer, synthetic reviews of IMDB's
length spread) runs with the thread count `--threads 0` chooses (1 for this
step) and with torch's default (one per core), each without and with one
competing CPU-bound process that this script starts (a Python busy loop).
Rounds are interleaved, so a change in background load hits every cell; the
best round of each is reported, with the load that other processes put on
the machine while it ran (from /proc/stat, this process and the competitor
excluded).

    python scripts/bench_threads.py [--examples 1280] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench_train import BATCH, reviews, train_seqtrain
from seqtrain.tasks import build_config, make_task
from seqtrain.tasks.classification import ClassifierMeta
from seqtrain.training.device import CORES, choose_threads

TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq) / TICK


def process_seconds(pid: int | str = "self") -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def lecture_threads() -> tuple[int, str]:
    """What `--threads 0` chooses for this model and batch."""
    task = make_task(build_config("imdb", {"cell": "lstm", "bidirectional": False, "embed_dim": 32, "hidden": 32}))
    model = task.build_model(ClassifierMeta(["<pad>", "<unk>"] + ["w"] * 9998, ["neg", "pos"]))
    return choose_threads(0, model, BATCH, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    auto, why = lecture_threads()
    counts = {f"auto ({auto})": auto, f"torch default ({CORES})": CORES}
    seqs, targets, source = reviews(None, args.examples)
    print(f"{source}, {len(seqs)} reviews, batch {BATCH}; {os.cpu_count()} cores; --threads 0 chooses {auto} ({why})")
    for threads in counts.values():  # warm-up: first-call set-up (kernels, logging) is not part of any rate
        torch.set_num_threads(threads)
        train_seqtrain(seqs[: 2 * BATCH], targets[: 2 * BATCH])
    best: dict[tuple[str, str], float] = {}
    background: list[float] = []
    for round_ in range(args.rounds):
        for condition in ("quiet", "one competitor"):
            competitor = None
            if condition != "quiet":
                competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.5)
            for name, threads in counts.items():
                torch.set_num_threads(threads)
                rival = process_seconds(competitor.pid) if competitor is not None else 0.0
                before = (busy_seconds(), process_seconds(), time.perf_counter())
                rate = train_seqtrain(seqs, targets)
                wall = time.perf_counter() - before[2]
                ours = process_seconds() - before[1]
                if competitor is not None:
                    ours += process_seconds(competitor.pid) - rival
                other = busy_seconds() - before[0] - ours
                background.append(other / wall)
                best[name, condition] = max(best.get((name, condition), 0.0), rate)
                print(f"  round {round_ + 1} {condition:15s} {name:18s} {rate:8,.0f} samples/s  "
                      f"(other processes kept {other / wall:.2f} cores busy)", flush=True)
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    print("\nbest of rounds, samples/s:")
    print(f"  {'threads':18s} {'quiet':>9s} {'one competitor':>15s} {'slowdown':>9s}")
    for name in counts:
        quiet, busy = best[name, "quiet"], best[name, "one competitor"]
        print(f"  {name:18s} {quiet:9,.0f} {busy:15,.0f} {quiet / busy:8.1f}x")
    print(f"background load from other processes: {min(background):.2f} to {max(background):.2f} cores "
          f"(mean {sum(background) / len(background):.2f}) of {os.cpu_count()}")


if __name__ == "__main__":
    main()
