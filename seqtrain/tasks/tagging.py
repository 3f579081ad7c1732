"""Sequence tagging, one tag per token: named entities, parts of speech, chunks, slots.

`tag` reads a user's own files (seqtrain/data/conll.py); `pos` (UD English
EWT, UPOS) and `conll2003` (CoNLL-2003 English NER) are its presets. Span
tags are read in any scheme, trained in --train-scheme and written back in
the input's; scores are conlleval's: entity precision, recall and F1, micro
and per type, and token accuracy (in the training scheme). The best
checkpoint is the one with the best dev F1 (accuracy for plain tags). Every
run also scores the classic baseline: each training word's most frequent tag,
and the most frequent tag overall for unknown words.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from seqtrain.config import Schema, TagFileData, TaggerData, TaggerModel, TrainSettings
from seqtrain.data.batching import epoch_batches, pad_batch
from seqtrain.data.conll import (
    Sentence, SpanCounts, Tagged, convert, detect_scheme, prf, read_file, read_tagged, spans, split_files,
    tags_from_spans,
)
from seqtrain.data.download import download
from seqtrain.data.sources import local_source
from seqtrain.data.text import PAD, UNK, Vocab
from seqtrain.data.vectors import embedding_matrix, resolve_vectors, vector_dim
from seqtrain.errors import SeqtrainError
from seqtrain.models.ensemble import TaggerEnsemble, build_ensemble
from seqtrain.models.recurrent import padding_mask
from seqtrain.models.tagger import SequenceTagger, casing
from seqtrain.tasks.base import Meta, StepContext, StepResult, Task, TaskData, register
from seqtrain.transfer import Coverage, coverage_of

_DIGIT = re.compile(r"\d")
#: the longest word the character encoder reads (longer ones keep their first and last characters)
MAX_WORD_CHARS = 30


def word_key(token: str) -> str:
    """What the word embedding looks up: lower-cased, every digit read as 0 (casing and characters keep the rest)."""
    return _DIGIT.sub("0", token.lower())


@dataclass
class TaggerMeta(Meta):
    """Vocabularies (words as `word_key`s, characters), the tags in the training scheme, the input's scheme,
    and where the words seen once in training start in the frequency-ranked vocabulary."""

    vocab: list[str]
    chars: list[str]
    tags: list[str]
    scheme: str = "plain"
    train_scheme: str = "plain"
    rare_from: int = 0


@dataclass
class TagBatch:
    """Word ids, casing ids [B, T], character ids [B, T, C] (0 pads), lengths [B] and tag ids [B, T]."""

    words: torch.Tensor
    casings: torch.Tensor
    chars: torch.Tensor
    lengths: torch.Tensor
    tags: torch.Tensor

    def __len__(self) -> int:
        return self.words.shape[0]


@dataclass
class Encoded:
    words: torch.Tensor
    casings: torch.Tensor
    chars: list[torch.Tensor]
    tags: torch.Tensor


def encode_sentence(tokens: list[str], tags: list[int], words: dict[str, int], chars: dict[str, int]) -> Encoded:
    def spelled(token: str) -> torch.Tensor:
        if len(token) > MAX_WORD_CHARS:
            token = token[: MAX_WORD_CHARS // 2] + token[-MAX_WORD_CHARS // 2 :]
        return torch.tensor([chars.get(c, 1) for c in token], dtype=torch.long)

    return Encoded(
        torch.tensor([words.get(word_key(t), 1) for t in tokens], dtype=torch.long),
        torch.tensor([casing(t) for t in tokens], dtype=torch.long),
        [spelled(t) for t in tokens],
        torch.tensor(tags, dtype=torch.long),
    )


def collate(items: list[Encoded]) -> TagBatch:
    words, lengths = pad_batch([item.words for item in items])
    casings, _ = pad_batch([item.casings for item in items])
    tags, _ = pad_batch([item.tags for item in items])
    width = max(len(c) for item in items for c in item.chars)
    chars = torch.zeros(len(items), words.shape[1], width, dtype=torch.long)
    for row, item in enumerate(items):
        for col, spelled in enumerate(item.chars):
            chars[row, col, : len(spelled)] = spelled
    return TagBatch(words, casings, chars, lengths, tags)


class TagLoader:
    """Length-bucketed batches of sentences (seqtrain/data/batching.py); tells the task which split it reads."""

    def __init__(self, items: list[Encoded], batch_size: int, name: str, task: TaggingTask, seed: int):
        self.items, self.batch_size, self.name, self.task, self.seed = items, batch_size, name, task, seed
        self.lengths = [len(item.words) for item in items]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.items) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        self.task.current_split = self.name
        for indices in epoch_batches(self.lengths, self.batch_size, self.name == "train", self.seed, self.epoch):
            yield collate([self.items[i] for i in indices])


def hold_out(sentences: list[Sentence], fraction: float, seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """(held, kept): a seeded random `fraction` of the sentences, each part in file order."""
    if not fraction:
        return [], sentences
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[: round(len(sentences) * fraction)])
    return [s for i, s in enumerate(sentences) if i in held], [s for i, s in enumerate(sentences) if i not in held]


def most_frequent_tags(train: list[Sentence]) -> tuple[dict[str, str], str]:
    """Each training word's most frequent tag (ties: the tag first seen), and the most frequent tag overall."""
    by_word: dict[str, Counter[str]] = {}
    overall: Counter[str] = Counter()
    for sentence in train:
        for token, tag in zip(sentence.tokens, sentence.tags):
            by_word.setdefault(token, Counter())[tag] += 1
            overall[tag] += 1
    return {word: counts.most_common(1)[0][0] for word, counts in by_word.items()}, overall.most_common(1)[0][0]


