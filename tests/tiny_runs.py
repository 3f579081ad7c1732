"""One tiny trained run per family, trained once per test session and shared by the export and serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqtrain.training.runs import resolve_checkpoint

TINY = ["--epochs", "1", "--max-steps", "4", "--quiet", "--device", "cpu"]
_RUNS: dict[str, Path] = {}


def tiny_runs(tmp_path_factory, imdb_dir: Path) -> dict[str, Path]:
    """Each family in a shape that exercises export and serving: bidirectional, stacked, attention."""
    if _RUNS:
        return _RUNS
    from seqtrain_cli.main import app

    root = tmp_path_factory.mktemp("tiny-runs")
    text = root / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 100)
    pairs = root / "pairs.tsv"
    pairs.write_text("".join(f"{a} plus {b}\t{a + b}\n" for a in range(15) for b in range(15)))
    settings = {
        "imdb": ["--task", "imdb", "--data", imdb_dir, "--hidden", "8", "--embed-dim", "8"],  # bi-GRU, max pooling
        "charlm": ["--task", "charlm", "--text", text, "--cell", "lstm", "--layers", "2", "--hidden", "16", "--embed-dim", "8"],
        "pairs": ["--task", "pairs", "--data", pairs, "--bidirectional", "--attention", "dot", "--hidden", "16", "--embed-dim", "8"],
        "sine": ["--task", "sine", "--hidden", "8", "--cell", "gru"],
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQTRAIN_CACHE", str(root / "cache"))
        for name, args in settings.items():
            result = CliRunner().invoke(app, [str(a) for a in ["fit", *args, *TINY, "--logdir", root / name]])
            assert result.exit_code == 0, result.output
    _RUNS.update({name: resolve_checkpoint("latest", root / name).parent for name in settings})
    return _RUNS
