"""Sequence to sequence: translate (Tatoeba English-French), pairs (any TSV file), dates (generated).

All three share one model, loss and metrics (`Seq2SeqTask`) and differ only
in where the pairs come from. Splits are made over distinct source sentences
(Tatoeba lists many translations of "Go."), so no source seen in training is
scored as held-out.

Metrics: `loss` and `token_accuracy` are teacher-forced, per target token
(<eos> included, padding never), as Keras reports them. `exact_match` is the
share of targets whose every token is the argmax: in evaluation (no dropout)
that is exactly the share greedy decoding gets right, because greedy feeds
back those same argmaxes. `bleu` is corpus BLEU of greedy decoding against
every translation the split holds for the source (raw text, lower-cased word
tokens), computed in evaluation only.
"""

from __future__ import annotations

import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.bleu import STAT_NAMES, bleu_from_stats, bleu_stats
from seqtrain.config import FilePairData, PairData, Schema, Seq2SeqModel, Seq2SeqTrain
from seqtrain.data.download import download
from seqtrain.data.sources import local_source
from seqtrain.data.pairs import (
    BOS,
    EOS,
    PairBatch,
    PairLoader,
    SPECIALS,
    build_vocab,
    clean,
    date_pairs,
    encode,
    join_tokens,
    read_pairs,
)
from seqtrain.data.text import Vocab, tokenize
from seqtrain.errors import SeqtrainError
from seqtrain.models.seq2seq import Seq2Seq
from seqtrain.tasks.base import Meta, StepContext, StepResult, Task, TaskData, register
from seqtrain.tasks.schedules import decay_schedule

FRA_ENG_URL = "http://www.manythings.org/anki/fra-eng.zip"


def split_pairs(pairs: list[tuple[str, str]], fraction: float, seed: int) -> tuple[list, list, list]:
    """(train, val, test): `fraction` of the distinct sources each for val and test, chosen with `seed`."""
    sources = sorted({source for source, _ in pairs})
    random.Random(seed).shuffle(sources)
    n = round(len(sources) * fraction)
    if fraction and n == 0:
        raise SeqtrainError(f"only {len(sources)} distinct sources: too few to hold out --val-split {fraction}; use more pairs")
    role = {s: 1 for s in sources[:n]} | {s: 2 for s in sources[n : 2 * n]}
    parts: tuple[list, list, list] = ([], [], [])
    for pair in pairs:
        parts[role.get(pair[0], 0)].append(pair)
    return parts


@dataclass
class Seq2SeqMeta(Meta):
    """Both vocabularies and token levels, and the longest training target (it bounds decoding)."""

    source_vocab: list[str]
    target_vocab: list[str]
    source_level: str
    target_level: str
    max_target_len: int
    pairs: dict[str, int]


def decode_max_len(meta: Seq2SeqMeta) -> int:
    """How long a decoded output may grow: twice the longest training target, plus a margin."""
    return 2 * meta.max_target_len + 5


