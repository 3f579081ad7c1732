"""Is feature extraction the bottleneck? WAV decoding + log-mel features per second against the model's training step.

Side by side in one process, interleaved round by round, on the same
recordings: (1) decode the WAV files (seqtrain/data/audio.py), (2) the
front-end's log-mel frames of a batch (models/features.py, as the model
computes them in every step), (3) one whole training step of the default
`fsdd` model (forward with the front-end, backward, Adam). Each is reported
as recordings per second, best round; the ratios say how much of a step the
features take and how far decoding is ahead of training.

    python scripts/bench_features.py --data ../shared/data/fsdd/fsdd-26eb9aaf.tar.gz [--files 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from seqtrain.data.audio import load_audio
from seqtrain.tasks import build_config, make_task
from seqtrain.tasks.signals import SignalMeta


def wav_files(data: Path, count: int, folder: Path) -> list[Path]:
    """`count` WAV files: from a folder, or extracted from an archive into `folder`."""
    if data.is_dir():
        return sorted(data.rglob("*.wav"))[:count]
    with tarfile.open(data) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".wav")), key=lambda m: m.name)[:count]
        tar.extractall(folder, members=members, filter="data")
    return sorted(folder.rglob("*.wav"))


def measure(files: list[Path], rounds: int, batch: int) -> dict[str, float]:
    task = make_task(build_config("fsdd", {"threads": 1}))
    meta = SignalMeta([str(d) for d in range(10)], task.config.data.n_mels, torch.zeros(task.config.data.n_mels),
                      torch.ones(task.config.data.n_mels))
    task.meta = meta
    model = task.build_model(meta).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    frontend = task.frontend()
    rate = task.config.data.sample_rate
    waves = [torch.from_numpy(load_audio(f, rate)) for f in files]
    batches = [waves[i : i + batch] for i in range(0, len(waves), batch)]
    padded = [(nn.utils.rnn.pad_sequence(b, batch_first=True), torch.tensor([len(w) for w in b])) for b in batches]
    targets = [torch.randint(0, 10, (len(b),)) for b in batches]
    best = {"decode": 0.0, "features": 0.0, "train step": 0.0}

    def decode() -> None:
        for f in files:
            load_audio(f, rate)

    def features() -> None:
        with torch.no_grad():
            for x, lengths in padded:
                frontend(x, lengths)

    def train_step() -> None:
        for (x, lengths), y in zip(padded, targets):
            loss = nn.functional.cross_entropy(model(x, lengths), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    for _ in range(rounds):
        for name, run in (("decode", decode), ("features", features), ("train step", train_step)):
            start = time.perf_counter()
            run()
            best[name] = max(best[name], len(files) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="A folder of WAV files or an archive holding them (FSDD).")
    parser.add_argument("--files", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        files = wav_files(args.data, args.files, Path(folder))
        rates = measure(files, args.rounds, args.batch)
    print(f"{len(files)} recordings, batches of {args.batch}, one thread, best of {args.rounds} interleaved rounds")
    for name, value in rates.items():
        print(f"  {name:<11} {value:>10,.0f} recordings/s")
    step = rates["train step"]
    print(f"  decoding is {rates['decode'] / step:,.1f}x the training step's rate; the features take "
          f"{step / rates['features']:.1%} of a step's time")


if __name__ == "__main__":
    main()
