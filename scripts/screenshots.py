"""Regenerate the docs' pictures: the figure of the seams, the terminal progress display, and TensorBoard.

    python scripts/screenshots.py                       # all of them, into docs/assets/
    python scripts/screenshots.py --only seams progress # a subset

- seams.svg: drawn here from the list below (no tool needed).
- progress.svg: a real short run in a real terminal (Debian's tmux, `apt-get install tmux`: the run in a
  100x32 pane, its last screen taken with `capture-pane`), turned into SVG by rich (`Console.export_svg`).
- tensorboard-*.png: real runs' TensorBoard (scalars, the HParams table, the embedding projector),
  served by `tensorboard` and photographed by Debian's headless Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "docs" / "assets"
CHROMIUM_FLAGS = [  # what runs headless on these machines (no GPU, no network beyond localhost)
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    "--enable-unsafe-swiftshader",  # software WebGL, for the projector
]

# (what happens, where it lives): the seams in the order a run crosses them
SEAMS = [
    ("flags  /  --config run/config.toml", "cli/  (flags generated from the settings)"),
    ("Config(task, train, model, data)", "seqtrain/config.py  (one schema per task)"),
    ("task = Task(config)   @register(\"name\")", "seqtrain/tasks/<family>.py"),
    ("task.prepare() → TaskData(loaders, meta)", "seqtrain/data/  (read, tokenize, batch)"),
    ("task.build_model(meta) → nn.Module", "seqtrain/models/"),
    ("Trainer(task).fit():  task.step → StepResult", "seqtrain/training/trainer.py"),
    ("best.pt / last.pt, TensorBoard, metrics.json", "seqtrain/training/  (atomic, weights_only)"),
    ("load_trained → predict | generate | translate | forecast", "seqtrain/inference.py"),
]


def seams_svg() -> str:
    """A vertical flow of boxes with arrows, each labelled with the module that owns it."""
    box_w, box_h, gap, left, label_x = 440, 40, 22, 20, 490
    height = len(SEAMS) * (box_h + gap) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="860" height="{height}" viewBox="0 0 860 {height}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="14">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#455a64"/></marker></defs>',
    ]
    for index, (what, where) in enumerate(SEAMS):
        y = 10 + index * (box_h + gap)
        parts.append(f'<rect x="{left}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="#e8eaf6" '
                     'stroke="#3f51b5" stroke-width="1.5"/>')
        parts.append(f'<text x="{left + 12}" y="{y + 25}" fill="#1a237e">{escape(what)}</text>')
        parts.append(f'<text x="{label_x}" y="{y + 25}" fill="#546e7a" font-size="13">{escape(where)}</text>')
        if index:
            x = left + box_w // 2
            parts.append(f'<line x1="{x}" y1="{y - gap}" x2="{x}" y2="{y - 2}" stroke="#455a64" '
                         'stroke-width="1.5" marker-end="url(#arrow)"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def progress_svg(work: Path, command: str = "seqtrain fit --task sine --epochs 3 --threads 1") -> str:
    """A real short run in a real terminal: tmux runs it in a 100x32 pane, capture-pane keeps the last screen with
    its colours, and rich turns that screen into SVG (Console.export_svg)."""
    from rich.console import Console
    from rich.text import Text

    if shutil.which("tmux") is None:
        raise SystemExit("tmux not found: apt-get install tmux")
    session = f"seqtrain-shot-{os.getpid()}"
    done = work / "progress.done"
    shell = f"cd {work} && {command}; touch {done}; sleep 600"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "32", shell], check=True)
    try:
        while not done.exists():
            time.sleep(1)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-e", "-t", session], check=True,
                                capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    console = Console(record=True, width=100, file=open(os.devnull, "w"))
    console.print(Text.from_ansi(screen.rstrip() + "\n"))
    return console.export_svg(title=command)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_for_tensorboard(work: Path, corpus: Path) -> tuple[Path, Path]:
    """Real runs to show: two forecasters that differ in their cell (scalars, HParams), and word vectors (projector)."""
    forecasts, vectors = work / "forecasts", work / "vectors"
    fit = [sys.executable, "-m", "seqtrain", "fit", "--threads", "1", "--quiet"]
    for cell in ("gru", "lstm"):
        subprocess.run(fit + ["--logdir", str(forecasts), "--task", "sine", "--epochs", "4", "--cell", cell], check=True)
    subprocess.run(fit + ["--logdir", str(vectors), "--task", "word2vec", "--text", str(corpus), "--epochs", "2"],
                   check=True)
    return forecasts, vectors


def shoot(url: str, out: Path, wait_ms: int = 25000, size: str = "1280,800") -> None:
    """One headless Chromium screenshot of `url`, after `wait_ms` of the page's own time to render."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                        f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=120)


def serve(logdir: Path) -> tuple[subprocess.Popen, str]:
    """A TensorBoard server on a free local port, once it answers."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port),
                               "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    for _ in range(120):
        try:
            urllib.request.urlopen(base, timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    return server, base


def tensorboard_pngs(work: Path, out: Path, corpus: Path) -> None:
    forecasts, vectors = train_for_tensorboard(work, corpus)
    # forceSVG: TensorBoard draws its charts as SVG, which headless Chromium renders in time (WebGL ones stay blank)
    shots = {forecasts: {"tensorboard-scalars.png": "?forceSVG=true&tagFilter=epoch%2Fval%2F#timeseries",
                         "tensorboard-hparams.png": "#hparams"},
             vectors: {"tensorboard-projector.png": "#projector"}}
    for logdir, pages in shots.items():
        server, base = serve(logdir)
        try:
            for name, page in pages.items():
                shoot(base + page, out / name, size="1440,900")
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=("seams", "progress", "tensorboard"),
                        default=("seams", "progress", "tensorboard"))
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt",
                        help="A text for the word2vec run whose vectors the projector shows.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SEQTRAIN_CACHE", tempfile.mkdtemp(prefix="seqtrain-cache-"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "seams" in args.only:
            (args.out / "seams.svg").write_text(seams_svg())
        if "progress" in args.only:
            (args.out / "progress.svg").write_text(progress_svg(work))
        if "tensorboard" in args.only:
            tensorboard_pngs(work, args.out, args.corpus)
    for path in sorted(args.out.iterdir()):
        print(f"{path}  {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
