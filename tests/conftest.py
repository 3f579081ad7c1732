"""Shared fixtures: the compiled recurrent loop, an isolated cache per test and a small aclImdb-format corpus."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

# Tiny test models run fastest on one thread, and the suite then leaves the other core free.
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

POSITIVE = ["great", "wonderful", "excellent", "loved", "brilliant", "superb", "moving", "best", "fantastic", "enjoyed"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "worst", "dull", "waste", "poor", "horrible", "stupid"]
NEUTRAL = ("the movie film plot actor actress scene story director camera music was is it this that and a of "
           "to in with for on at by an as script ending character dialogue").split()


def shared_data(relative: str) -> Path:
    """A file under ../shared/data, or a visible skip where the shared data is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def pytest_sessionstart(session):
    """Build (first run on a machine: 15 s quiet, minutes on a loaded one) or load the fused layers' compiled
    loop before any test: no test's captured output sees the build, and no per-test timeout counts it."""
    from seqtrain.models.fused_loop import compiled_loop

    compiled_loop()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SEQTRAIN_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("SEQTRAIN_MIRROR", raising=False)


def _review(rng: random.Random, positive: bool) -> str:
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(15, 60))]
    cue = POSITIVE if positive else NEGATIVE
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words)), rng.choice(cue))
    text = " ".join(words)
    return text[0].upper() + text[1:] + ".<br /><br />" + ("Really worth it!" if positive else "Not for me.")


def write_imdb(root: Path, train_per_class: int = 150, test_per_class: int = 60, seed: int = 0) -> Path:
    """An aclImdb/ tree whose sentiment is learnable from cue words."""
    rng = random.Random(seed)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for label in ("pos", "neg"):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                rating = rng.randint(7, 10) if label == "pos" else rng.randint(1, 4)
                (folder / f"{i}_{rating}.txt").write_text(_review(rng, label == "pos"))
    return root


@pytest.fixture(scope="session")
def imdb_dir(tmp_path_factory) -> Path:
    return write_imdb(tmp_path_factory.mktemp("imdb"))


def make(task: str, **settings):
    """A task object for one run, as `seqtrain fit --task TASK --setting value ...` would build it."""
    from seqtrain.tasks import build_config, make_task

    return make_task(build_config(task, settings))
