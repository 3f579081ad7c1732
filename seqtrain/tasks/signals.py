"""Classify numeric sequences, or regress a number from each: `signal` (a user's .ts, long CSV or folder of
per-sequence files).

Each step is a vector of channels; sequences vary in length and reach the
same padding-exact recurrent encoder as text. Every run also scores the
baselines people compare against on such data (models/nearest.py):
1-nearest-neighbour (Euclidean, and DTW in a Sakoe-Chiba band where
affordable), with the majority class for classes, and the training mean and
ridge regression for numbers. The audio tasks (tasks/audio.py) share this
class with a waveform front-end.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.config import ModelSettings, Schema, SourceData, TrainSettings, opt
from seqtrain.data.batching import Batch
from seqtrain.data.signals import (
    Sequences, declares_targets, read_long_csv, read_sequence_file, read_signals, read_ts,
)
from seqtrain.data.sources import given_sources, local_source
from seqtrain.errors import SeqtrainError
from seqtrain.models.nearest import one_nn_baselines, regression_baselines
from seqtrain.models.signals import SignalClassifier, SignalRegressor
from seqtrain.scores import Counts, count_sums, counts_from_sums, headline_scores, regression_scores, regression_sums
from seqtrain.tasks.base import Meta, StepContext, StepResult, Task, TaskData, register
from seqtrain.tasks.classification import (
    NO_MATPLOTLIB, Prediction, SplitLoader, baseline_and_class_rows, have_matplotlib, log_baselines_and_confusion,
    stratified_split,
)
from seqtrain.training.distributed import launched_rank


# ------------------------------------------------------------------ settings
@dataclass
class SignalModel(ModelSettings):
    bidirectional: bool = opt(True, "Run each layer in both directions.")
    pooling: str = opt("mean", "How the sequence output becomes one vector.", ("last", "mean", "max"))
    stack: int = opt(
        1, "Stack every N consecutive steps into one input vector (frame subsampling): N times fewer recurrent steps.",
        at_least=1,
    )


@dataclass
class SequenceSplits:
    max_len: int = opt(
        0, "Longer sequences keep their first N steps (after any audio features: N frames); 0 keeps all.", at_least=0
    )
    val_split: float = opt(0.1, "Fraction of the training sequences held out for validation (stratified).", at_least=0, below=1)


@dataclass
class TestSplit:
    """For data that may come without a test split (presets with their own split rule lack it)."""

    test_split: float = opt(
        0.2, "Fraction held out for testing when the data gives no test split (stratified, seeded).", at_least=0, below=1
    )


@dataclass
class SignalData(SourceData, SequenceSplits, TestSplit):
    id_col: str = opt("id", "Long CSV: the column naming the sequence each row (step) belongs to.")
    label_col: str = opt("label", "Long CSV: the column holding each sequence's label.")
    time_col: str | None = opt(None, "Long CSV: the column that orders a sequence's rows (numbers or ISO timestamps).")
    features: str | None = opt(None, "Long CSV: comma-separated feature columns (default: every other column).")
    dtw_window: float = opt(
        0.1, "Sakoe-Chiba band of the 1-NN DTW baseline, as a fraction of the length; 0 skips DTW.", at_least=0, below=1
    )
    objective: str = opt(
        "auto", "Classify the label, or regress it as a number (MSE, RMSE/MAE/R^2); auto regresses where a .ts file "
        "says '@targetLabel true' and classifies anything else.", ("auto", "classify", "regress"),
    )


@dataclass
class SignalMeta(Meta):
    """Label names, channel count, the training split's per-channel statistics, and the length cut predictions repeat;
    for a regression model (no labels), the training targets' mean and std that scale its output."""

    labels: list[str]
    channels: int
    mean: torch.Tensor
    std: torch.Tensor
    max_len: int = 0
    regress: bool = False
    target_mean: float = 0.0
    target_std: float = 1.0


def label_order(names: set[str]) -> list[str]:
    """Labels sorted with numbers in numeric order ('2' before '10')."""
    return sorted(names, key=lambda name: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)])


class VectorLoader(SplitLoader):
    """Length-bucketed batches of [T, C] sequences (or [S] waveforms), zero-padded; tells the task its split."""

    def pad(self, sequences):
        return nn.utils.rnn.pad_sequence(list(sequences), batch_first=True), torch.tensor([len(s) for s in sequences])


