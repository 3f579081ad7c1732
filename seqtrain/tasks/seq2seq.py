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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.bleu import STAT_NAMES, bleu_from_stats, bleu_stats
from seqtrain.config import Config
from seqtrain.data.download import download
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
from seqtrain.tasks.base import StepContext, StepResult, Task, TaskData, register
from seqtrain.training.schedules import decay_schedule

FRA_ENG_URL = "http://www.manythings.org/anki/fra-eng.zip"


def split_pairs(pairs: list[tuple[str, str]], fraction: float, seed: int) -> tuple[list, list, list]:
    """(train, val, test): `fraction` of the distinct sources each for val and test, chosen with `seed`."""
    if not 0 <= fraction < 0.5:
        raise SeqtrainError(f"--val-split must be in [0, 0.5) for seq2seq (it is used for val and test), not {fraction}")
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


def decode_max_len(meta: dict[str, Any]) -> int:
    """How long a decoded output may grow: twice the longest training target, plus a margin."""
    return 2 * meta["max_target_len"] + 5


class Seq2SeqTask(Task):
    """Subclasses implement `pairs(config, quiet)`; everything else is shared."""

    monitor = "token_accuracy"
    monitor_mode = "max"
    headline = "token_accuracy"

    def pairs(self, config: Config, quiet: bool) -> list[tuple[str, str]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ data
    def prepare(self, config: Config, meta: dict[str, Any] | None = None, quiet: bool = False) -> TaskData:
        if config.data.num_pairs < 0:
            raise SeqtrainError(f"--num-pairs must be 0 (all) or positive, not {config.data.num_pairs}")
        pairs = self.pairs(config, quiet)
        if config.data.reverse:
            pairs = [(target, source) for source, target in pairs]
        train, val, test = split_pairs(pairs, config.data.val_split, config.train.seed)
        if meta is None:
            level = config.data.level
            source_vocab = build_vocab([s for s, _ in train], level, config.data.max_vocab, config.data.min_freq)
            target_vocab = build_vocab([t for _, t in train], level, config.data.max_vocab, config.data.min_freq)
            meta = {
                "source_vocab": source_vocab.itos,
                "target_vocab": target_vocab.itos,
                "level": level,
                "max_target_len": max(len(encode(t, target_vocab, level, eos=True)) for _, t in train),
                "pairs": {"train": len(train), "val": len(val), "test": len(test)},
            }
        source_vocab, target_vocab = Vocab(meta["source_vocab"], SPECIALS), Vocab(meta["target_vocab"], SPECIALS)

        def loader(part: list[tuple[str, str]], shuffle: bool) -> PairLoader | None:
            if not part:
                return None
            sources = [encode(s, source_vocab, meta["level"]) for s, _ in part]
            targets = [encode(t, target_vocab, meta["level"], eos=True) for _, t in part]
            return PairLoader(part, sources, targets, config.train.batch_size, shuffle, config.train.seed)

        train_loader = loader(train, True)
        if train_loader is None:
            raise SeqtrainError("no training pairs left after holding out val and test; lower --val-split or add pairs")
        steps = config.train.epochs * min(len(train_loader), config.train.max_steps or len(train_loader))
        schedule = decay_schedule(config.train.tf_schedule, config.train.teacher_forcing, steps)
        return TaskData(train_loader, loader(val, False), loader(test, False), meta, {"teacher_forcing": schedule})

    # ----------------------------------------------------------------- model
    def build_model(self, config: Config, meta: dict[str, Any]) -> nn.Module:
        target = meta["target_vocab"]
        model = Seq2Seq(len(meta["source_vocab"]), len(target), config.model, target.index(BOS), target.index(EOS))
        model.meta = meta  # lets `step` turn ids back into text for BLEU; not part of the weights
        return model

    def default_meta(self, config: Config) -> dict[str, Any]:
        vocab = list(SPECIALS) + [f"t{i}" for i in range(min(config.data.max_vocab, 1000) - len(SPECIALS))]
        return {"source_vocab": vocab, "target_vocab": vocab, "level": config.data.level, "max_target_len": 20}

    # ------------------------------------------------------------- training
    def step(self, model: nn.Module, batch: PairBatch, state: Any, ctx: StepContext) -> StepResult:
        ratio = ctx.scheduled.get("teacher_forcing", 1.0) if ctx.training else 1.0
        logits = model(batch.source, batch.source_lengths, batch.target, ratio)
        target = batch.target
        valid = target != 0
        tokens = int(valid.sum())
        loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=0, reduction="sum")
        correct = (logits.argmax(-1) == target) & valid
        sums = {
            "loss": loss_sum.item(),
            "token_accuracy": float(correct.sum()),
            "exact_match": float((correct | ~valid).all(1).sum()),
            "sequences": float(len(batch)),
        }
        if not ctx.training:
            decoded = model.greedy(batch.source, batch.source_lengths, decode_max_len(model.meta))
            for ids, references in zip(decoded.tolist(), batch.references):
                stats = bleu_stats(self.bleu_tokens(ids, model.meta), [tokenize(r) for r in references])
                for name, value in zip(STAT_NAMES, stats):
                    sums[name] = sums.get(name, 0.0) + value
        return StepResult(loss_sum / max(tokens, 1), tokens, sums)

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        out = {"loss": sums.get("loss", 0.0) / max(count, 1), "token_accuracy": sums.get("token_accuracy", 0.0) / max(count, 1)}
        out["exact_match"] = sums.get("exact_match", 0.0) / max(sums.get("sequences", 0.0), 1)
        if STAT_NAMES[0] in sums:
            out["bleu"] = bleu_from_stats([sums[name] for name in STAT_NAMES])
        return out

    def example_input(self, model: nn.Module, meta: dict[str, Any]) -> tuple:
        return model.example_input()

    # -------------------------------------------------------------- decoding
    @staticmethod
    def tokens_of(ids: list[int], meta: dict[str, Any]) -> list[str]:
        """Target tokens up to (not including) <eos>."""
        itos, eos = meta["target_vocab"], meta["target_vocab"].index(EOS)
        out = []
        for i in ids:
            if i == eos or i == 0:
                break
            out.append(itos[i])
        return out

    def bleu_tokens(self, ids: list[int], meta: dict[str, Any]) -> list[str]:
        """A decoded output as BLEU's word tokens (word-level <unk> stays one token that matches nothing)."""
        tokens = self.tokens_of(ids, meta)
        return tokens if meta["level"] == "word" else tokenize(join_tokens(tokens, "char"))

    def translate(
        self,
        model: nn.Module,
        meta: dict[str, Any],
        texts: list[str],
        device: torch.device,
        beam: int = 1,
        length_penalty: float = 1.0,
        max_len: int = 0,
    ) -> list[str]:
        """Decode each text: greedy (batched) with beam 1, else beam search; `max_len` 0 picks one from the data."""
        if beam < 1:
            raise SeqtrainError(f"--beam must be at least 1, not {beam}")
        vocab, level = Vocab(meta["source_vocab"], SPECIALS), meta["level"]
        sources = [encode(clean(t), vocab, level) for t in texts]
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
        return [join_tokens(self.tokens_of(ids, meta), level) for ids in outputs]

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        """Log a few validation translations, to watch them improve in TensorBoard."""
        if data.val is None:
            return
        samples = data.val.pairs[:: max(len(data.val.pairs) // 5, 1)][:5]
        device = next(model.parameters()).device
        outputs = self.translate(model, data.meta, [s for s, _ in samples], device)
        rows = [f"| {s} | {t} | {o} |" for (s, t), o in zip(samples, outputs)]
        log.text("samples", "| source | reference | greedy |\n|---|---|---|\n" + "\n".join(rows), epoch)


@register
class TranslateTask(Seq2SeqTask):
    name = "translate"
    description = "English -> French (Tatoeba pairs from manythings.org), seq2seq with teacher forcing."
    defaults = {
        "model.cell": "lstm",
        "model.embed_dim": 128,
        "model.hidden": 256,
        "model.bidirectional": True,
        "model.attention": "dot",
        "model.dropout": 0.2,
        "train.epochs": 10,
        "train.lr": 2e-3,
        "data.level": "word",
        "data.num_pairs": 10000,
    }

    def pairs(self, config: Config, quiet: bool) -> list[tuple[str, str]]:
        return read_pairs(self.locate(config, quiet), config.data.num_pairs)

    @staticmethod
    def locate(config: Config, quiet: bool) -> Path:
        """--data FILE, else --data-dir holding fra.txt or an archive, else the verified download."""
        if config.data.data:
            return Path(config.data.data).expanduser()
        if config.data.data_dir:
            folder = Path(config.data.data_dir).expanduser()
            for name in ("fra.txt", "fra-eng.zip", "fra.txt.gz"):
                if (folder / name).is_file():
                    return folder / name
            raise SeqtrainError(f"--data-dir {folder} holds no fra.txt, fra-eng.zip or fra.txt.gz; or pass --data FILE")
        archive = download(FRA_ENG_URL, None, config.data.cache_dir, config.data.mirror, quiet=quiet)
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


@register
class PairsTask(Seq2SeqTask):
    name = "pairs"
    description = "Any tab-separated source/target file (--data FILE), seq2seq with teacher forcing."
    defaults = {"model.attention": "dot", "model.hidden": 256, "train.epochs": 10, "train.lr": 2e-3, "data.num_pairs": 0}

    def pairs(self, config: Config, quiet: bool) -> list[tuple[str, str]]:
        if not config.data.data:
            raise SeqtrainError("--task pairs needs --data FILE: one 'source<TAB>target' pair per line")
        return read_pairs(config.data.data, config.data.num_pairs)


@register
class DatesTask(Seq2SeqTask):
    name = "dates"
    description = "Human-written dates -> ISO 8601 (generated, no download), character-level seq2seq."
    defaults = {
        "model.cell": "gru",
        "model.embed_dim": 32,
        "model.hidden": 128,
        "model.bidirectional": True,
        "model.attention": "dot",
        "train.epochs": 5,
        "train.lr": 3e-3,
        "data.level": "char",
        "data.num_pairs": 20000,
    }

    def pairs(self, config: Config, quiet: bool) -> list[tuple[str, str]]:
        if config.data.num_pairs == 0:
            raise SeqtrainError("--task dates generates its pairs: give --num-pairs a positive count")
        return date_pairs(config.data.num_pairs, config.train.seed)
