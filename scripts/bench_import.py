"""What `import seqtrain` costs a script: wall time of fresh interpreters, interleaved with the baselines.

    python scripts/bench_import.py [--rounds 20]

Each round starts one interpreter per statement, in turn: an empty one
(`pass`, the interpreter alone), `import seqtrain` (the Python API, which
leaves torch unimported), and `import torch` (what every call that trains or
loads a model pays once). Prints the median wall time of each, the cost of
`import seqtrain` over the empty interpreter, and whether it imported torch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

STATEMENTS = {"python alone": "pass", "import seqtrain": "import seqtrain", "import torch": "import torch"}


def wall_time(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for _ in range(args.rounds):
        for name, statement in STATEMENTS.items():
            times[name].append(wall_time(statement))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:16} median {median * 1000:7.0f} ms  (min {min(times[name]) * 1000:.0f} ms, {args.rounds} rounds)")
    own = medians["import seqtrain"] - medians["python alone"]
    print(f"import seqtrain costs {own * 1000:.0f} ms over the interpreter; import torch "
          f"{(medians['import torch'] - medians['python alone']) * 1000:.0f} ms")
    probe = "import sys, seqtrain; print('torch' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    print(f"torch imported by `import seqtrain`: {imported}")


if __name__ == "__main__":
    main()
