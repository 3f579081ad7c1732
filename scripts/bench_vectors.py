"""Loading a GloVe-sized text file: time cold (parse, then cache) and warm (from the cache), CPU time and peak memory.

    python scripts/bench_vectors.py [--rows 400000 --dim 100] [--rounds 2] [--workers N]

Writes a synthetic file of GloVe's shape (words, then values with six decimals, as glove.6B.100d.txt)
into a temporary folder. Each measurement runs in a fresh Python process (so its peak resident memory
is its own; the figure shown is the peak above what the process held after its imports), interleaving
the loader as it runs by default (chunks parsed in a pool of worker processes, one per core) with the
same loader parsing every chunk in its own process. It prints each round, the best round of each and
their ratios. CPU time is the process's and its workers' together: on a shared machine it is the
steadier figure, since wall time depends on how much of the cores the other jobs leave.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch
from seqtrain.data import vectors
path, cache, workers = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if workers:
    vectors.parse_workers = lambda: workers
def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started, cpu_started = time.perf_counter(), cpu()  # imports excluded: they cost the same to both
loaded = vectors.load_vectors(path, cache=cache)
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
print(json.dumps({"seconds": seconds, "cpu": cpu_seconds, "shape": tuple(loaded.vectors.shape),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
                  "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def write_file(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        for start in range(0, rows, 10000):
            block = (rng.standard_normal((min(10000, rows - start), dim)) * 0.4).astype(np.float32)
            for offset, row in enumerate(block):
                handle.write(f"w{start + offset} " + " ".join(f"{v:.6f}" for v in row) + "\n")


def measure(path: Path, cache: Path, workers: int) -> dict:
    output = subprocess.run([sys.executable, "-c", CHILD, str(path), str(cache), str(workers)], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    from seqtrain.data.vectors import parse_workers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="worker processes of the pooled loader; 0: its default")
    args = parser.parse_args()
    kinds = {f"pool of {args.workers or parse_workers()}": args.workers, "one process": 1}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "vectors.txt"
        started = time.perf_counter()
        write_file(path, args.rows, args.dim)
        print(f"wrote {args.rows:,} x {args.dim} ({path.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - started:.1f} s; "
              f"the matrix alone is {args.rows * args.dim * 4 / 2**20:,.0f} MiB")
        best: dict[tuple[str, str], dict] = {}
        for round_ in range(args.rounds):
            for number, (kind, workers) in enumerate(kinds.items()):
                cache = Path(folder) / f"cache-{number}-{round_}"
                cache.mkdir()
                for phase in ("cold", "warm"):
                    result = measure(path, cache, workers)
                    print(f"round {round_ + 1} {kind:11} {phase}: {result['seconds']:6.2f} s, CPU {result['cpu']:6.2f} s, "
                          f"peak {result['peak_mb']:,.0f} MiB (largest worker {result['worker_peak_mb']:,.0f} MiB)")
                    key = (kind, phase)
                    if key not in best or result["seconds"] < best[key]["seconds"]:
                        best[key] = result
        pooled, single = kinds
        print(f"\nbest of rounds | {pooled} | {single} | {pooled} is")
        for phase in ("cold", "warm"):
            now, before = best[(pooled, phase)], best[(single, phase)]
            print(f"{phase}: {now['seconds']:.2f} s (CPU {now['cpu']:.2f} s), {now['peak_mb']:,.0f} MiB | {before['seconds']:.2f} s "
                  f"(CPU {before['cpu']:.2f} s), {before['peak_mb']:,.0f} MiB | {before['seconds'] / now['seconds']:.2f}x faster")


if __name__ == "__main__":
    main()
