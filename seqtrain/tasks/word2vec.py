"""word2vec: skip-gram with negative sampling on your own text or on IMDB reviews (train + unsup).

`--text FILE_OR_FOLDER` trains on any UTF-8 text (one document per line); `--data`/`--data-dir`
naming an aclImdb tree or archive (or no source at all: the canonical archive is downloaded)
trains on the reviews of train/pos, train/neg and train/unsup, never on test. Text goes through the
project tokenizer, so the vectors line up with the classifiers' vocabularies.

Each epoch logs the Spearman correlation with a word-similarity file (--similarity-pairs, e.g.
WordSim-353) and the nearest neighbours of a few probe words; every epoch rewrites `vectors.txt`
(word2vec text format) beside the checkpoint, and the last one adds the vectors of the most frequent
words to TensorBoard's projector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from seqtrain.config import Schema, SourceData, TrainSettings, opt
from seqtrain.data.download import cache_dir, cached_tensors, source_key
from seqtrain.data.sources import local_source
from seqtrain.data.streams import read_text, text_lines
from seqtrain.data.text import TOKENIZER_VERSION, encode_texts
from seqtrain.data.vectors import WordVectors, save_vectors
from seqtrain.errors import SeqtrainError
from seqtrain.models.skipgram import RowAdam, SkipGram, SkipGramBatch, SkipGramBatches
from seqtrain.similarity import format_neighbours, nearest, read_similarity_pairs, similarity_score
from seqtrain.tasks import imdb
from seqtrain.tasks.base import Meta, StepContext, StepResult, Task, TaskData, register

#: the reviews word2vec reads from an aclImdb tree: every training review, labelled or not; never test
IMDB_PARTS = ("train/pos", "train/neg", "train/unsup")
#: words shown in TensorBoard's projector (the most frequent ones): more makes the tab slow to load
PROJECTOR_WORDS = 10000
VECTORS_FILE = "vectors.txt"
ARCHIVES = (".tar.gz", ".tgz", ".tar")


@dataclass
class Word2VecModel:
    embed_dim: int = opt(100, "Size of the word vectors.", at_least=1)


@dataclass
class Word2VecData(SourceData):
    text: str | None = opt(
        None, "A UTF-8 text file or a folder of .txt files, one document per line (instead of IMDB reviews)."
    )
    window: int = opt(5, "Largest distance between a center word and its context (each center draws 1..window).", at_least=1)
    negatives: int = opt(5, "Negative samples per (center, context) pair, drawn from unigram^0.75.", at_least=1)
    min_count: int = opt(5, "Ignore words seen fewer times than this.", at_least=1)
    max_vocab: int = opt(0, "Keep at most this many words, the most frequent; 0: no limit.", at_least=0)
    sample: float = opt(1e-3, "Frequent-word subsampling threshold t (word2vec's -sample); 0 keeps every word.", at_least=0)
    probe_words: str = opt(
        "good,bad,funny,boring,actor,music",
        "Comma-separated words whose nearest neighbours are logged to TensorBoard each epoch (absent ones skipped).",
    )
    similarity_pairs: str | None = opt(
        None, "Word-similarity file ('word1<TAB>word2<TAB>score', # comments; e.g. WordSim-353) scored each epoch.",
    )


@dataclass
class Word2VecMeta(Meta):
    vocab: list[str]
    counts: list[int]


@register("word2vec")
class Word2VecTask(Task):
    description = "Skip-gram word2vec with negative sampling: --text FILE, or IMDB train + unsup reviews."
    schema: ClassVar[Schema] = Schema(TrainSettings, Word2VecModel, Word2VecData)
    # The learning rate decays linearly to 0 as in word2vec.c. Plain SGD on summed batch gradients
    # diverged at word2vec's rate 0.025 (frequent words collect hundreds of updates per batch), so
    # the rows are updated by sparse Adam. A batch is a chunk of --batch-size words of the corpus.
    defaults = {"epochs": 5, "lr": 0.01, "optimizer": "adam", "lr_schedule": "linear", "clip": 0.0, "batch_size": 4000}
    meta_type = Word2VecMeta
    monitor = "loss"
    monitor_mode = "min"
    metric_names = ("loss",)
    unit = "words"

    def __init__(self, config):
        super().__init__(config)
        self.pairs: list[tuple[str, str, float]] | None = None
        self.corpus_words = 0

    def validate(self) -> None:
        if self.config.train.optimizer != "adam":
            raise SeqtrainError("--task word2vec trains its sparse rows with Adam only: drop --optimizer")
        if self.config.data.similarity_pairs:
            self.pairs = read_similarity_pairs(Path(self.config.data.similarity_pairs))

    # ------------------------------------------------------------------ data
    def prepare(self, meta: Word2VecMeta | None = None, quiet: bool = False) -> TaskData:
        data = self.config.data
        blob = self.corpus(quiet)
        words, ids, offsets = blob["words"], blob["ids"], blob["offsets"]
        counts = torch.bincount(ids.long(), minlength=len(words))
        if meta is None:
            present = torch.nonzero(counts >= data.min_count).squeeze(1).tolist()
            ranked = sorted(present, key=lambda i: (-int(counts[i]), words[i]))[: data.max_vocab or None]
            if not ranked:
                raise SeqtrainError(f"no word occurs --min-count {data.min_count} times; lower it or give more text")
            meta = Word2VecMeta([words[i] for i in ranked], [int(counts[i]) for i in ranked])
        self.meta = meta
        stoi = {w: i for i, w in enumerate(meta.vocab)}
        remap = torch.tensor([stoi.get(w, -1) for w in words], dtype=torch.int32)
        stream = remap[ids.long()]
        docs = torch.repeat_interleave(torch.arange(len(offsets) - 1, dtype=torch.int32), offsets.diff())
        self.corpus_words = len(stream)
        loader = SkipGramBatches(
            stream, docs, torch.tensor(meta.counts), data.window, data.negatives, data.sample,
            self.config.train.batch_size, self.config.train.seed,
        )
        return TaskData(loader, None, None, meta)

    def corpus(self, quiet: bool) -> dict[str, Any]:
        """Token ids of every document, cached by the source files' names, sizes and mtimes."""
        data = self.config.data
        given = local_source(data)
        if given is None or data.text is None and is_imdb(given):
            return imdb_reviews(self.config, quiet)
        key = source_key(given, TOKENIZER_VERSION, "line-feeds")
        return cached_tensors(
            cache_dir(data.cache_dir) / "word2vec" / f"text-{key}.pt", lambda: encode_documents(text_lines(read_text(given)))
        )

    def notes(self) -> list[str]:
        share = sum(self.meta.counts) / max(self.corpus_words, 1)
        lines = [f"word2vec: {self.corpus_words:,} words, vocabulary {len(self.meta.vocab):,} "
                 f"(--min-count {self.config.data.min_count}: {share:.1%} of the words)"]
        if self.pairs is None:
            lines.append("no --similarity-pairs file: the per-epoch word-similarity score is off")
        return lines

    # ----------------------------------------------------------------- model
    def build_model(self, meta: Word2VecMeta) -> nn.Module:
        return SkipGram(len(meta.vocab), self.config.model.embed_dim)

    def default_meta(self) -> Word2VecMeta:
        return Word2VecMeta([f"w{i}" for i in range(10000)], [1] * 10000)

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Adam for sparse gradients: each step updates only the rows its batch touched."""
        return RowAdam(model.parameters(), lr=self.config.train.lr)

    def step(self, model: nn.Module, batch: SkipGramBatch, state: Any, ctx: StepContext) -> StepResult:
        loss = model(batch)
        return StepResult(loss, batch.words, {"loss": loss.detach(), "pairs": batch.weights.sum()})

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        return {"loss": sums.get("loss", 0.0) / max(sums.get("pairs", 0.0), 1.0)}

    def vectors(self, model: nn.Module) -> WordVectors:
        return WordVectors(list(self.meta.vocab), model.in_vectors.weight.detach().cpu().clone())

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        vectors = self.vectors(model)
        if self.pairs is not None:
            score = similarity_score(vectors, self.pairs)
            log.scalar("epoch/similarity_spearman", score.spearman, epoch)
            log.scalar("epoch/similarity_pairs_covered", score.covered, epoch)
        probes = [w for w in self.config.data.probe_words.split(",") if w.strip() in set(vectors.words)]
        if probes:
            table = format_neighbours({w: nearest(vectors, w.strip(), 8) for w in probes})
            log.text("neighbours", table, epoch)
        folder = getattr(getattr(log, "writer", None), "log_dir", None)
        if not isinstance(folder, str):  # a rank other than the first of a distributed run writes nothing
            return
        save_vectors(vectors, Path(folder) / VECTORS_FILE)
        if epoch >= self.config.train.epochs:
            log.embedding("word2vec", vectors.vectors[:PROJECTOR_WORDS], vectors.words[:PROJECTOR_WORDS], epoch)

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        if self.pairs is None:
            return {}
        score = similarity_score(self.vectors(model), self.pairs)
        return {"all": {"similarity": {"spearman": score.spearman, "pairs_covered": float(score.covered)}}}


def imdb_reviews(config, quiet: bool) -> dict[str, Any]:
    """Token ids of every review of train/{pos,neg,unsup} (never test), one document each, in a fixed order;
    cached by the review files' names, sizes and mtimes (shared by every task that reads them)."""
    cache = cache_dir(config.data.cache_dir)
    parts = imdb_parts(config, local_source(config.data), cache, quiet)
    key = source_key(parts, TOKENIZER_VERSION)
    return cached_tensors(cache / "word2vec" / f"imdb-{key}.pt", lambda: encode_documents(review_texts(parts)))


