"""Speech to text with CTC: `ctc` (a user's WAV files with transcripts) and `digits` (connected spoken digits from FSDD).

The input is longer than its label sequence and unaligned with it; the model
gives per-frame posteriors over the symbols plus a blank, trained with
nn.CTCLoss. An utterance too short for its labels after frame stacking
cannot be aligned: it is reported at the start of the run and left out of
training (never silently zeroed), and counts as wrong when scored.
Metrics: label error rate (edit distance over reference length) and
sequence accuracy, greedy during training; the final report adds beam search.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.config import Schema, SourceData, TrainSettings, opt
from seqtrain.data.audio import load_audio
from seqtrain.data.batching import Batch
from seqtrain.data.sources import local_source
from seqtrain.errors import SeqtrainError
from seqtrain.models.ctc import CtcModel, edit_distance, greedy_decode, prefix_beam_decode, required_frames
from seqtrain.models.signals import stack_frames
from seqtrain.tasks.audio import FSDD_NAME, AudioClassificationTask, AudioFeatures, fsdd_recordings, fsdd_split
from seqtrain.tasks.base import Meta, StepContext, StepResult, TaskData, register
from seqtrain.tasks.classification import stratified_split
from seqtrain.tasks.signals import SignalModel, VectorLoader


@dataclass
class CtcModelSettings(SignalModel):
    beam: int = opt(8, "Prefix beam width for the final report and `transcribe` (1: greedy).", at_least=1)


@dataclass
class CtcSplits:
    max_len: int = opt(0, "Longer recordings keep their first N frames; 0 keeps all.", at_least=0)
    val_split: float = opt(0.1, "Fraction of the training utterances held out for validation.", at_least=0, below=1)


@dataclass
class CtcData(SourceData, CtcSplits, AudioFeatures):
    path_col: str = opt("path", "CSV: the column holding each WAV file's path (relative to the CSV).")
    text_col: str = opt("text", "CSV: the column holding each recording's transcript.")
    units: str = opt("char", "Transcript symbols: characters, or space-separated words.", ("char", "word"))
    test_split: float = opt(0.2, "Fraction of the utterances held out for testing.", at_least=0, below=1)


@dataclass
class DigitsData(SourceData, CtcSplits, AudioFeatures):
    train_utterances: int = opt(3000, "Connected-digit utterances generated from the training recordings.", at_least=1)
    test_utterances: int = opt(500, "Utterances generated from the test recordings (indices 0-4).", at_least=1)
    min_digits: int = opt(2, "Fewest digits per utterance.", at_least=1)
    max_digits: int = opt(7, "Most digits per utterance.", at_least=1)


@dataclass
class CtcMeta(Meta):
    """Symbols (index i + 1; 0 is the blank), what joins them in a transcript, and the features' statistics."""

    symbols: list[str]
    separator: str
    channels: int
    mean: torch.Tensor
    std: torch.Tensor
    max_len: int = 0