# -------------------------------------------------------------------- task
@register("tag")
class TaggingTask(Task):
    description = "Your own token-labelled data (CoNLL columns, CoNLL-U, JSON Lines): NER, POS, chunking; BiLSTM-CRF."
    schema: ClassVar[Schema] = Schema(TrainSettings, TaggerModel, TagFileData)
    # The BiLSTM-CNN-CRF recipe of Ma & Hovy 2016 (200 units, dropout 0.5) with Adam, its learning rate decayed to 0
    # over the run (at a constant rate dev F1 kept rising and falling by a point an epoch); measured in docs/tagging.md.
    defaults: ClassVar[dict[str, Any]] = {
        "cell": "lstm", "embed_dim": 100, "hidden": 200, "bidirectional": True, "dropout": 0.5,
        "epochs": 20, "batch_size": 32, "lr": 2e-3, "lr_schedule": "cosine", "max_vocab": 0, "clip": 5.0,
    }
    meta_type = TaggerMeta
    monitor = "f1"
    monitor_mode = "max"
    metric_names: tuple[str, ...] = ("loss", "accuracy", "precision", "recall", "f1")
    headline = "f1"
    unit = "tok"
    ability = "tag"
    breakdown_rows = ("type ",)

    def __init__(self, config):
        super().__init__(config)
        self.current_split = "train"
        self.pretrained: torch.Tensor | None = None
        self.coverage: Coverage | None = None
        self.report: list[str] = []
        self.span_counts: dict[str, dict[str, dict[str, float]]] = {}  # by split: per-type rows of its latest pass
        self.baselines: dict[str, dict[str, dict[str, float]]] = {}

    def validate(self) -> None:
        if self.config.model.embeddings:
            self.config.model.embed_dim = vector_dim(self.config.model.embeddings)

    # ----------------------------------------------------------------- data
    def load_tagged(self, quiet: bool) -> Tagged:
        data = self.config.data
        path = local_source(data)
        if path is None:
            raise SeqtrainError(
                "--task tag needs --data PATH: a CoNLL column file, a .conllu or .jsonl file, or a folder of "
                "train/dev/test files"
            )
        return read_tagged(path, data.token_col, data.tag_col, data.encoding)

    def input_scheme(self, train: list[Sentence]) -> str:
        given = getattr(self.config.data, "tag_scheme", "auto")
        return detect_scheme(train) if given == "auto" else given

    def test_fraction(self) -> float:
        return getattr(self.config.data, "test_split", 0.0)

    def prepare(self, meta: TaggerMeta | None = None, quiet: bool = False) -> TaskData:
        config, seed = self.config, self.config.train.seed
        tagged = self.load_tagged(quiet)
        parts = dict(tagged.splits)
        if "test" not in parts:
            parts["test"], parts["train"] = hold_out(parts["train"], self.test_fraction(), seed)
        if "val" not in parts:
            parts["val"], parts["train"] = hold_out(parts["train"], config.data.val_split, seed + 1)
        if not parts["val"]:
            raise SeqtrainError("the best checkpoint is chosen on dev sentences: give a dev file or --val-split above 0")
        if not parts["train"]:
            raise SeqtrainError("no training sentences are left after the validation and test splits; lower --val-split")
        scheme = meta.scheme if meta is not None else self.input_scheme(parts["train"])
        train_scheme = "plain" if scheme == "plain" else config.data.train_scheme
        if meta is not None:
            train_scheme = meta.train_scheme
        converted = {
            name: [Sentence(s.tokens, convert(s.tags, train_scheme)) for s in sentences]
            for name, sentences in parts.items()
        }
        if meta is None:
            meta = self.start_meta(converted, scheme, train_scheme)
        self.meta = meta
        self.monitor = self.headline = "accuracy" if train_scheme == "plain" else "f1"
        self.metric_names = ("loss", "accuracy") + (() if train_scheme == "plain" else ("precision", "recall", "f1"))
        tag_index = {tag: i for i, tag in enumerate(meta.tags)}
        words = {w: i for i, w in enumerate(meta.vocab)}
        chars = {c: i for i, c in enumerate(meta.chars)}

        def encoded(name: str) -> list[Encoded]:
            out = []
            for sentence in converted[name]:
                unknown = [t for t in sentence.tags if t not in tag_index]
                if unknown:
                    raise SeqtrainError(
                        f"{name} data has the tag '{unknown[0]}', which the model does not know "
                        f"({', '.join(meta.tags[:10])}{' ...' if len(meta.tags) > 10 else ''})"
                    )
                out.append(encode_sentence(sentence.tokens, [tag_index[t] for t in sentence.tags], words, chars))
            return out

        def loader(name: str) -> TagLoader | None:
            items = encoded(name)
            return TagLoader(items, config.train.batch_size, name, self, seed) if items else None

        self.baselines = self.baseline_rows(converted)
        self.report = [
            f"tags ({len(meta.tags)}, scheme {scheme}" + (f", trained as {train_scheme}" if train_scheme != scheme else "")
            + f"): {' '.join(meta.tags[:30])}{' ...' if len(meta.tags) > 30 else ''}",
            "sentences: " + ", ".join(
                f"{name} {len(s):,} ({sum(len(x.tokens) for x in s):,} tokens)" for name, s in parts.items() if s
            ),
        ]
        return TaskData(loader("train"), loader("val"), loader("test"), meta)

    def start_meta(self, converted: dict[str, list[Sentence]], scheme: str, train_scheme: str) -> TaggerMeta:
        """Vocabularies from the training sentences; --embeddings rows looked up for them. The tags: every
        tag of every split (plain), or every tag of the training scheme for each entity type seen."""
        data, train = self.config.data, converted["train"]
        counts = Counter(word_key(t) for s in train for t in s.tokens)
        ranked = sorted((w for w, c in counts.items() if c >= data.min_freq), key=lambda w: (-counts[w], w))
        if data.max_vocab:
            ranked = ranked[: max(data.max_vocab - 2, 0)]
        vocab = [PAD, UNK, *ranked]
        rare_from = next((i for i, w in enumerate(vocab) if i >= 2 and counts[w] == 1), len(vocab))
        char_counts = Counter(c for s in train for t in s.tokens for c in t)
        chars = [PAD, UNK, *sorted(char_counts, key=lambda c: (-char_counts[c], c))]
        seen = {t for sentences in converted.values() for s in sentences for t in s.tags}
        if train_scheme != "plain":
            types = {t[2:] for t in seen if t != "O"}
            seen = {"O"} | {f"{p}-{t}" for t in types for p in ("BIES" if train_scheme == "bioes" else "BI")}
        tags = sorted(seen)
        meta = TaggerMeta(vocab, chars, tags, scheme, train_scheme, rare_from)
        if self.config.model.embeddings:
            model = self.config.model
            vectors = resolve_vectors(model.embeddings, data.cache_dir, data.mirror)
            self.pretrained, found = embedding_matrix(vectors, Vocab(vocab), self.config.train.seed)
            self.coverage = coverage_of(vocab, found, dict(counts))
        return meta

    def baseline_rows(self, converted: dict[str, list[Sentence]]) -> dict[str, dict[str, dict[str, float]]]:
        """The most-frequent-tag baseline's scores on val and test."""
        best, fallback = most_frequent_tags(converted["train"])
        rows = {}
        for name in ("val", "test"):
            if not converted[name]:
                continue
            correct = total = 0
            counts = SpanCounts()
            for sentence in converted[name]:
                guess = [best.get(t, fallback) for t in sentence.tokens]
                correct += sum(g == t for g, t in zip(guess, sentence.tags))
                total += len(guess)
                counts.add(sentence.tags, guess)
            row = {"accuracy": correct / max(total, 1)}
            if self.meta.train_scheme != "plain":
                row.update(prf(sum(counts.correct.values()), sum(counts.predicted.values()), sum(counts.gold.values())))
            rows[name] = {"most-frequent-tag": row}
        return rows

    def notes(self) -> list[str]:
        return self.report + (self.coverage.lines() if self.coverage is not None else [])

    def default_meta(self) -> TaggerMeta:
        return TaggerMeta([PAD, UNK] + [f"w{i}" for i in range(19998)], [PAD, UNK] + list("abcdefghij"),
                          ["B-PER", "E-PER", "I-PER", "O", "S-PER"], "iob2", "bioes", 10000)

    # ---------------------------------------------------------------- model
    def build_model(self, meta: TaggerMeta) -> nn.Module:
        return build_ensemble(lambda: self.build_member(meta), self.config.model.ensemble, TaggerEnsemble)

    def build_member(self, meta: TaggerMeta) -> SequenceTagger:
        model = SequenceTagger(len(meta.vocab), len(meta.chars), meta.tags, meta.train_scheme, self.config.model)
        if self.pretrained is not None:  # only for a fresh model: a checkpoint's weights already hold the vectors
            model.embedding.weight.data.copy_(self.pretrained)
        model.embedding.weight.requires_grad_(not self.config.model.freeze_embeddings)
        return model

    def example_input(self, model: nn.Module) -> tuple:
        return model.example_input()

    def step(self, model: nn.Module, batch: TagBatch, state: Any, ctx: StepContext) -> StepResult:
        words = batch.words
        rate = self.config.model.unk_replace
        if ctx.training and rate:
            rare = (words >= self.meta.rare_from) & (torch.rand(words.shape, device=words.device) < rate)
            words = words.masked_fill(rare, 1)
        emissions = model(words, batch.casings, batch.chars, batch.lengths)
        total = model.loss_sum(emissions, batch.tags, batch.lengths)
        tokens = int(batch.lengths.sum())
        sums: dict[str, Any] = {"loss": total.detach()}
        if not ctx.training:
            predicted = model.decode(emissions.detach(), batch.lengths)
            mask = padding_mask(batch.lengths, batch.tags.shape[1])
            sums["correct"] = ((predicted == batch.tags) & mask).sum()
            if self.meta.train_scheme != "plain":
                sums.update(self.span_sums(predicted, batch.tags, batch.lengths))
        return StepResult(total / max(tokens, 1), tokens, sums)

    def span_sums(self, predicted: torch.Tensor, gold: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Entity counts per type as vectors (read back as `span_gold:<type index>` ...), decoded on the host."""
        types = self.entity_types()
        counts = SpanCounts()
        names = self.meta.tags
        for row, length in enumerate(lengths.tolist()):
            counts.add([names[i] for i in gold[row, :length].tolist()], [names[i] for i in predicted[row, :length].tolist()])
        out = {}
        for key, found in (("span_gold", counts.gold), ("span_pred", counts.predicted), ("span_ok", counts.correct)):
            out[key] = torch.tensor([found.get(t, 0) for t in types], dtype=torch.float64)
        return out

    def entity_types(self) -> list[str]:
        """The entity types of the training-scheme tags (each is 'O' or prefixed B-/I-/E-/S-)."""
        return sorted({tag[2:] for tag in self.meta.tags if tag != "O"})

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        out = {"loss": sums.get("loss", 0.0) / max(count, 1)}
        if "correct" not in sums:  # a training pass decodes nothing
            return out
        out["accuracy"] = sums["correct"] / max(count, 1)
        if self.meta.train_scheme == "plain":
            return out
        types = self.entity_types()
        table = {}
        totals = [0.0, 0.0, 0.0]
        for i, name in enumerate(types):
            ok, pred, gold = (sums.get(f"{key}:{i}", 0.0) for key in ("span_ok", "span_pred", "span_gold"))
            totals = [totals[0] + ok, totals[1] + pred, totals[2] + gold]
            table[name] = {**prf(ok, pred, gold), "support": gold}
        self.span_counts[self.current_split] = table
        return {**out, **prf(*totals)}

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        """The baseline by split, and per entity type precision, recall, F1 and support of the pass just scored."""
        rows = {split: dict(named) for split, named in self.baselines.items()}
        split = self.current_split
        for name, values in self.span_counts.get(split, {}).items():
            rows.setdefault(split, {})[f"type {name}"] = values
        return rows

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        for split, named in self.baselines.items():
            for name, values in named.items():
                log.scalars(f"baseline/{split}/{name}", values, epoch)
        for name, values in self.span_counts.get("val", {}).items():
            log.scalars(f"types/val/{name}", {k: v for k, v in values.items() if k != "support"}, epoch)

    # ------------------------------------------------------------ inference
    def tag(self, model: nn.Module, sentences: list[list[str]], device: torch.device) -> list[list[str]]:
        """Each sentence's tags, in the input data's scheme."""
        meta = self.meta
        words, chars = self.per_meta("index", lambda: ({w: i for i, w in enumerate(meta.vocab)},
                                                      {c: i for i, c in enumerate(meta.chars)}))
        out: list[list[str]] = [[] for _ in sentences]
        order = [i for i in range(len(sentences)) if sentences[i]]
        model.eval()
        for start in range(0, len(order), 64):
            chunk = order[start : start + 64]
            batch = collate([encode_sentence(sentences[i], [0] * len(sentences[i]), words, chars) for i in chunk])
            with torch.no_grad():
                emissions = model(batch.words.to(device), batch.casings.to(device), batch.chars.to(device), batch.lengths.to(device))
                predicted = model.decode(emissions, batch.lengths.to(device)).cpu()
            for row, i in enumerate(chunk):
                tags = [meta.tags[t] for t in predicted[row, : len(sentences[i])].tolist()]
                out[i] = tags if meta.scheme == "plain" else tags_from_spans(spans(tags), len(tags), meta.scheme)
        return out


def token_sentences(lines: list[str]) -> list[list[str]]:
    """Already tokenised input: one token a line (its first column), a blank line between sentences."""
    sentences: list[list[str]] = [[]]
    for line in lines:
        cells = line.split("\t") if "\t" in line else line.split()
        if not line.strip():
            sentences.append([])
        elif cells[0] != "-DOCSTART-":
            sentences[-1].append(cells[0].strip())
    return [s for s in sentences if s]


def render(tokens: list[str], tags: list[str], output: str, plain: bool) -> str:
    """One tagged sentence as `conll` (token<TAB>tag lines, then a blank line), `spans` (type<TAB>first<TAB>last<TAB>
    text, 0-based inclusive token positions; plain tags: every token its own span) or `json` (tokens, tags, spans)."""
    entities = [(tag, i, i) for i, tag in enumerate(tags)] if plain else spans(tags)
    if output == "conll":
        return "\n".join(f"{token}\t{tag}" for token, tag in zip(tokens, tags)) + "\n"
    if output == "spans":
        return "\n".join(f"{t}\t{a}\t{b}\t{' '.join(tokens[a : b + 1])}" for t, a, b in entities) + "\n"
    found = [{"type": t, "start": a, "end": b, "text": " ".join(tokens[a : b + 1])} for t, a, b in entities]
    return json.dumps({"tokens": tokens, "tags": tags, "spans": found}, ensure_ascii=False)


# ---------------------------------------------------------------- presets
EWT_URL = "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/r2.16/en_ewt-ud-{}.conllu"
EWT_SHA256 = {
    "train": "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
    "dev": "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
    "test": "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
}


@register("pos")
class PosTask(TaggingTask):
    description = "Universal Dependencies English EWT 2.16, UPOS tags (12.5k / 2k / 2k sentences); downloaded."
    schema: ClassVar[Schema] = Schema(TrainSettings, TaggerModel, TaggerData)
    # Two BiLSTM layers and a CRF over 12 epochs of the cosine decay: the best dev accuracy of the settings measured
    # (one layer, softmax, 7 epochs before), about 11 CPU minutes of the 20-minute budget on one thread (docs/tagging.md)
    defaults: ClassVar[dict[str, Any]] = {
        **TaggingTask.defaults, "layers": 2, "crf": True, "char_encoder": "lstm", "dropout": 0.33, "epochs": 12,
    }
    monitor = headline = "accuracy"
    metric_names: tuple[str, ...] = ("loss", "accuracy")

    def load_tagged(self, quiet: bool) -> Tagged:
        data = self.config.data
        given = local_source(data)
        if given is not None:
            files = split_files(given) if given.is_dir() else {}
            if set(files) != {"train", "val", "test"}:
                raise SeqtrainError(f"--data {given}: expected a folder with en_ewt-ud-{{train,dev,test}}.conllu (or .gz)")
        else:
            files = {
                split: download(EWT_URL.format(name), EWT_SHA256[name], data.cache_dir, data.mirror, quiet=quiet)
                for split, name in (("train", "train"), ("val", "dev"), ("test", "test"))
            }
        return Tagged({split: read_file(path, tag_col="upos") for split, path in files.items()}, files)

    def input_scheme(self, train: list[Sentence]) -> str:
        return "plain"


@register("conll2003")
class Conll2003Task(TaggingTask):
    description = "CoNLL-2003 English NER (PER, LOC, ORG, MISC); --data: the eng.train/testa/testb files or a mirror."

    schema: ClassVar[Schema] = Schema(TrainSettings, TaggerModel, TaggerData)
    # 8 epochs of the cosine decay fit the 30-minute budget on one CPU thread; the character BiLSTM (Lample et al.)
    # scored 85.70 / 85.46 test F1 over two seeds where the character CNN scored 84.92 / 84.33 (docs/tagging.md)
    defaults: ClassVar[dict[str, Any]] = {**TaggingTask.defaults, "epochs": 8, "char_encoder": "lstm"}

    def load_tagged(self, quiet: bool) -> Tagged:
        given = local_source(self.config.data)
        if given is None or not given.is_dir():
            raise SeqtrainError(
                "--task conll2003 needs --data FOLDER holding eng.train, eng.testa, eng.testb (or a mirror's "
                "train.txt, valid.txt, test.txt); the built files have no public download (docs/tagging.md)"
            )
        tagged = read_tagged(given, "1", "last")
        if set(tagged.splits) != {"train", "val", "test"}:
            raise SeqtrainError(f"--data {given}: expected train, dev (testa/valid) and test (testb/test) files")
        return tagged
