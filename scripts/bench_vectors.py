"""Loading a GloVe-sized text file: time cold (parse, then cache) and warm (from the cache), and peak memory.

    python scripts/bench_vectors.py [--rows 400000 --dim 100] [--rounds 2]

Writes a synthetic file of GloVe's shape (words, then values with six decimals, as glove.6B.100d.txt)
into a temporary folder. Each measurement runs in a fresh Python process (so its peak resident memory
is its own; the figure shown is the peak above what the process held after its imports), interleaving the current loader with the line-by-line parser seqtrain used before
(floats per row, a tensor built from lists, the word list pickled in the cache), and prints the
best round of each and their ratios.
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
from seqtrain.data.vectors import load_vectors
path, cache, kind = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()  # imports excluded: they cost the same to both
if kind == "current":
    vectors = load_vectors(path, cache=cache)
    shape = tuple(vectors.vectors.shape)
else:
    cached = Path(cache) / "previous.pt"
    if cached.exists():
        blob = torch.load(cached, weights_only=True)
    else:
        words, rows = [], []
        with open(path, "rb") as handle:
            for line in handle:
                parts = line.rstrip(b"\r\n").split(b" ")
                words.append(parts[0].decode("utf-8", errors="replace"))
                rows.append([float(v) for v in parts[1:]])
        blob = {"words": words, "vectors": torch.tensor(rows, dtype=torch.float32)}
        torch.save(blob, cached)
    shape = tuple(blob["vectors"].shape)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base, "shape": shape}))
"""


def write_file(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        for start in range(0, rows, 10000):
            block = (rng.standard_normal((min(10000, rows - start), dim)) * 0.4).astype(np.float32)
            for offset, row in enumerate(block):
                handle.write(f"w{start + offset} " + " ".join(f"{v:.6f}" for v in row) + "\n")


def measure(path: Path, cache: Path, kind: str) -> dict:
    output = subprocess.run([sys.executable, "-c", CHILD, str(path), str(cache), kind], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "vectors.txt"
        started = time.perf_counter()
        write_file(path, args.rows, args.dim)
        print(f"wrote {args.rows:,} x {args.dim} ({path.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - started:.1f} s; "
              f"the matrix alone is {args.rows * args.dim * 4 / 2**20:,.0f} MiB")
        best: dict[tuple[str, str], dict] = {}
        for round_ in range(args.rounds):
            for kind in ("current", "previous"):
                cache = Path(folder) / f"cache-{kind}-{round_}"
                cache.mkdir()
                for phase in ("cold", "warm"):
                    result = measure(path, cache, kind)
                    print(f"round {round_ + 1} {kind:8} {phase}: {result['seconds']:6.2f} s, peak {result['peak_mb']:,.0f} MB")
                    key = (kind, phase)
                    if key not in best or result["seconds"] < best[key]["seconds"]:
                        best[key] = result
        print("\nbest of rounds | current | previous | current is")
        for phase in ("cold", "warm"):
            now, before = best[("current", phase)], best[("previous", phase)]
            print(f"{phase}: {now['seconds']:.2f} s, {now['peak_mb']:,.0f} MB | {before['seconds']:.2f} s, "
                  f"{before['peak_mb']:,.0f} MB | {before['seconds'] / now['seconds']:.1f}x faster")


if __name__ == "__main__":
    main()
