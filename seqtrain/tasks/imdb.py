"""IMDB movie-review sentiment (Maas et al. 2011): many-to-one binary classification."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch

from seqtrain.config import Config
from seqtrain.data.batching import SequenceLoader
from seqtrain.data.download import cache_dir, cached_tensors, download, extract, source_key
from seqtrain.data.sources import local_source
from seqtrain.data.text import PAD, UNK, tokenize
from seqtrain.errors import SeqtrainError
from seqtrain.tasks.base import TaskData, register
from seqtrain.tasks.classification import ClassifierMeta, TextClassificationTask

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
LABELS = ["neg", "pos"]
SPLITS = ("train", "test")
REVIEWS_PER_PART = 12500  # in each of train/pos, train/neg, test/pos, test/neg of the published archive
TOKENIZER_VERSION = 1  # bump when tokenize() changes, to invalidate cached encodings


def locate(config: Config, quiet: bool = False) -> Path:
    """The `aclImdb/` folder: from --data (a folder or an archive), else downloaded into the cache."""
    cache = cache_dir(config.data.cache_dir)
    given = local_source(config.data)
    if given is None:
        archive = download(URL, SHA256, cache, config.data.mirror, quiet=quiet)
        complete = functools.partial(layout_problem, per_part=REVIEWS_PER_PART)
        return extract(archive, cache / "imdb" / "aclImdb_v1", complete) / "aclImdb"
    for candidate in (given / "aclImdb", given):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    archives = [given] if given.is_file() else sorted(p for p in given.iterdir() if p.name.endswith((".tar.gz", ".tgz", ".tar")))
    if not archives:
        raise SeqtrainError(f"{given} holds neither an aclImdb/ folder nor an archive of one (--data)")
    archive = archives[0]
    return extract(archive, cache / "imdb" / f"{archive.name.split('.')[0]}-{source_key(archive)}", layout_problem) / "aclImdb"


def layout_problem(folder: Path, per_part: int | None = None) -> str | None:
    """What keeps `folder` from holding a complete aclImdb/ corpus (None when nothing does).

    `per_part` is the exact number of reviews each of the four labelled folders must hold, where known.
    """
    for split in SPLITS:
        for label in LABELS:
            part = folder / "aclImdb" / split / label
            count = sum(name.endswith(".txt") for name in os.listdir(part)) if part.is_dir() else 0
            if not count:
                return f"aclImdb/{split}/{label} is missing or empty"
            if per_part is not None and count != per_part:
                return f"aclImdb/{split}/{label} holds {count} reviews, not {per_part}"
    return None


def encode_corpus(root: Path, cache: Path) -> dict[str, Any]:
    """Tokenize every labelled review once into ids over a full word list; cached as one tensor file
    named by every review file's name, size and mtime, so any change to the corpus re-encodes it."""
    reviews = [root / split / label for split in SPLITS for label in LABELS]
    cached = cache / "imdb" / f"encoded-{source_key(reviews, TOKENIZER_VERSION)}.pt"
    return cached_tensors(cached, lambda: _encode(root))


def _encode(root: Path) -> dict[str, Any]:
    word_ids: dict[str, int] = {}
    ids: list[int] = []
    offsets, labels, splits = [0], [], []
    for split_index, split in enumerate(SPLITS):
        for label_index, label in enumerate(LABELS):
            folder = root / split / label
            if not folder.is_dir():
                raise SeqtrainError(f"{folder} is missing: not an aclImdb folder")
            for path in sorted(folder.glob("*.txt")):
                text = path.read_text(encoding="utf-8", errors="replace")
                ids.extend(word_ids.setdefault(token, len(word_ids)) for token in tokenize(text))
                offsets.append(len(ids))
                labels.append(label_index)
                splits.append(split_index)
    if not labels:
        raise SeqtrainError(f"{root} holds no reviews")
    blob = {
        "words": list(word_ids),
        "ids": torch.tensor(ids, dtype=torch.int32),
        "offsets": torch.tensor(offsets, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "splits": torch.tensor(splits, dtype=torch.long),
    }
    return blob


def rank_vocab(words: list[str], counts: torch.Tensor, max_size: int, min_freq: int) -> list[str]:
    """Specials, then words by training frequency (ties alphabetical), cut to size and frequency."""
    present = torch.nonzero(counts >= max(min_freq, 1)).squeeze(1).tolist()
    ranked = sorted(present, key=lambda i: (-int(counts[i]), words[i]))
    if max_size:
        ranked = ranked[: max(max_size - 2, 0)]
    return [PAD, UNK] + [words[i] for i in ranked]


@register("imdb")
class ImdbTask(TextClassificationTask):
    description = "IMDB movie-review sentiment (25k train / 25k test), many-to-one binary classification."
    # Chosen by validation accuracy among full-data trials (README): a bidirectional GRU with max
    # pooling and a cosine learning-rate decay over 5 epochs.
    defaults = {
        "cell": "gru",
        "embed_dim": 128,
        "hidden": 96,
        "bidirectional": True,
        "pooling": "max",
        "dropout": 0.4,
        "epochs": 5,
        "lr": 2e-3,
        "lr_schedule": "cosine",
        "batch_size": 64,
        "max_len": 400,
    }

    def prepare(self, meta: ClassifierMeta | None = None, quiet: bool = False) -> TaskData:
        config = self.config
        root = locate(config, quiet)
        blob = encode_corpus(root, cache_dir(config.data.cache_dir))
        ids, offsets, labels, splits = blob["ids"], blob["offsets"], blob["labels"], blob["splits"]
        train_all = torch.nonzero(splits == 0).squeeze(1)
        test = torch.nonzero(splits == 1).squeeze(1)
        order = train_all[torch.randperm(len(train_all), generator=torch.Generator().manual_seed(config.train.seed))]
        n_val = max(1, round(len(order) * config.data.val_split)) if config.data.val_split else 0
        val, train = order[:n_val].sort().values, order[n_val:].sort().values

        if meta is None:
            in_train = torch.zeros(len(labels), dtype=torch.bool)
            in_train[train] = True
            review_of_token = torch.repeat_interleave(torch.arange(len(labels)), offsets.diff())
            counts = torch.bincount(ids[in_train[review_of_token]].long(), minlength=len(blob["words"]))
            itos = rank_vocab(blob["words"], counts, config.data.max_vocab, config.data.min_freq)
            frequency = dict(zip(blob["words"], counts.tolist()))
            meta = self.start_meta(ClassifierMeta(itos, LABELS, config.data.max_len), frequency)
        self.meta = meta
        stoi = {w: i for i, w in enumerate(meta.vocab)}
        remap = torch.tensor([stoi.get(w, 1) for w in blob["words"]], dtype=torch.long)
        max_len = meta.max_len

        def sequences(indices: torch.Tensor) -> list[torch.Tensor]:
            out = []
            for i in indices.tolist():
                seq = remap[ids[offsets[i] : offsets[i + 1]].long()]
                seq = seq[-max_len:] if max_len else seq
                out.append(seq if len(seq) else torch.tensor([1]))
            return out

        def loader(indices: torch.Tensor, shuffle: bool) -> SequenceLoader:
            return SequenceLoader(sequences(indices), labels[indices], config.train.batch_size, shuffle, config.train.seed)

        return TaskData(loader(train, True), loader(val, False) if n_val else None, loader(test, False), meta)
