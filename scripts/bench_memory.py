"""Peak memory of `seqtrain fit --task text` as the longest text grows 10x and 100x: it should stay flat.

The data is a folder of class folders (200 short reviews per class) plus one
review of N words, N = 10,000 (1x), 100,000 (10x) and 1,000,000 (100x). Each
case is a real `seqtrain fit` run (one epoch of a small GRU, the default
--max-text-tokens and --batch-tokens) in a process of its own, and the
child's peak resident memory is read with getrusage; the cases are interleaved
over the rounds, and each case's median is printed with its ratio to 1x.

    python scripts/bench_memory.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["good", "bad", "film", "plot", "actor", "scene", "story", "great", "awful", "music"]
SCALES = {"1x": 10_000, "10x": 100_000, "100x": 1_000_000}


def peak_run(args: list[str], cwd: Path) -> dict:
    """Run `seqtrain ARGS` in a child process of its own: exit code, peak RSS (MiB), wall seconds, stderr lines."""
    child = (
        "import resource, sys, json\n"
        "from seqtrain_cli.main import app\n"
        "try:\n    app(sys.argv[1:], standalone_mode=True)\n"
        "except SystemExit as exc:\n    code = exc.code or 0\n"
        "else:\n    code = 0\n"
        "print(json.dumps({'rc': code, 'peak_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.__stdout__)\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", child, *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    report = json.loads(done.stdout.strip().splitlines()[-1])
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    return {"rc": report["rc"], "peak_mib": report["peak_kib"] / 1024, "wall_s": wall, "stderr": errors}


def corpus(folder: Path, longest: int, seed: int = 0) -> Path:
    """Class folders of short reviews, one of them `longest` words long."""
    rng = random.Random(seed)
    for label in ("pos", "neg"):
        (folder / label).mkdir(parents=True)
        for i in range(200):
            words = [rng.choice(WORDS) for _ in range(rng.randint(20, 80))]
            (folder / label / f"{i}.txt").write_text(" ".join(words))
    with open(folder / "pos" / "long.txt", "w") as handle:
        for _ in range(longest // 10_000):
            handle.write(" ".join(rng.choice(WORDS) for _ in range(10_000)) + " ")
    return folder


def fit_args(data: Path, logdir: Path, cache: Path) -> list[str]:
    return ["fit", "--task", "text", "--data", str(data), "--logdir", str(logdir), "--cache-dir", str(cache),
            "--epochs", "1", "--hidden", "32", "--embed-dim", "32", "--threads", "1", "-q"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folders = {name: corpus(work / name, words) for name, words in SCALES.items()}
        peaks: dict[str, list[float]] = {name: [] for name in SCALES}
        for round_ in range(rounds):
            for name, folder in folders.items():
                cache = work / f"cache-{name}-{round_}"  # a fresh cache: every run reads and encodes its texts
                result = peak_run(fit_args(folder, work / "runs", cache), work)
                if result["rc"] != 0:
                    raise SystemExit(f"{name}: exit {result['rc']}: {result['stderr'][-1:]}")
                peaks[name].append(result["peak_mib"])
                print(f"round {round_ + 1} {name:>4} ({SCALES[name]:>9,} words): peak {result['peak_mib']:7.1f} MiB, "
                      f"{result['wall_s']:.1f} s", flush=True)
    base = statistics.median(peaks["1x"])
    print(f"\nlongest text      peak RSS (median of {rounds})   ratio to 1x")
    for name, values in peaks.items():
        print(f"{SCALES[name]:>9,} words   {statistics.median(values):8.1f} MiB            {statistics.median(values) / base:.3f}")


if __name__ == "__main__":
    main()