def imdb_parts(config, given: Path | None, cache: Path, quiet: bool) -> list[Path]:
    """The train/{pos,neg,unsup} folders: of the aclImdb tree --data names, of every archive in the folder
    it names (the labelled and unlabelled reviews may come as two archives), or of the downloaded one."""
    if given is not None and given.is_dir() and not any((given / sub / "train").is_dir() for sub in ("aclImdb", ".")):
        archives = sorted(p for p in given.iterdir() if p.name.endswith(ARCHIVES))
        roots = [imdb.unpack(archive, cache) for archive in archives]
    else:
        roots = [imdb.locate(config, quiet)]
    parts = [root / part for root in roots for part in IMDB_PARTS if (root / part).is_dir()]
    if not parts:
        raise SeqtrainError(f"{given} holds no aclImdb/train/{{pos,neg,unsup}} reviews")
    return parts


def is_imdb(path: Path) -> bool:
    """Whether --data names an aclImdb tree (or an archive or folder of archives of one) rather than plain text."""
    if path.is_file():
        return path.name.endswith(ARCHIVES)
    return any((path / sub / "train").is_dir() for sub in ("aclImdb", ".")) or any(
        p.name.endswith(ARCHIVES) for p in path.iterdir()
    )


def review_texts(parts: list[Path]):
    """Every review of the given aclImdb folders, in a fixed order."""
    for folder in parts:
        for path in sorted(folder.glob("*.txt")):
            yield path.read_text(encoding="utf-8", errors="replace")


def encode_documents(documents) -> dict[str, Any]:
    """Token ids of each document over one word list, with the offset where each document starts."""
    words, ids, offsets = encode_texts(documents, skip_empty=True)
    if not len(ids):
        raise SeqtrainError("the text holds no words to train word vectors on")
    return {"words": words, "ids": ids, "offsets": offsets}