class CtcTask(AudioClassificationTask):
    """Subclasses give the utterances (`utterances`): (train, test) lists of (waveform, label sequence, name)."""

    schema: ClassVar[Schema] = Schema(TrainSettings, CtcModelSettings, CtcData)
    meta_type = CtcMeta
    monitor = "ler"
    monitor_mode = "min"
    metric_names = ("loss", "ler", "seq_accuracy")
    headline = "ler"
    ability = "transcribe"

    def utterances(self, quiet: bool) -> tuple[list[tuple[np.ndarray, list[str], str]], list | None]:
        raise NotImplementedError

    def separator(self) -> str:
        return ""

    def prepare(self, meta: CtcMeta | None = None, quiet: bool = False) -> TaskData:
        config, data = self.config, self.config.data
        train_items, test_items = self.utterances(quiet)
        symbols = sorted({s for _, labels, _ in train_items + (test_items or []) for s in labels})
        if meta is not None:
            unknown = sorted(set(symbols) - set(meta.symbols))
            if unknown:
                raise SeqtrainError(f"the transcripts hold symbols the model does not know: {' '.join(unknown[:10])}")
            symbols = list(meta.symbols)
        index = {s: i + 1 for i, s in enumerate(symbols)}
        seed = config.train.seed
        items = train_items + (test_items or [])
        everything = torch.arange(len(items))
        if test_items is not None:
            rest, test = everything[: len(train_items)], everything[len(train_items) :]
        else:
            test, rest = stratified_split(torch.zeros(len(items), dtype=torch.long), data.test_split, seed)
        held, kept = stratified_split(torch.zeros(len(rest), dtype=torch.long), data.val_split, seed + 1)
        parts = {"train": rest[kept], "val": rest[held], "test": test}
        max_len = meta.max_len if meta is not None else data.max_len
        waves = [self.cut(torch.from_numpy(w), max_len) for w, _, _ in items]
        labels = [[index[s] for s in ls] for _, ls, _ in items]
        features = self.featurise(waves)
        if meta is None:
            channels, mean, std = self.statistics([features[i] for i in parts["train"].tolist()])
            meta = CtcMeta(symbols, self.separator(), channels, mean, std, data.max_len)
        self.meta = meta
        frames = [int(stack_frames(f[None], torch.tensor([len(f)]), config.model.stack)[1]) for f in features]
        short = {i for i in range(len(items)) if frames[i] < required_frames(labels[i])}
        train = [i for i in parts["train"].tolist() if i not in short]
        lengths = [len(ls) for ls in labels]
        self.report = [
            f"symbols ({len(symbols)}): {' '.join(symbols[:60])}",
            "utterances: " + ", ".join(f"{name} {len(idx):,}" for name, idx in parts.items() if len(idx))
            + f"; {min(lengths)}-{max(lengths)} labels, {min(frames)}-{max(frames)} frames after --stack {config.model.stack}",
        ]
        if short:
            self.report.append(
                f"{len(short):,} utterances have fewer frames than their labels need (labels plus repeats): "
                "left out of training, scored as errors; lower --stack or --hop-ms"
            )
        self.items = items
        # the waveforms, length-bucketed; targets [N, longest] label ids padded with 0 (the blank), so lengths are (t != 0).sum(1)
        padded = nn.utils.rnn.pad_sequence([torch.tensor(ls, dtype=torch.long) for ls in labels], batch_first=True)
        loaders = {
            name: VectorLoader([waves[i] for i in idx], padded[idx], config.train.batch_size, name, self, seed)
            if idx else None
            for name, idx in (("train", train), ("val", parts["val"].tolist()), ("test", parts["test"].tolist()))
        }
        if loaders["train"] is None:
            raise SeqtrainError("no training utterances are left; lower --val-split or --stack")
        return TaskData(loaders["train"], loaders["val"], loaders["test"], meta)

    def notes(self) -> list[str]:
        return self.report

    def build_model(self, meta: CtcMeta) -> nn.Module:
        return CtcModel(meta.channels, len(meta.symbols), self.config.model, meta.mean, meta.std, self.frontend(), self.augment())

    def default_meta(self) -> CtcMeta:
        size = self.feature_size()
        return CtcMeta([str(d) for d in range(10)], "", size, torch.zeros(size), torch.ones(size))

    def step(self, model: nn.Module, batch: Batch, state: Any, ctx: StepContext) -> StepResult:
        log_probs, frames = model(batch.tokens, batch.lengths)
        targets = batch.targets
        target_lengths = (targets != 0).sum(1)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, frames, target_lengths, blank=0, reduction="none")
        loss = (loss / target_lengths.clamp(min=1)).mean()
        sums = {"loss": loss.detach() * len(batch)}
        if not ctx.training:
            sums.update(self.score(greedy_decode(log_probs.detach(), frames), targets, target_lengths))
        return StepResult(loss, len(batch), sums)

    @staticmethod
    def score(decoded: list[list[int]], targets: torch.Tensor, target_lengths: torch.Tensor) -> dict[str, float]:
        edits = correct = 0
        for hyp, ref, n in zip(decoded, targets.tolist(), target_lengths.tolist()):
            distance = edit_distance(ref[:n], hyp)
            edits += distance
            correct += distance == 0
        return {"edits": float(edits), "ref_labels": float(target_lengths.sum()), "correct": float(correct)}

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        out = {"loss": sums.get("loss", 0.0) / max(count, 1)}
        if "ref_labels" in sums:
            out["ler"] = sums["edits"] / max(sums["ref_labels"], 1)
            out["seq_accuracy"] = sums["correct"] / max(count, 1)
        return out

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        """Beam-search LER and sequence accuracy of the split just scored (the test set at the end of `fit`)."""
        split = self.current_split
        loader = {"val": data.val, "test": data.test}.get(split)
        if loader is None or self.config.model.beam == 1:
            return {}
        device = next(model.parameters()).device
        totals = {"edits": 0.0, "ref_labels": 0.0, "correct": 0.0}
        count = 0
        model.eval()
        with torch.no_grad():
            for batch in loader:
                log_probs, frames = model(batch.tokens.to(device), batch.lengths.to(device))
                decoded = [prefix_beam_decode(lp, int(n), self.config.model.beam) for lp, n in zip(log_probs.cpu(), frames)]
                for key, value in self.score(decoded, batch.targets, (batch.targets != 0).sum(1)).items():
                    totals[key] += value
                count += len(batch)
        self.current_split = split
        return {split: {f"beam{self.config.model.beam}": {"ler": totals["edits"] / max(totals["ref_labels"], 1),
                                                        "seq_accuracy": totals["correct"] / max(count, 1)}}}

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        if epoch == 1:
            from seqtrain.tasks.audio import log_spectrograms

            log_spectrograms(model, data.train, log)

    # ------------------------------------------------------------ inference
    def transcribe(self, model: nn.Module, paths: list[str], device: torch.device, beam: int | None = None) -> list[tuple[str, str]]:
        """(file name, transcript) per WAV file, by prefix beam search (`beam` 1: greedy)."""
        beam = beam or self.config.model.beam
        out = []
        model.eval()
        for path in paths:
            name, wave = self.read_inputs(Path(path).expanduser())[0]
            wave = self.cut(wave, self.meta.max_len)
            with torch.no_grad():
                log_probs, frames = model(wave[None].to(device), torch.tensor([len(wave)], device=device))
            decoded = greedy_decode(log_probs, frames)[0] if beam == 1 else prefix_beam_decode(log_probs[0], int(frames[0]), beam)
            out.append((name, self.meta.separator.join(self.meta.symbols[s - 1] for s in decoded)))
        return out


