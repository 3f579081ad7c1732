"""Teacher forcing 1.0 vs 0.5 vs a decaying schedule, on the same data, model and step budget.

Each variant is one ordinary `seqtrain fit` (same seed); the table shows the
best validation epoch's teacher-forced token accuracy (what Keras reports),
and the free-running figures that scheduled sampling is meant to improve:
exact match and BLEU of greedy decoding on the test split.

    python scripts/compare_teacher_forcing.py -- --task translate --data FILE --level char --epochs 8
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from seqtrain.training.runs import latest_run

VARIANTS = {
    "tf 1.0": ["--teacher-forcing", "1.0"],
    "tf 0.5": ["--teacher-forcing", "0.5"],
    "inverse-sigmoid 1.0 -> 0.5": ["--teacher-forcing", "0.5", "--tf-schedule", "inverse-sigmoid"],
}


def main(argv: list[str]) -> None:
    common = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if "--logdir" in common:
        at = common.index("--logdir")
        logdir = Path(common[at + 1])
        common = common[:at] + common[at + 2 :]
    else:
        logdir = Path("runs/compare-tf")
    rows = []
    for name, flags in VARIANTS.items():
        started = time.perf_counter()
        command = [sys.executable, "-m", "seqtrain", "fit", *common, *flags, "--logdir", str(logdir), "--quiet"]
        subprocess.run(command, check=True)
        wall = time.perf_counter() - started
        report = json.loads((latest_run(logdir) / "metrics.json").read_text())
        rows.append((name, report["best_val"], report["test"], wall, latest_run(logdir).name))
        print(f"done: {name} in {wall:.0f} s", flush=True)
    print("\n| teacher forcing | val token acc | test token acc | test exact match | test BLEU | wall | run |")
    print("|---|---|---|---|---|---|---|")
    for name, val, test, wall, run in rows:
        print(
            f"| {name} | {val['token_accuracy']:.3f} | {test['token_accuracy']:.3f} | {test['exact_match']:.3f} | "
            f"{test['bleu']:.1f} | {wall / 60:.1f} min | {run} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
