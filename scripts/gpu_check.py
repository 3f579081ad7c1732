"""Throughput of every task family on the accelerator (fp32, bf16, fp16, and DDP over the GPUs present) beside the CPU.

Each row is a real `seqtrain fit` run in a process of its own, bounded by
`--max-steps`, on data made here (a generated text for the char LM, a
generated IMDB-format corpus, sine, dates), so it needs no download. Training
steps per second come from the run's own TensorBoard events (the wall time
between the first and last `train/loss` of its training pass, the first step
excluded as warm-up); the last column is the mean training loss of the last
10 steps, to see that a lower precision still learns.

    python scripts/gpu_check.py                                 # on cuda, 300 steps, CPU reference with 30
    python scripts/gpu_check.py --device cpu --steps 20 --cpu-steps 20   # a smoke check without a GPU
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from fault_check import text_file  # scripts/ is on the path when a script runs

ROOT = Path(__file__).resolve().parents[1]


def make_imdb(folder: Path, per_class: int = 1500) -> Path:
    rng = random.Random(0)
    neutral = "the movie film plot actor scene story director camera music was is it this and a of to in".split()
    cues = {"pos": "great wonderful excellent loved brilliant".split(), "neg": "awful boring terrible hated worst".split()}
    for split in ("train", "test"):
        for label, words in cues.items():
            target = folder / "aclImdb" / split / label
            target.mkdir(parents=True)
            for i in range(per_class):
                review = [rng.choice(neutral) for _ in range(rng.randint(50, 300))]
                review.insert(rng.randrange(len(review)), rng.choice(words))
                (target / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(" ".join(review))
    return folder


def families(folder: Path) -> dict[str, list[str]]:
    return {
        "charlm (LSTM 512, batch 64 x bptt 100)": ["--task", "charlm", "--text", str(text_file(folder, 50000))],
        "imdb (LSTM classifier)": ["--task", "imdb", "--data", str(make_imdb(folder))],
        "sine (LSTM forecaster)": ["--task", "sine"],
        "dates (GRU seq2seq, attention)": ["--task", "dates"],
    }


def steps_per_second(run: Path) -> tuple[float, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    losses = events.Scalars("train/loss")
    if len(losses) < 3:
        return float("nan"), float("nan")
    rate = (len(losses) - 2) / max(losses[-1].wall_time - losses[1].wall_time, 1e-9)
    tail = [e.value for e in losses[-10:]]
    return rate, sum(tail) / len(tail)


def fit(args: list[str], logdir: Path, processes: int = 1, timeout: float = 1800) -> Path | str:
    launch = [sys.executable, "-m", "seqtrain", "fit"]
    if processes > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
                  "-m", "seqtrain", "fit"]
    try:
        done = subprocess.run(launch + args + ["--epochs", "1", "--logdir", str(logdir), "-q"], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return f"exit {done.returncode}: {lines[-1] if lines else ''}"
    return next(p for p in logdir.iterdir() if p.is_dir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke check")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run on --device")
    parser.add_argument("--cpu-steps", type=int, default=30, help="training steps of the CPU reference runs")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of the CPU runs (0: torch's default)")
    parser.add_argument("--families", nargs="*", help="only families whose name starts with one of these")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --device cpu for a smoke check")
    gpus = torch.cuda.device_count() if cuda else 0
    modes = [("cpu fp32", "cpu", "32", 1, args.cpu_steps)]
    modes += [(f"{args.device} {name}", args.device, precision, 1, args.steps)
              for name, precision in (("fp32", "32"), ("bf16", "bf16"), ("fp16", "16")) if cuda or precision == "bf16"]
    processes = gpus if gpus > 1 else (2 if not cuda else 0)
    if processes:
        modes.append((f"DDP x{processes} {'nccl' if cuda else 'gloo'} fp32", args.device, "32", processes, args.steps))
    where = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"seqtrain gpu_check on {where} ({gpus} GPU(s)), torch {torch.__version__}, {os.cpu_count()} CPU cores")
    print(f"{'family':<40} {'mode':<22} {'steps/s':>9} {'x CPU':>7} {'last loss':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for number, (name, family) in enumerate(families(folder).items()):
            if args.families and not any(name.startswith(f) for f in args.families):
                continue
            reference = None
            for index, (mode, device, precision, count, steps) in enumerate(modes):
                threads = ["--threads", str(args.threads)] if device == "cpu" and args.threads else []
                flags = family + ["--device", device, "--precision", precision, "--max-steps", str(steps)] + threads
                run = fit(flags, folder / f"runs-{number}-{index}", count)
                if isinstance(run, str):
                    print(f"{name:<40} {mode:<22} {run}", flush=True)
                    continue
                rate, loss = steps_per_second(run)
                reference = rate if device == "cpu" and count == 1 and precision == "32" else reference
                ratio = f"{rate / reference:7.1f}" if reference else "      -"
                print(f"{name:<40} {mode:<22} {rate:9.2f} {ratio} {loss:10.4f}", flush=True)


if __name__ == "__main__":
    main()