@register("ctc")
class TranscriptTask(CtcTask):
    description = "Speech to text with CTC: --data a CSV of WAV path and transcript (--units char or word)."
    defaults = {"cell": "gru", "hidden": 96, "epochs": 20, "batch_size": 16, "lr": 3e-3, "stack": 3}

    def separator(self) -> str:
        return " " if self.config.data.units == "word" else ""

    def utterances(self, quiet: bool):
        d = self.config.data
        path = local_source(d)
        if path is None or not path.is_file():
            raise SeqtrainError("ctc needs --data: a CSV with a header naming --path-col and --text-col")
        out = []
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for name, flag in ((d.path_col, "--path-col"), (d.text_col, "--text-col")):
                if name not in columns:
                    raise SeqtrainError(f"{flag}: no column '{name}' in {path}; its columns are {', '.join(columns)}")
            for row in reader:
                text = row[d.text_col].strip()
                labels = text.split() if d.units == "word" else list(text)
                if not labels:
                    raise SeqtrainError(f"{path}: {row[d.path_col]} has an empty transcript")
                out.append((load_audio(path.parent / row[d.path_col].strip(), d.sample_rate), labels, row[d.path_col]))
        return out, None


# --------------------------------------------------------------------- digits
def connect_digits(
    pool: dict[str, list[tuple[str, np.ndarray]]], count: int, min_digits: int, max_digits: int, sample_rate: int, seed: int
) -> list[tuple[np.ndarray, list[str], str]]:
    """`count` utterances of one speaker's recordings in a row, 2-7 digits by default, with gaps of 50-300 ms of
    faint noise between them and each digit's level changed by -6 to +6 dB; seeded."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    speakers = sorted(pool)
    out = []
    for number in range(count):
        speaker = rng.choice(speakers)
        chosen = [rng.choice(pool[speaker]) for _ in range(rng.randint(min_digits, max_digits))]
        pieces = []
        for position, (digit, wave) in enumerate(chosen):
            gap = int(sample_rate * rng.uniform(0.05, 0.3))
            pieces.append(noise.normal(0, 1e-3, gap).astype(np.float32))
            pieces.append(wave * np.float32(10 ** (rng.uniform(-6, 6) / 20)))
        pieces.append(noise.normal(0, 1e-3, int(sample_rate * rng.uniform(0.05, 0.3))).astype(np.float32))
        digits = [digit for digit, _ in chosen]
        out.append((np.concatenate(pieces), digits, f"{speaker}-{number}-{''.join(digits)}"))
    return out


@register("digits")
class DigitsTask(CtcTask):
    description = ("Connected spoken digits with CTC: utterances of 2-7 FSDD digits of one speaker, generated (seeded) "
                   "from the training recordings for training and from the test recordings (0-4) for testing.")
    schema = Schema(TrainSettings, CtcModelSettings, DigitsData)
    defaults = {"cell": "gru", "hidden": 96, "epochs": 12, "batch_size": 16, "lr": 3e-3, "stack": 3, "sample_rate": 8000}

    def validate(self) -> None:
        d = self.config.data
        if d.min_digits > d.max_digits:
            raise SeqtrainError(f"--min-digits {d.min_digits} is above --max-digits {d.max_digits}")

    def utterances(self, quiet: bool):
        d = self.config.data
        train_files, test_files = fsdd_split(fsdd_recordings(self.config, quiet), "index", "")
        made = []
        for files, count, offset in ((train_files, d.train_utterances, 0), (test_files, d.test_utterances, 1)):
            pool: dict[str, list[tuple[str, np.ndarray]]] = {}
            for file in files:
                digit, speaker, _ = FSDD_NAME.match(file.name).groups()
                pool.setdefault(speaker, []).append((digit, load_audio(file, d.sample_rate)))
            made.append(connect_digits(pool, count, d.min_digits, d.max_digits, d.sample_rate, self.config.train.seed * 2 + offset))
        return made[0], made[1]