class Seq2SeqTask(Task):
    """Subclasses implement `pairs(quiet)`; everything else is shared."""

    schema: ClassVar[Schema] = Schema(Seq2SeqTrain, Seq2SeqModel, FilePairData)
    meta_type = Seq2SeqMeta
    monitor = "token_accuracy"
    monitor_mode = "max"
    metric_names = ("loss", "token_accuracy", "exact_match", "bleu")
    headline = "token_accuracy"
    ability = "translate"

    def pairs(self, quiet: bool) -> list[tuple[str, str]]:
        raise NotImplementedError

    def validate(self) -> None:
        data = self.config.data
        if data.level is not None:  # one choice for both sides
            data.source_level = data.target_level = data.level
        if not 0 <= self.config.train.teacher_forcing <= 1:
            raise SeqtrainError(f"--teacher-forcing must be in [0, 1], not {self.config.train.teacher_forcing}")

    # ------------------------------------------------------------------ data
    def prepare(self, meta: Seq2SeqMeta | None = None, quiet: bool = False) -> TaskData:
        config, data = self.config, self.config.data
        pairs = self.pairs(quiet)
        if getattr(data, "reverse", False):
            pairs = [(target, source) for source, target in pairs]
        train, val, test = split_pairs(pairs, data.val_split, config.train.seed)
        if meta is None:
            source_vocab = build_vocab([s for s, _ in train], data.source_level, data.max_vocab, data.min_freq)
            target_vocab = build_vocab([t for _, t in train], data.target_level, data.max_vocab, data.min_freq)
            meta = Seq2SeqMeta(
                source_vocab.itos,
                target_vocab.itos,
                data.source_level,
                data.target_level,
                max(len(encode(t, target_vocab, data.target_level, eos=True)) for _, t in train),
                {"train": len(train), "val": len(val), "test": len(test)},
            )
        self.meta = meta
        source_vocab, target_vocab = Vocab(meta.source_vocab, SPECIALS), Vocab(meta.target_vocab, SPECIALS)

        def loader(part: list[tuple[str, str]], shuffle: bool) -> PairLoader | None:
            if not part:
                return None
            sources = [encode(s, source_vocab, meta.source_level) for s, _ in part]
            targets = [encode(t, target_vocab, meta.target_level, eos=True) for _, t in part]
            return PairLoader(part, sources, targets, config.train.batch_size, shuffle, config.train.seed)

        train_loader = loader(train, True)
        if train_loader is None:
            raise SeqtrainError("no training pairs left after holding out val and test; lower --val-split or add pairs")
        steps = config.train.epochs * min(len(train_loader), config.train.max_steps or len(train_loader))
        schedule = decay_schedule(config.train.tf_schedule, config.train.teacher_forcing, steps)
        return TaskData(train_loader, loader(val, False), loader(test, False), meta, {"teacher_forcing": schedule})

    # ----------------------------------------------------------------- model
    def build_model(self, meta: Seq2SeqMeta) -> nn.Module:
        target = meta.target_vocab
        return Seq2Seq(len(meta.source_vocab), len(target), self.config.model, target.index(BOS), target.index(EOS))

    def default_meta(self) -> Seq2SeqMeta:
        data = self.config.data
        vocab = list(SPECIALS) + [f"t{i}" for i in range(min(data.max_vocab or 1000, 1000) - len(SPECIALS))]
        return Seq2SeqMeta(vocab, vocab, data.source_level, data.target_level, 20, {})

    # ------------------------------------------------------------- training
    def step(self, model: nn.Module, batch: PairBatch, state: Any, ctx: StepContext) -> StepResult:
        ratio = ctx.scheduled.get("teacher_forcing", 1.0) if ctx.training else 1.0
        logits = model(batch.source, batch.source_lengths, batch.target, ratio)
        target = batch.target
        valid = target != 0
        tokens = batch.tokens
        loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=0, reduction="sum")
        correct = (logits.argmax(-1) == target) & valid
        sums = {
            "loss": loss_sum.detach(),
            "token_accuracy": correct.sum(),
            "exact_match": (correct | ~valid).all(1).sum(),
            "sequences": float(len(batch)),
        }
        if not ctx.training:
            decoded = model.greedy(batch.source, batch.source_lengths, decode_max_len(self.meta))
            for ids, references in zip(decoded.tolist(), batch.references):
                stats = bleu_stats(self.bleu_tokens(ids), [tokenize(r) for r in references])
                for name, value in zip(STAT_NAMES, stats):
                    sums[name] = sums.get(name, 0.0) + value
        return StepResult(loss_sum / max(tokens, 1), tokens, sums)

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        out = {"loss": sums.get("loss", 0.0) / max(count, 1), "token_accuracy": sums.get("token_accuracy", 0.0) / max(count, 1)}
        out["exact_match"] = sums.get("exact_match", 0.0) / max(sums.get("sequences", 0.0), 1)
        if STAT_NAMES[0] in sums:
            out["bleu"] = bleu_from_stats([sums[name] for name in STAT_NAMES])
        return out

    # -------------------------------------------------------------- decoding
    def tokens_of(self, ids: list[int]) -> list[str]:
        """Target tokens up to (not including) <eos>."""
        itos = self.meta.target_vocab
        eos = itos.index(EOS)
        out = []
        for i in ids:
            if i == eos or i == 0:
                break
            out.append(itos[i])
        return out

    def bleu_tokens(self, ids: list[int]) -> list[str]:
        """A decoded output as BLEU's word tokens (word-level <unk> stays one token that matches nothing)."""
        tokens = self.tokens_of(ids)
        return tokens if self.meta.target_level == "word" else tokenize(join_tokens(tokens, "char"))

    def translate(
        self,
        model: nn.Module,
        texts: list[str],
        device: torch.device,
        beam: int = 1,
        length_penalty: float = 1.0,
        max_len: int = 0,
    ) -> list[str]:
        """Decode each text: greedy (batched) with beam 1, else beam search; `max_len` 0 picks one from the data."""
        if beam < 1:
            raise SeqtrainError(f"--beam must be at least 1, not {beam}")
        meta = self.meta
        vocab = self.per_meta("source_vocab", lambda: Vocab(meta.source_vocab, SPECIALS))
        sources = [encode(clean(t), vocab, meta.source_level) for t in texts]
        if any(len(s) == 0 for s in sources):
            raise SeqtrainError("cannot translate an empty text")
        lengths = torch.tensor([len(s) for s in sources])
        padded = nn.utils.rnn.pad_sequence(sources, batch_first=True).to(device)
        limit = max_len or decode_max_len(meta)
        model.eval()
        if beam == 1:
            outputs = model.greedy(padded, lengths.to(device), limit).tolist()
        else:
            outputs = model.beam_search(padded, lengths.to(device), beam, limit, length_penalty)
        return [join_tokens(self.tokens_of(ids), meta.target_level) for ids in outputs]

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        """Log a few validation translations, to watch them improve in TensorBoard."""
        if data.val is None:
            return
        samples = data.val.pairs[:: max(len(data.val.pairs) // 5, 1)][:5]
        device = next(model.parameters()).device
        outputs = self.translate(model, [s for s, _ in samples], device)
        rows = [f"| {s} | {t} | {o} |" for (s, t), o in zip(samples, outputs)]
        log.text("samples", "| source | reference | greedy |\n|---|---|---|\n" + "\n".join(rows), epoch)


@register("translate")
class TranslateTask(Seq2SeqTask):
    description = "English -> French (Tatoeba pairs from manythings.org), seq2seq with teacher forcing."
    defaults = {
        "cell": "lstm",
        "embed_dim": 128,
        "hidden": 256,
        "bidirectional": True,
        "attention": "dot",
        "dropout": 0.2,
        "epochs": 10,
        "lr": 2e-3,
        "source_level": "word",
        "target_level": "word",
        "num_pairs": 10000,
    }

    def pairs(self, quiet: bool) -> list[tuple[str, str]]:
        return read_pairs(self.locate(quiet), self.config.data.num_pairs)

    def locate(self, quiet: bool) -> Path:
        """--data: a pair file or a folder holding fra.txt or an archive of it; else the verified download."""
        data = self.config.data
        given = local_source(data)
        if given is not None and given.is_file():
            return given
        if given is not None:
            for name in ("fra.txt", "fra-eng.zip", "fra.txt.gz"):
                if (given / name).is_file():
                    return given / name
            raise SeqtrainError(f"--data {given} holds no fra.txt, fra-eng.zip or fra.txt.gz")
        archive = download(FRA_ENG_URL, None, data.cache_dir, data.mirror, quiet=quiet)
        verify_fra_eng(archive)
        return archive


def verify_fra_eng(archive: Path) -> None:
    """manythings.org re-releases the zip, so no fixed checksum: check it is an intact zip with a pair file.

    A file that fails is removed from the cache, so the next run downloads again.
    """
    problem = None
    if not zipfile.is_zipfile(archive):
        problem = "not a zip archive"
    else:
        with zipfile.ZipFile(archive) as zf:
            if zf.testzip() is not None:
                problem = "corrupt member (CRC mismatch)"
            elif "fra.txt" not in zf.namelist():
                problem = f"no fra.txt inside (found {', '.join(zf.namelist())})"
    if problem:
        archive.unlink(missing_ok=True)
        raise SeqtrainError(f"downloaded {archive.name} is broken: {problem}; removed it, try again or use --data FILE")
    read_pairs(archive, 100)  # the first lines must be English<TAB>French


@register("pairs")
class PairsTask(Seq2SeqTask):
    description = "Any tab-separated source/target file (--data FILE), seq2seq with teacher forcing."
    defaults = {"attention": "dot", "hidden": 256, "epochs": 10, "lr": 2e-3, "num_pairs": 0}

    def validate(self) -> None:
        super().validate()
        if not (self.config.data.data or self.config.data.data_dir):
            raise SeqtrainError("--task pairs needs --data FILE: one 'source<TAB>target' pair per line")

    def pairs(self, quiet: bool) -> list[tuple[str, str]]:
        return read_pairs(local_source(self.config.data), self.config.data.num_pairs)


@register("dates")
class DatesTask(Seq2SeqTask):
    description = "Human-written dates -> ISO 8601 (generated, no download), character-level seq2seq."
    defaults = {
        "cell": "gru",
        "embed_dim": 32,
        "hidden": 128,
        "bidirectional": True,
        "attention": "dot",
        "epochs": 5,
        "lr": 3e-3,
        "source_level": "char",
        "target_level": "char",
        "num_pairs": 20000,
    }

    schema = Schema(Seq2SeqTrain, Seq2SeqModel, PairData)

    def validate(self) -> None:
        super().validate()
        if self.config.data.num_pairs == 0:
            raise SeqtrainError("--task dates generates its pairs: give --num-pairs a positive count")

    def pairs(self, quiet: bool) -> list[tuple[str, str]]:
        return date_pairs(self.config.data.num_pairs, self.config.train.seed)
