"""Reliability figures for the README: kill -9 at random moments, a diverging run, a full disk during a save.

Each check runs the real `seqtrain fit` command in a process of its own:

- kill: an uninterrupted run, then N runs killed with SIGKILL at a moment drawn
  uniformly over the uninterrupted run's training (from its first step
  checkpoint to its end) and resumed with `--resume` (a run killed before
  anything was saved is started again); it counts the
  resumed runs whose best.pt and last.pt weights are bitwise those of the
  uninterrupted run, and where the kills landed.
- nan: a learning rate that makes the loss non-finite: the exit code, the
  one-line message, and whether the checkpoints left are finite.
- disk: the run folder on a tmpfs too small for a later checkpoint (needs root
  for the mount; skipped otherwise): the exit code, the message, the previous
  checkpoint intact, and a resume elsewhere that finishes.

    python scripts/fault_check.py --trials 10
    python scripts/fault_check.py --checks nan disk
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--threads", "1", "--save-every", "5", "-q"]


def text_file(folder: Path, lines: int = 600) -> Path:
    """A generated text for a char LM (a few words in random order): learnable, and made without a download."""
    rng = random.Random(0)
    words = "the king queen castle sword love death night day crown".split()
    path = folder / "text.txt"
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(lines)))
    return path


def families(folder: Path) -> dict[str, list[str]]:
    return {
        "charlm (LSTM, TBPTT carry, dropout, linear lr decay)": [
            "--task", "charlm", "--text", str(text_file(folder)), "--epochs", "3", "--batch-size", "8", "--bptt", "25",
            "--hidden", "32", "--embed-dim", "16", "--dropout", "0.2", "--lr-schedule", "linear",
        ],
        "dates (GRU seq2seq, attention, teacher forcing 0.5)": [
            "--task", "dates", "--num-pairs", "1500", "--epochs", "3", "--batch-size", "32", "--hidden", "32",
            "--embed-dim", "16", "--teacher-forcing", "0.5", "--lr-schedule", "cosine",
        ],
    }


def fit(args: list[str], logdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "seqtrain", "fit", *args, "--logdir", str(logdir)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def run_dir(logdir: Path) -> Path | None:
    runs = [p for p in logdir.glob("*") if p.is_dir()]
    return runs[0] if runs else None


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same(a: Path, b: Path) -> bool:
    for name in ("best.pt", "last.pt"):
        x, y = weights(a / name), weights(b / name)
        if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
            return False
    return True


def where(run: Path | None) -> str:
    """Where the killed run stood: the step and epoch position of its last.pt, and any save cut short."""
    if run is None:
        return "before the run folder"
    cut = "; a save was cut short" if list(run.glob(".*.tmp")) else ""
    if not (run / "last.pt").exists():
        return "before the first checkpoint" + cut
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["state"]
    if state["position"]:
        return f"last.pt at step {state['global_step']} (epoch {state['epoch'] + 1}, batch {state['position']}){cut}"
    return f"last.pt at step {state['global_step']} (end of epoch {state['epoch']}){cut}"


def first_checkpoint(process: subprocess.Popen, logdir: Path) -> float:
    """Wait until the run's first checkpoint is on disk (training has begun); the moment it appeared."""
    while not list(logdir.glob("*/*.pt")) and process.poll() is None:
        time.sleep(0.005)
    return time.perf_counter()


