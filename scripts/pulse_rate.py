"""Write a seeded regression set of pulse recordings: the target is the pulse rate in beats per minute.

    python scripts/pulse_rate.py OUT [--train 2000] [--test 1000] [--rate 25] [--seed 0]

Each recording is 4-8 s of a photoplethysmogram-like pulse wave (a systolic
peak and a smaller dicrotic one per beat, beat-to-beat jitter, breathing
baseline wander, a per-recording gain, sensor noise) beside an accelerometer
channel whose motion bursts also disturb the pulse channel, as in wrist-worn
heart-rate sets (e.g. the Monash TSER archive's PPGDalia). The rate is drawn
from 45-150 bpm. Written in the two layouts `seqtrain fit --task signal`
reads: `OUT/PulseRate_{TRAIN,TEST}.ts` (the TSER `.ts` format,
`@targetLabel true`) and `OUT/pulse_rate.csv` (long format: id, t, ppg,
accel, bpm; every recording, train ones first).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

LOWEST, HIGHEST = 45.0, 150.0  # bpm


def recording(rng: np.random.Generator, rate_hz: float) -> tuple[np.ndarray, float]:
    """One recording [steps, 2] (pulse, acceleration) and its pulse rate in bpm."""
    bpm = rng.uniform(LOWEST, HIGHEST)
    seconds = rng.uniform(4, 8)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    pulse = np.zeros_like(t)
    beat = rng.uniform(-0.5, 0) * 60 / bpm  # the first beat before the recording starts
    while beat < t[-1] + 1:
        width = 0.08 * rng.uniform(0.8, 1.2)
        pulse += np.exp(-0.5 * ((t - beat - 0.12) / width) ** 2)  # systolic peak
        pulse += 0.4 * np.exp(-0.5 * ((t - beat - 0.38) / (1.5 * width)) ** 2)  # dicrotic peak
        beat += 60 / bpm * (1 + rng.normal(0, 0.04))
    breathing = rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 2 * np.pi))
    motion = np.zeros_like(t)
    for _ in range(rng.poisson(1.0)):
        start, length = rng.uniform(0, t[-1]), rng.uniform(0.3, 1.2)
        inside = (t >= start) & (t < start + length)
        motion[inside] += rng.normal(0, rng.uniform(0.5, 1.5), inside.sum())
    gain = rng.uniform(0.5, 2.0)
    ppg = gain * (pulse + breathing) + 0.3 * motion + rng.normal(0, 0.08, len(t))
    accel = motion + rng.normal(0, 0.05, len(t))
    return np.stack([ppg, accel], 1).astype(np.float32), float(bpm)


def write(out: Path, train: int, test: int, rate_hz: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count in (("TRAIN", train), ("TEST", test)):
        lines = ["@problemName PulseRate", "@timeStamps false", "@missing false", "@univariate false", "@dimensions 2",
                 "@equalLength false", "@targetLabel true", "@data"]
        for i in range(count):
            values, bpm = recording(rng, rate_hz)
            lines.append(":".join(",".join(f"{v:.4f}" for v in values[:, c]) for c in range(2)) + f":{bpm:.2f}")
            name = f"{split.lower()}{i}"
            rows += [(name, f"{step / rate_hz:.2f}", f"{ppg:.4f}", f"{accel:.4f}", f"{bpm:.2f}") for step, (ppg, accel) in enumerate(values)]
        (out / f"PulseRate_{split}.ts").write_text("\n".join(lines) + "\n")
    with open(out / "pulse_rate.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("id", "t", "ppg", "accel", "bpm"), *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=25.0, help="samples per second")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.out, args.train, args.test, args.rate, args.seed)


if __name__ == "__main__":
    main()
