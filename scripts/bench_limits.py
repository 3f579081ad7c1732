"""Peak memory of `seqtrain fit` on hostile inputs, each in a process of its own, against a stated budget.

Each case is generated here (in a temporary folder), run as a real command,
and reported with its exit code, how many lines it wrote to stderr, its peak
resident memory (getrusage of the child) and its wall time. A case passes when
it exits as expected with at most one line of error and stays under --budget
MiB; the table is Markdown, for docs/limits.md.

    python scripts/bench_limits.py --budget 1024
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench_memory import WORDS, peak_run

MiB = 1 << 20


def short_rows(n: int = 200, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"text": " ".join(rng.choice(WORDS) for _ in range(30)), "label": "pos" if i % 2 else "neg"} for i in range(n)]


def jsonl_long_row(folder: Path) -> list[str]:
    """One JSON Lines row holding a 10-million-word text (50 MB)."""
    path = folder / "long.jsonl"
    with open(path, "w") as handle:
        for row in short_rows():
            handle.write(json.dumps(row) + "\n")
        handle.write('{"label": "pos", "text": "' + "word " * 10_000_000 + '"}\n')
    return ["--task", "text", "--data", str(path)]


def nul_bomb(folder: Path) -> list[str]:
    """A .tar.gz of about 300 KB holding a 300 MiB review of NUL bytes."""
    path = folder / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("aclImdb/train/pos/0_9.txt")
        info.size = 300 * MiB
        with open("/dev/zero", "rb") as zeros:
            tar.addfile(info, zeros)
    return ["--task", "imdb", "--data", str(path)]


def nul_text_file(folder: Path) -> list[str]:
    """Class folders where one review is 100 MiB of NUL bytes (read to the budget, cut, trained)."""
    for label, rows in (("pos", short_rows()[1::2]), ("neg", short_rows()[::2])):
        (folder / "nul" / label).mkdir(parents=True)
        for i, row in enumerate(rows):
            (folder / "nul" / label / f"{i}.txt").write_text(row["text"])
    with open(folder / "nul" / "pos" / "huge.txt", "wb") as handle:
        for _ in range(100):
            handle.write(bytes(MiB))
    return ["--task", "text", "--data", str(folder / "nul")]


def csv_cell(chars: int) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        """A CSV whose one cell holds `chars` characters over several lines."""
        path = folder / f"cell-{chars}.csv"
        with open(path, "w") as handle:
            handle.write("text,label\n")
            for row in short_rows():
                handle.write(f"{row['text']},{row['label']}\n")
            handle.write('"' + ("word " * 19 + "word\n") * (chars // 100) + '",pos\n')
        return ["--task", "text", "--data", str(path)]

    return make


def huge_vector_header(folder: Path) -> list[str]:
    """A word2vec binary file whose header claims 3 vectors of 1e9 values."""
    vectors = folder / "huge.bin"
    vectors.write_bytes(b"3 1000000000\n" + b"the " + bytes(12) + b"\n")
    return [*csv_cell(1000)(folder), "--embeddings", str(vectors)]


def huge_config_value(folder: Path) -> list[str]:
    """A config.toml whose hidden size has 20 digits."""
    path = folder / "config.toml"
    path.write_text('task = "text"\n[model]\nhidden = 12345678901234567890\n')
    return ["--config", str(path), *csv_cell(1000)(folder)[2:]]


def huge_hidden(folder: Path) -> list[str]:
    """--hidden 1,000,000: a model of trillions of parameters."""
    return [*csv_cell(1000)(folder), "--hidden", "1000000"]


CASES: dict[str, tuple[Callable[[Path], list[str]], int]] = {  # name -> (make the arguments, expected exit code)
    "JSON Lines row of 10M words (50 MB)": (jsonl_long_row, 2),
    ".tar.gz of 300 KB holding 300 MiB of NULs": (nul_bomb, 2),
    "text file of 100 MiB of NULs in a class folder": (nul_text_file, 0),
    "CSV cell of 200,000 characters": (csv_cell(200_000), 0),
    "CSV cell of 5,000,000 characters": (csv_cell(5_000_000), 2),
    "word2vec header claiming 1e9 values": (huge_vector_header, 2),
    "config.toml hidden = 20 digits": (huge_config_value, 2),
    "--hidden 1000000": (huge_hidden, 2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1024, help="MiB every case must stay under")
    parser.add_argument("--only", nargs="*", help="run the cases whose names contain these words")
    options = parser.parse_args()
    failed, messages = 0, []
    print(f"| case | exit (expected) | stderr lines | peak RSS MiB | wall s | within {options.budget:g} MiB |")
    print("|---|---|---|---|---|---|")
    for name, (make, expected) in CASES.items():
        if options.only and not any(word in name for word in options.only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            args = ["fit", *make(folder), "--logdir", str(folder / "runs"), "--cache-dir", str(folder / "cache"),
                    "--epochs", "1", "--max-steps", "2", "--threads", "1", "-q"]
            result = peak_run(args, folder)
        ok = result["rc"] == expected and len(result["stderr"]) <= 1 and result["peak_mib"] < options.budget
        failed += not ok
        print(f"| {name} | {result['rc']} ({expected}) | {len(result['stderr'])} | {result['peak_mib']:.0f} | "
              f"{result['wall_s']:.1f} | {'yes' if ok else 'NO'} |", flush=True)
        messages += [f"- {name}: `{line.replace(str(folder), '<tmp>')}`" for line in result["stderr"][:1]]
    print("\n" + "\n".join(messages))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