def check_kills(folder: Path, trials: int, rng: random.Random) -> None:
    for name, args in families(folder).items():
        straight = folder / f"straight-{len(name)}"
        process = fit(args + COMMON, straight)
        training = first_checkpoint(process, straight)
        assert process.wait() == 0, process.stderr.read()
        duration = time.perf_counter() - training
        equal, notes = 0, []
        for trial in range(trials):
            logdir = folder / f"killed-{len(name)}-{trial}"
            moment = rng.uniform(0, duration)
            process = fit(args + COMMON, logdir)
            first_checkpoint(process, logdir)
            time.sleep(moment)
            finished = process.poll() is not None
            process.send_signal(signal.SIGKILL)
            process.wait()
            run = run_dir(logdir)
            landed = "after the run ended" if finished else where(run)
            if run is not None and ((run / "last.pt").exists() or (run / "best.pt").exists()):
                resumed = subprocess.run([sys.executable, "-m", "seqtrain", "fit", "--resume", str(run), "-q"], cwd=ROOT,
                                         capture_output=True, text=True)
                ok_run = resumed.returncode == 0 or "already finished" in resumed.stderr
            else:  # killed before anything was saved: the user starts again
                shutil.rmtree(logdir, ignore_errors=True)
                ok_run = fit(args + COMMON, logdir).wait() == 0
                run = run_dir(logdir)
            match = ok_run and same(run_dir(straight), run)
            equal += match
            notes.append(f"  kill {moment:5.1f}s after the first checkpoint: {landed} -> {'bitwise equal' if match else 'DIFFERENT'}")
        print(f"{name}: {duration:.1f}s of training after the first checkpoint; "
              f"{equal}/{trials} killed-and-resumed runs bitwise equal")
        print("\n".join(notes), flush=True)


def check_nan(folder: Path) -> None:
    args = ["--task", "sine", "--epochs", "2", "--hidden", "16", "--optimizer", "sgd", "--lr", "1e6", "--clip", "0",
            "--threads", "1", "--save-every", "1"]
    process = fit(args, folder / "nan")
    code = process.wait()
    message = " ".join(process.stderr.read().split())
    run = run_dir(folder / "nan")
    finite = {p.name: all(torch.isfinite(v).all().item() for v in weights(p).values()) for p in sorted(run.glob("*.pt"))}
    print(f"nan: seqtrain fit {' '.join(args)}\n  exit {code}: {message}\n  checkpoints left, all weights finite: {finite}")


def check_disk(folder: Path) -> None:
    mount = folder / "small-disk"
    mount.mkdir()
    args = families(folder)["charlm (LSTM, TBPTT carry, dropout, linear lr decay)"] + ["--threads", "1", "-q"]
    probe = fit(args + ["--epochs", "1"], folder / "probe")
    assert probe.wait() == 0, probe.stderr.read()
    size = (run_dir(folder / "probe") / "best.pt").stat().st_size
    limit = int(size * 2.6) + 64 * 1024  # best.pt and last.pt fit, a third file (the next save's temporary) does not
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={limit}", "tmpfs", str(mount)], capture_output=True).returncode:
        print("disk: skipped (mounting a small tmpfs needs root)")
        return
    try:
        process = fit(args, mount)
        code = process.wait()
        message = " ".join(process.stderr.read().split())
        run = run_dir(mount)
        kept = {}
        for name in ("best.pt", "last.pt"):
            if (run / name).exists():
                state = torch.load(run / name, map_location="cpu", weights_only=True)["state"]
                kept[name] = f"loads, epoch {state['epoch']}"
        leftovers = [p.name for p in run.glob(".*.tmp")]
        moved = folder / "freed" / run.name
        shutil.copytree(run, moved)
    finally:
        subprocess.run(["umount", str(mount)])
    resumed = subprocess.run([sys.executable, "-m", "seqtrain", "fit", "--resume", str(moved), "-q"], cwd=ROOT,
                             capture_output=True, text=True)
    report = json.loads((moved / "metrics.json").read_text()) if resumed.returncode == 0 else {}
    print(f"disk: logdir on a {limit / 2**10:.0f} KiB tmpfs (checkpoint {size / 2**10:.0f} KiB)\n  exit {code}: {message}\n"
          f"  kept: {kept}; temporary files left: {leftovers}\n"
          f"  resumed elsewhere: exit {resumed.returncode}, {report.get('epochs')} epochs, test {report.get('test')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="killed runs per task family")
    parser.add_argument("--checks", nargs="+", default=["kill", "nan", "disk"], choices=["kill", "nan", "disk"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "nan" in args.checks:
            check_nan(folder)
        if "disk" in args.checks:
            check_disk(folder)
        if "kill" in args.checks:
            check_kills(folder, args.trials, random.Random(args.seed))


if __name__ == "__main__":
    main()
