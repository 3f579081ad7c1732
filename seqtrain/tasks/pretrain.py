"""In-domain word vectors for a classifier preset: word2vec over the data's own unlabelled text, trained once
and cached, then the classifier's first embedding rows (`--pretrain-vectors`).

Why: a recurrent classifier trained from random embeddings on IMDB's 22,500 training reviews stays under the
TF-IDF bigram row of its own run; vectors trained on the 75,000 training and unlabelled reviews (never the
test ones) lift it past that row. The first run pays for word2vec; later runs find the vectors in the cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from seqtrain.config import Config
from seqtrain.data.download import cache_dir
from seqtrain.errors import SeqtrainError

#: word2vec reads at least this many words: one epoch of IMDB's 20M, several of a smaller corpus
WORD_BUDGET = 10_000_000
MAX_EPOCHS = 5
MIN_COUNT = 2
#: part of the cache key: bump when what is trained changes
VERSION = 1


def word2vec_epochs(words: int) -> int:
    """Epochs that give word2vec WORD_BUDGET words (at least one, at most MAX_EPOCHS)."""
    return max(1, min(MAX_EPOCHS, math.ceil(WORD_BUDGET / max(words, 1))))


def word2vec_settings(config: Config, source: dict[str, Any], max_vocab: int | None = None) -> dict[str, Any]:
    """The word2vec run's settings: `source` (its `data` or `text`), the classifier's embedding size, seed,
    threads and cache, and a vocabulary twice the classifier's (its words are ranked on other text) unless
    `max_vocab` says otherwise."""
    return {
        **source, "embed_dim": config.model.embed_dim, "min_count": MIN_COUNT,
        "max_vocab": 2 * config.data.max_vocab if max_vocab is None else max_vocab,
        "seed": config.train.seed, "threads": config.train.threads, "device": config.train.device,
        "cache_dir": config.data.cache_dir, "mirror": config.data.mirror,
    }


def in_domain_vectors(
    config: Config, name: str, source: dict[str, Any], quiet: bool, described: str | None = None,
    max_vocab: int | None = None,
) -> tuple[str, str]:
    """A finished word2vec run folder trained on `source` (trained now unless cached under the corpus's
    content and the settings), and a line saying what it is (`described`: the text, default the data's own)."""
    from seqtrain.tasks import build_config, make_task
    from seqtrain.training.trainer import Trainer

    settings = word2vec_settings(config, source, max_vocab)
    task = make_task(build_config("word2vec", settings))
    corpus = task.corpus(quiet)
    words = len(corpus["ids"])
    task.config.train.epochs = word2vec_epochs(words)
    key = corpus_key(corpus, settings, task.config.train.epochs)
    root = cache_dir(config.data.cache_dir) / "pretrained"
    final = root / f"{name}-{key}"
    described = described or f"{name}'s text outside the test split"
    what = (f"word vectors: word2vec over {described} ({words:,} words, {task.config.train.epochs} "
            f"epoch(s), dim {config.model.embed_dim})")
    if final.is_dir():
        return str(final), f"{what}, from the cache {final}"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SeqtrainError(
            f"{name}'s word vectors are trained once, in one process: run without torchrun first (later runs read "
            "them from the cache), or start without them (--no-pretrain-vectors, or no --pretrain-text)"
        )
    from rich.console import Console

    logdir = root / f".training-{key}-{os.getpid()}"
    task.config.train.logdir = str(logdir)
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):  # the classifier starts alike whether the vectors were cached or not
        run = Trainer(task, None if quiet else Console()).fit()
    random.setstate(state)
    if run.interrupted:  # Ctrl-C: no cache entry, and the classifier does not start
        shutil.rmtree(logdir, ignore_errors=True)
        raise KeyboardInterrupt
    (run.run_dir / "last.pt").unlink(missing_ok=True)  # best.pt holds the vectors; nothing resumes a cached run
    os.replace(run.run_dir, final)
    shutil.rmtree(logdir, ignore_errors=True)
    return str(final), f"{what}, trained now and cached in {final}"


def corpus_key(corpus: dict[str, Any], settings: dict[str, Any], epochs: int) -> str:
    """The cache key: the corpus's tokens and words, and every setting that shapes the vectors."""
    digest = hashlib.sha256(corpus["ids"].numpy().tobytes())
    digest.update("\n".join(corpus["words"]).encode())
    kept = {k: v for k, v in settings.items() if k not in ("threads", "device", "cache_dir", "mirror", "data", "text")}
    digest.update(repr((sorted(kept.items()), epochs, VERSION)).encode())
    return digest.hexdigest()[:16]


def write_documents(path: Path, documents: list[str]) -> Path:
    """One document a line (word2vec's --text format), written atomically."""
    from seqtrain.files import atomic_write

    with atomic_write(path) as temporary:
        temporary.write_text("".join(doc.replace("\n", " ") + "\n" for doc in documents), encoding="utf-8")
    return path