# ---------------------------------------------------------------------- task
class SequenceClassificationTask(Task):
    """Subclasses say where the sequences come from (`load`) and, for audio, the front-end (`frontend`)."""

    schema: ClassVar[Schema] = Schema(TrainSettings, SignalModel, SignalData)
    meta_type = SignalMeta
    monitor = "accuracy"
    monitor_mode = "max"
    metric_names = ("loss", "accuracy", "macro_f1")
    headline = "accuracy"
    ability = "predict"
    breakdown_rows = ("class ",)

    def __init__(self, config):
        super().__init__(config)
        self.current_split = "train"
        self.counts: dict[str, Counts] = {}
        self.baselines: dict[str, dict[str, dict[str, float]]] = {}
        self.report: list[str] = []

    # ----------------------------------------------------------------- data
    def load(self, quiet: bool) -> tuple[Sequences, Sequences | None]:
        raise NotImplementedError

    def frontend(self) -> nn.Module | None:
        """The module that turns raw inputs into feature frames on the device (audio); None: inputs are the features."""
        return None

    def augment(self) -> nn.Module | None:
        """Training-time masking of the normalised features (audio's SpecAugment); None: none."""
        return None

    def to_input(self, values: np.ndarray) -> torch.Tensor:
        """One stored sequence as the model's input tensor (audio: the waveform [S]; else [T, C])."""
        return torch.from_numpy(values)

    def cut(self, x: torch.Tensor, max_len: int) -> torch.Tensor:
        """The --max-len rule: the first max_len steps (for audio, the samples of max_len frames)."""
        return x[:max_len] if max_len else x

    def featurise(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """What the encoder reads, before normalisation, for statistics and baselines (audio: the front-end's frames)."""
        return inputs

    def regresses(self, train: Sequences) -> bool:
        """Whether the labels are numbers to predict rather than classes (the signal task's --objective; audio never)."""
        return False

    def use_objective(self, regress: bool) -> None:
        """What this run reports and picks its best checkpoint by: accuracy for classes, validation RMSE for numbers."""
        if regress:
            self.monitor, self.monitor_mode, self.headline = "rmse", "min", "rmse"
            self.metric_names = ("loss", "rmse", "mae", "r2")

    def prepare(self, meta: SignalMeta | None = None, quiet: bool = False) -> TaskData:
        config, data = self.config, self.config.data
        train_set, test_set = self.load(quiet)
        everything = Sequences(train_set.values + (test_set.values if test_set else []),
                               train_set.labels + (test_set.labels if test_set else []),
                               train_set.names + (test_set.names if test_set else []))
        regress = meta.regress if meta is not None else self.regresses(train_set)
        self.use_objective(regress)
        names: list[str] = []
        if regress:
            targets = numeric_targets(everything)
        else:
            names = label_order(set(everything.labels))
            if meta is not None:
                unknown = sorted(set(names) - set(meta.labels))
                if unknown:
                    raise SeqtrainError(
                        f"the data has labels the model was not trained on ({', '.join(unknown[:8])}): "
                        "point --data at the data it was trained on"
                    )
                names = list(meta.labels)
            index = {name: i for i, name in enumerate(names)}
            targets = torch.tensor([index[label] for label in everything.labels], dtype=torch.long)
        seed = config.train.seed
        # splits stratified by class, or for numbers spread evenly over the target's range (sorted, every k-th one)
        if test_set is not None:
            rest, test = torch.arange(len(train_set)), torch.arange(len(train_set), len(everything))
        else:
            test, rest = stratified_split(targets, data.test_split, seed)
        held, kept = stratified_split(targets[rest], data.val_split, seed + 1)
        parts = {"train": rest[kept], "val": rest[held], "test": test}
        if not len(parts["train"]):
            raise SeqtrainError("no training sequences are left after the validation and test splits; lower --val-split")
        max_len = meta.max_len if meta is not None else data.max_len
        inputs = [self.to_input(v) for v in everything.values]
        cut = [self.cut(x, max_len) for x in inputs]
        features = self.featurise(cut)
        if meta is None:
            channels, mean, std = self.statistics([features[i] for i in parts["train"].tolist()])
            meta = SignalMeta(names, channels, mean, std, data.max_len)
            if regress:
                meta.regress, meta.target_mean, meta.target_std = True, *target_statistics(targets[parts["train"]])
        self.meta = meta
        longer = sum(len(a) > len(b) for a, b in zip(inputs, cut))
        self.report = self.describe(names, targets, parts, everything, features, longer)
        if launched_rank() == 0:  # rank 0 alone reports them: the other ranks of a torchrun skip the cost
            self.baselines = self.score_baselines(features, targets, parts, len(names))
        loaders = {
            name: VectorLoader([cut[i] for i in idx.tolist()], targets[idx], config.train.batch_size, name, self, seed)
            if len(idx) or name == "train" else None
            for name, idx in parts.items()
        }
        if loaders["val"] is None:  # the training loss, not the training accuracy (soon 1.0 at every epoch), picks the best epoch
            self.monitor, self.monitor_mode = "loss", "min"
        return TaskData(loaders["train"], loaders["val"], loaders["test"], meta)

    def statistics(self, train: list[torch.Tensor]) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Channels and per-channel mean and std over every step of the training split (a constant channel gets std 1)."""
        rows = torch.cat(train).double()
        std = rows.std(0, correction=0)
        return rows.shape[1], rows.mean(0).float(), torch.where(std > 0, std, torch.ones_like(std)).float()

    def describe(self, names, targets, parts, everything: Sequences, features: list[torch.Tensor], longer: int) -> list[str]:
        """Start-of-run lines: labels with counts (for numbers: their range), split sizes, lengths and the --max-len cut."""
        lengths = [len(v) for v in features]
        if self.meta.regress:
            head = (f"target (a number per sequence): {targets.min().item():.4g} to {targets.max().item():.4g}, training "
                    f"mean {self.meta.target_mean:.4g}, std {self.meta.target_std:.4g}")
        else:
            counts = Counter(targets.tolist())
            head = f"labels ({len(names)}): " + ", ".join(f"{names[i]} {counts[i]:,}" for i in range(len(names))[:40])
            head += numbers_hint(everything.labels)
        lines = [
            head,
            "sequences: " + ", ".join(f"{name} {len(idx):,}" for name, idx in parts.items() if len(idx))
            + f"; {features[0].shape[1]} channel(s), {min(lengths):,}-{max(lengths):,} steps"
            + (f" (median {int(np.median(lengths)):,})" if min(lengths) != max(lengths) else ""),
        ]
        if longer:
            lines.append(f"--max-len {self.meta.max_len}: {longer:,} longer sequences keep their first {self.meta.max_len} steps")
        return lines

    def score_baselines(self, inputs: list[torch.Tensor], targets: torch.Tensor, parts: dict[str, torch.Tensor],
                        classes: int) -> dict[str, dict[str, dict[str, float]]]:
        """Majority class (numbers: the training mean), 1-NN (numbers: and ridge) on the normalised sequences of
        val and test (train is the reference set)."""
        meta = self.meta
        mean, std = meta.mean.numpy(), meta.std.numpy()

        def values(idx: torch.Tensor) -> list[np.ndarray]:
            return [(inputs[i].numpy() - mean) / std for i in idx.tolist()]

        splits = {name: (values(idx), targets[idx]) for name, idx in parts.items() if name != "train" and len(idx)}
        train, window = values(parts["train"]), self.config.data.dtw_window
        if meta.regress:
            rows, lines = regression_baselines(train, targets[parts["train"]], splits, window, meta.target_mean, meta.target_std)
        else:
            rows, lines = one_nn_baselines(train, targets[parts["train"]], splits, classes, window)
        self.report += lines
        return rows

    def notes(self) -> list[str]:
        return self.report + ([] if have_matplotlib() else [NO_MATPLOTLIB_SCATTER if self.meta.regress else NO_MATPLOTLIB])

    # ---------------------------------------------------------------- model
    def build_model(self, meta: SignalMeta) -> nn.Module:
        if meta.regress:
            return SignalRegressor(meta.channels, self.config.model, meta.mean, meta.std, meta.target_mean, meta.target_std)
        return SignalClassifier(
            meta.channels, len(meta.labels), self.config.model, meta.mean, meta.std, self.frontend(), self.augment()
        )

    def default_meta(self) -> SignalMeta:
        return SignalMeta(["a", "b"], 1, torch.zeros(1), torch.ones(1))

    def step(self, model: nn.Module, batch: Batch, state: Any, ctx: StepContext) -> StepResult:
        if self.meta.regress:  # MSE on targets scaled by the training split's std: the loss is 1 for the mean's guess
            mean, std = self.meta.target_mean, self.meta.target_std
            predicted = model(batch.tokens, batch.lengths).float()
            loss = F.mse_loss(predicted / std, batch.targets / std)
            count = len(batch)
            return StepResult(loss, count, {"loss": loss.detach() * count, **regression_sums(predicted, batch.targets, mean, std)})
        logits = model(batch.tokens, batch.lengths)
        loss = F.cross_entropy(logits, batch.targets)
        predicted = logits.argmax(-1)
        count = len(batch)
        sums = {"loss": loss.detach() * count, "accuracy": (predicted == batch.targets).sum()}
        sums.update(count_sums(predicted, batch.targets, len(self.meta.labels)))
        return StepResult(loss, count, sums)

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        if self.meta.regress:
            return {"loss": sums.get("loss", 0.0) / max(count, 1), **regression_scores(sums, count, self.meta.target_std)}
        counts = counts_from_sums(sums, len(self.meta.labels), False)
        self.counts[self.current_split] = counts
        return {"loss": sums.get("loss", 0.0) / max(count, 1), **headline_scores(counts, sums.get("accuracy", 0.0), count, False)}

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        """The baselines by split, and per-class scores of the pass just scored."""
        return baseline_and_class_rows(self.baselines, self.current_split, self.counts, self.meta.labels)

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        log_baselines_and_confusion(self.baselines, self.counts, data, self.meta.labels, log, epoch)
        if self.meta.regress and data.val is not None:
            plot_predictions(model, data.val, log, epoch)

    # ------------------------------------------------------------ inference
    def read_inputs(self, path: Path) -> list[tuple[str, torch.Tensor]]:
        """(name, model input) for each sequence in a file: every case of a .ts, every id of a long CSV
        (when it has --id-col), else the whole file as one sequence (a .csv of steps or a .npy)."""
        if not path.is_file():
            raise SeqtrainError(f"{path} does not exist")
        if path.suffix.lower() == ".ts":
            found = read_ts(path)
            return [(f"{path.name}:{i}", self.to_input(v)) for i, v in enumerate(found.values)]
        data = self.config.data
        if path.suffix.lower() == ".csv" and has_column(path, data.id_col):
            found = read_long_csv(path, data.id_col, data.label_col, data.time_col, data.features, labelled=False)
            return [(f"{path.name}:{n}", self.to_input(v)) for n, v in zip(found.names, found.values)]
        return [(path.name, self.to_input(read_sequence_file(path)))]

    def predict_files(
        self, model: nn.Module, paths: list[str], device: torch.device, top_k: int = 1
    ) -> list[tuple[str, list[Prediction] | float]]:
        """Per sequence in the files: its name and the `top_k` most likely labels with their probabilities
        (a regression model: the predicted number)."""
        named = [item for path in paths for item in self.read_inputs(Path(path).expanduser())]
        for name, x in named:
            if x.dim() == 2 and x.shape[1] != self.meta.channels:
                raise SeqtrainError(f"{name} has {x.shape[1]} channel(s); the model reads {self.meta.channels}")
        out = []
        model.eval()
        for start in range(0, len(named), 64):
            chunk = [self.cut(x, self.meta.max_len) for _, x in named[start : start + 64]]
            lengths = torch.tensor([len(x) for x in chunk])
            x = nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            with torch.no_grad():
                output = model(x.to(device), lengths.to(device)).float().cpu()
            if self.meta.regress:
                out += [(name, value) for (name, _), value in zip(named[start : start + 64], output.tolist())]
                continue
            probs = torch.softmax(output, -1)
            top = probs.topk(min(top_k, probs.shape[-1]), -1)
            for (name, _), values, indices in zip(named[start : start + 64], top.values, top.indices):
                out.append((name, [Prediction(self.meta.labels[i], p) for p, i in zip(values.tolist(), indices.tolist())]))
        return out


NO_MATPLOTLIB_SCATTER = "prediction plots are skipped: matplotlib is not installed (pip install 'seqtrain[plot]')"


def plot_predictions(model: nn.Module, loader: VectorLoader, log, epoch: int) -> None:
    """A TensorBoard scatter of a regression model's validation predictions against the truth, with the diagonal
    where they would be exact: the regression counterpart of the confusion image."""
    if not have_matplotlib():
        if epoch == 1:
            log.text("predictions", NO_MATPLOTLIB_SCATTER, epoch)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pairs = [(batch.targets, model(batch.tokens.to(device), batch.lengths.to(device)).float().cpu()) for batch in loader]
    model.train(was_training)
    truth, predicted = (torch.cat(side).numpy() for side in zip(*pairs))
    figure, axes = plt.subplots(figsize=(5, 5))
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    axes.plot([low, high], [low, high], ":", color="gray")
    axes.scatter(truth, predicted, s=8, alpha=0.6)
    axes.set_xlabel("true")
    axes.set_ylabel("predicted")
    axes.set_title(f"validation, epoch {epoch}")
    figure.tight_layout()
    log.figure("predictions/val", figure, epoch)
    plt.close(figure)


def numeric_targets(sequences: Sequences) -> torch.Tensor:
    """The labels as numbers (float32), or one line naming the first that is not one."""
    values = []
    for label, name in zip(sequences.labels, sequences.names):
        try:
            values.append(float(label))
        except ValueError:
            raise SeqtrainError(
                f"sequence '{name}' has the label '{label[:40]}', not a number: regression needs numeric labels "
                "(a .ts file with '@targetLabel true', or a long CSV's --label-col); drop --objective regress to classify"
            ) from None
    targets = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(targets).all():
        raise SeqtrainError("the labels hold NaN or infinite values: every sequence needs a finite number to regress")
    return targets


def target_statistics(train: torch.Tensor) -> tuple[float, float]:
    """Mean and std of the training targets (std 1 where they are all equal): the model's output scale."""
    std = train.double().std(correction=0).item()
    return train.double().mean().item(), std if std > 0 else 1.0


def numbers_hint(labels: list[str]) -> str:
    """A note when classes look like a measured number: many distinct numeric labels, most of them unique."""
    distinct = set(labels)
    if len(distinct) <= 20 or len(distinct) < len(labels) / 2:
        return ""
    try:
        [float(label) for label in distinct]
    except ValueError:
        return ""
    return f" ({len(distinct):,} distinct numbers: to predict the number, pass --objective regress)"


def has_column(path: Path, name: str) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        return name in [c.strip() for c in handle.readline().split(",")]


@register("signal")
class SignalTask(SequenceClassificationTask):
    description = ("Classify numeric sequences: --data a .ts file/pair (UCR/UEA), a long CSV (--id-col, --label-col) "
                   "or a folder of class folders of .csv/.npy files.")
    # UCR-sized training sets (tens of sequences) are all training data by default, as the archive's results use them
    defaults = {
        "cell": "gru", "hidden": 64, "dropout": 0.2, "epochs": 100, "batch_size": 16, "lr": 3e-3, "stack": 4, "val_split": 0.0,
    }

    def load(self, quiet: bool) -> tuple[Sequences, Sequences | None]:
        d = self.config.data
        path = local_source(d)
        if path is None:
            raise SeqtrainError("signal needs --data: a .ts file (NAME_TRAIN.ts beside NAME_TEST.ts), a long CSV, or a folder")
        return read_signals(path, d.id_col, d.label_col, d.time_col, d.features)

    def validate(self) -> None:
        """What the run monitors, known before any data loads where the settings tell (--objective, or a .ts
        header): `seqtrain tune` reads it to choose its direction."""
        super().validate()
        objective, given = self.config.data.objective, given_sources(self.config.data)
        declared = len(given) == 1 and declares_targets(Path(given[0][1]).expanduser())
        self.use_objective(objective == "regress" or (objective == "auto" and declared))

    def regresses(self, train: Sequences) -> bool:
        objective = self.config.data.objective
        return train.numeric if objective == "auto" else objective == "regress"

    def load_meta(self, raw: dict[str, Any]) -> SignalMeta:
        meta = super().load_meta(raw)
        self.use_objective(meta.regress)
        return meta
