"""What every text-classification task shares: corpus encoding, stratified splits, metadata, model, loss,
metrics (accuracy, macro-F1, micro-F1 for multi-label, per-class scores, a confusion matrix), the baselines,
and prediction.

A task subclass only says where its labelled texts come from (`load_corpus`);
the rest is here, so `text` (a user's own files), `imdb` and `reuters` train,
score and predict alike. One label per text: softmax over the classes (one
sigmoid logit for two, like Keras' Dense(1)); several: one sigmoid per label,
positive above `threshold`.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.config import ClassifierData, ClassifierModel, Schema, TrainSettings
from seqtrain.data.batching import Batch, SequenceLoader
from seqtrain.data.download import cached_tensors, source_key
from seqtrain.data.labelled import Labelled
from seqtrain.data.text import PAD, TOKENIZER_VERSION, UNK, Vocab, encode_texts, tokenize
from seqtrain.data.vectors import embedding_matrix, resolve_vectors, vector_dim
from seqtrain.errors import SeqtrainError
from seqtrain.models.bow import baselines
from seqtrain.models.classifier import SequenceClassifier
from seqtrain.models.ensemble import ClassifierEnsemble, build_ensemble, split_members
from seqtrain.scores import Counts, count_sums, counts_from_sums, headline_scores
from seqtrain.tasks.base import Meta, StepContext, StepResult, Task, TaskData
from seqtrain.training.budget import step_budget
from seqtrain.training.device import one_thread
from seqtrain.transfer import (
    Coverage, LanguageModelWeights, check_fine_tuning, check_fits, coverage_of, fine_tuning_note,
    init_from_language_model, language_model_weights, log_embedding_layer, parameter_groups, transferred_parameters,
)



@dataclass
class ClassifierMeta(Meta):
    """Vocabulary, label names, the length cut that predictions must repeat, and whether a text may
    carry several labels (then `threshold` decides which)."""

    vocab: list[str]
    labels: list[str]
    max_len: int = 0
    multi_label: bool = False
    threshold: float = 0.5


@dataclass
class Prediction:
    label: str
    probability: float


# ------------------------------------------------------------------ corpus
def encode_labelled(labelled: Labelled, max_tokens: int = 0) -> dict[str, Any]:
    """Tokenize every text once into ids over a full word list (the vocabulary is cut later, per run, from the
    training split), each cut to its first `max_tokens`; labels become ids over the sorted label names."""
    names = sorted({label for labels in labelled.labels for label in labels})
    index = {name: i for i, name in enumerate(names)}
    cut: list[int] = list(labelled.cut)
    words, ids, offsets = encode_texts(labelled.texts, max_tokens=max_tokens, cut=cut)
    label_ids, label_offsets = [], [0]
    for labels in labelled.labels:
        label_ids.extend(index[label] for label in labels)
        label_offsets.append(len(label_ids))
    return {
        "words": words,
        "ids": ids,
        "offsets": offsets,
        "label_names": names,
        "label_ids": torch.tensor(label_ids, dtype=torch.long),
        "label_offsets": torch.tensor(label_offsets, dtype=torch.long),
        "test": torch.tensor(labelled.test if labelled.test is not None else [], dtype=torch.bool),
        "val": torch.tensor(labelled.val if labelled.val is not None else [], dtype=torch.bool),
        "multi_label": bool(labelled.multi_label),
        "notes": labelled.notes + cut_notice(labelled, sorted(set(cut)), max_tokens),
    }


def cut_notice(labelled: Labelled, cut: list[int], max_tokens: int) -> list[str]:
    """One line saying how many texts the ceiling cut, and where the first of them are."""
    if not cut:
        return []
    where = [labelled.origins[i] if i < len(labelled.origins) else f"text {i + 1}" for i in cut[:3]]
    more = f" and {len(cut) - 3:,} more" if len(cut) > 3 else ""
    return [f"{len(cut):,} text(s) longer than --max-text-tokens {max_tokens:,} were cut to their first "
            f"{max_tokens:,} tokens: {', '.join(where)}{more}"]


def cached_corpus(cache: Path, name: str, sources: list[Path], settings: tuple, read, max_tokens: int = 0) -> dict[str, Any]:
    """`encode_labelled(read(), max_tokens)`, cached under `cache/name/` by every source file's name, size and
    mtime and the settings that shape it, so a second run starts in seconds and any change re-encodes."""
    key = source_key(sources, TOKENIZER_VERSION, max_tokens, *settings)
    return cached_tensors(cache / name / f"encoded-{key}.pt", lambda: encode_labelled(read(), max_tokens))


def text_bytes(max_tokens: int) -> int:
    """The most bytes one text is read to: 50 a token (IMDB and Reuters average under 6)."""
    return max_tokens * 50


def rank_vocab(
    words: list[str], counts: torch.Tensor, max_size: int, min_freq: int, specials: tuple[str, ...] = (PAD, UNK)
) -> list[str]:
    """Specials, then words by training frequency (ties alphabetical), cut to size (specials included) and frequency."""
    present = torch.nonzero(counts >= max(min_freq, 1)).squeeze(1).tolist()
    ranked = sorted(present, key=lambda i: (-int(counts[i]), words[i]))
    if max_size:
        ranked = ranked[: max(max_size - len(specials), 0)]
    return list(specials) + [words[i] for i in ranked]


def stratified_split(keys: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(held, kept) positions: `fraction` of each key's examples, at random (seeded), held out.

    Examples are shuffled, stably sorted by key, and every 1/fraction-th one
    taken, so each class gives its share to within one example and the total
    is round(n * fraction).
    """
    n = len(keys)
    if not fraction or not n:
        return torch.empty(0, dtype=torch.long), torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=generator)
    order = shuffled[torch.sort(keys[shuffled], stable=True).indices]
    start = 0.5
    position = torch.arange(n, dtype=torch.float64)
    take = torch.floor((position + 1) * fraction + start) > torch.floor(position * fraction + start)
    return order[take].sort().values, order[~take].sort().values


def stratified_folds(keys: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """Each example's fold (0 to folds-1): shuffled (seeded), stably sorted by key and dealt round, so every
    class spreads over the folds to within one example."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(keys), generator=generator)
    order = shuffled[torch.sort(keys[shuffled], stable=True).indices]
    fold = torch.empty(len(keys), dtype=torch.long)
    fold[order] = torch.arange(len(keys)) % folds
    return fold


class SplitLoader(SequenceLoader):
    """A split's loader that tells the task which split it is reading, so each pass's counts are kept by
    split (the confusion matrix of validation, the per-class scores of test)."""

    def __init__(
        self, sequences, targets, batch_size: int, name: str, task: TextClassificationTask, seed: int, max_tokens: int = 0
    ):
        super().__init__(sequences, targets, batch_size, name == "train", seed, max_tokens)
        self.name, self.task = name, task

    def __iter__(self):
        self.task.current_split = self.name
        yield from super().__iter__()


# -------------------------------------------------------------------- task
class TextClassificationTask(Task):
    """Subclasses implement `load_corpus` (an `encode_labelled` dict, usually through `cached_corpus`)."""

    schema: ClassVar[Schema] = Schema(TrainSettings, ClassifierModel, ClassifierData)
    meta_type = ClassifierMeta
    monitor = "accuracy"
    monitor_mode = "max"
    metric_names: tuple[str, ...] = ("loss", "accuracy", "macro_f1")
    headline = "accuracy"
    ability = "predict"
    breakdown_rows = ("class ",)

    def __init__(self, config):
        super().__init__(config)
        self.pretrained: torch.Tensor | None = None  # embedding rows for a fresh model with --embeddings
        self.coverage: Coverage | None = None
        self.language_model: LanguageModelWeights | None = None  # --init-from, for a fresh model
        self.transfer_notes: list[str] = []
        self.current_split = "train"
        self.counts: dict[str, Counts] = {}  # by split: the counts of its latest complete pass
        self.baselines: dict[str, dict[str, dict[str, float]]] = {}
        self.label_report: list[str] = []
        self.data_notes: list[str] = []

    def validate(self) -> None:
        # The vectors decide the embedding size; resolved here so config.toml records the size the model has.
        check_fine_tuning(self.config.model, self.config.train.epochs)
        if self.config.model.embeddings:
            self.config.model.embed_dim = vector_dim(self.config.model.embeddings)

    # ----------------------------------------------------------------- data
    def load_corpus(self, quiet: bool) -> dict[str, Any]:
        raise NotImplementedError

    def test_fraction(self) -> float:
        """Share of the texts held out for testing when the data gives no test split."""
        return getattr(self.config.data, "test_split", 0.0)

    def threshold(self) -> float:
        return getattr(self.config.data, "threshold", 0.5)

    def prepare(self, meta: ClassifierMeta | None = None, quiet: bool = False) -> TaskData:
        config = self.config
        blob = self.load_corpus(quiet)
        ids, offsets, names = blob["ids"], blob["offsets"], blob["label_names"]
        self.data_notes = list(blob.get("notes", []))
        n, classes, multi_label = len(offsets) - 1, len(names), blob["multi_label"]
        if meta is not None and list(meta.labels) != list(names):
            raise SeqtrainError(
                f"the data's labels ({', '.join(names[:8])}{' ...' if classes > 8 else ''}) are not the model's "
                f"({', '.join(meta.labels[:8])}{' ...' if len(meta.labels) > 8 else ''}): point --data at the data it was trained on"
            )
        text_of_label = torch.repeat_interleave(torch.arange(n), blob["label_offsets"].diff())
        if multi_label:
            targets = torch.zeros(n, classes, dtype=torch.long)
            targets[text_of_label, blob["label_ids"]] = 1
        else:
            targets = blob["label_ids"][blob["label_offsets"][:-1]]
        first = blob["label_ids"][blob["label_offsets"][:-1]]  # what the splits stratify by

        seed = config.train.seed
        folds = getattr(config.data, "folds", 0)
        given_val = blob.get("val", torch.empty(0, dtype=torch.bool))
        if folds > 1:
            if len(blob["test"]):
                raise SeqtrainError("--folds makes its own test folds: drop --test-data (or the data's own test split)")
            if len(first) < folds:
                raise SeqtrainError(f"--folds {folds} needs at least {folds} texts; the data has {len(first)}")
            fold = stratified_folds(first, folds, seed)
            test, rest = torch.nonzero(fold == config.data.fold).squeeze(1), torch.nonzero(fold != config.data.fold).squeeze(1)
        elif len(blob["test"]):
            test, rest = torch.nonzero(blob["test"]).squeeze(1), torch.nonzero(~blob["test"]).squeeze(1)
        else:
            test, rest = stratified_split(first, self.test_fraction(), seed)
        if len(given_val):
            val, train = rest[given_val[rest]], rest[~given_val[rest]]
        else:
            held, train = stratified_split(first[rest], config.data.val_split, seed + 1)
            val, train = rest[held], rest[train]
        if not len(train):
            raise SeqtrainError("no training texts are left after the validation and test splits; lower --val-split")

        text_of_token = torch.repeat_interleave(torch.arange(n), offsets.diff())
        if meta is None:
            self.pretrain_vectors(quiet)
            in_train = torch.zeros(n, dtype=torch.bool)
            in_train[train] = True
            counts = torch.bincount(ids[in_train[text_of_token]].long(), minlength=len(blob["words"]))
            itos = rank_vocab(blob["words"], counts, config.data.max_vocab, config.data.min_freq)
            frequency = dict(zip(blob["words"], counts.tolist()))
            meta = self.start_meta(
                ClassifierMeta(itos, list(names), config.data.max_len, multi_label, self.threshold()), frequency
            )
        self.meta = meta
        self.metric_names = ("loss", "accuracy", "macro_f1") + (("micro_f1",) if multi_label else ())
        stoi = {w: i for i, w in enumerate(meta.vocab)}
        remap = torch.tensor([stoi.get(w, 1) for w in blob["words"]], dtype=torch.long)

        def words(i: int) -> torch.Tensor:
            return ids[offsets[i] : offsets[i + 1]]

        def sequences(indices: torch.Tensor) -> list[torch.Tensor]:
            out = []
            for i in indices.tolist():
                seq = remap[words(i).long()]
                seq = seq[-meta.max_len :] if meta.max_len else seq
                out.append(seq if len(seq) else torch.tensor([1]))
            return out

        def loader(indices: torch.Tensor, name: str) -> SplitLoader | None:
            if name != "train" and not len(indices):
                return None
            return SplitLoader(
                sequences(indices), targets[indices], config.train.batch_size, name, self, seed, config.data.batch_tokens
            )

        parts = {"train": train, "val": val, "test": test}
        self.label_report = label_report(names, targets, parts, multi_label)
        budget = step_budget(config, len(train), has_val=len(val) > 0)
        if budget:
            self.label_report.append(budget)
        with one_thread():  # the row is the same on every machine, and whatever ran before it in this process
            self.baselines = baselines(
                {name: ([words(i) for i in idx.tolist()], targets[idx]) for name, idx in parts.items()},
                len(blob["words"]), classes, multi_label, meta.threshold,
            )
        return TaskData(loader(train, "train"), loader(val, "val"), loader(test, "test"), meta)

    def pretrain_vectors(self, quiet: bool) -> None:
        """--pretrain-vectors (a preset's own text) or --pretrain-text (the user's): word2vec vectors become
        --embeddings (a fresh run only)."""
        data = self.config.data
        wanted = getattr(data, "pretrain_vectors", False) or getattr(data, "pretrain_text", None)
        if not wanted or self.config.model.embeddings:
            return
        found = self.in_domain_vectors(quiet)
        if found is None:
            self.data_notes.append("--pretrain-vectors: this data has no unlabelled text kept apart from its test split; skipped")
            return
        self.config.model.embeddings, note = found
        self.data_notes.append(note)

    def in_domain_vectors(self, quiet: bool) -> tuple[str, str] | None:
        """(vectors, a line about them) trained on text the run may read without labels; None where there is none."""
        return None

    def start_meta(self, meta: ClassifierMeta, counts: dict[str, int] | None = None) -> ClassifierMeta:
        """Keep a fresh run's meta, and look up what --embeddings and --init-from bring (`counts`: training frequencies)."""
        self.meta = meta
        if self.config.model.embeddings:
            vectors = resolve_vectors(self.config.model.embeddings, self.config.data.cache_dir, self.config.data.mirror)
            self.pretrained, found = embedding_matrix(vectors, Vocab(meta.vocab), self.config.train.seed)
            self.coverage = coverage_of(meta.vocab, found, counts)
        if self.config.model.init_from:
            self.language_model = language_model_weights(self.config.model.init_from)
            check_fits(self.language_model, self.config.model)
        return meta

    def notes(self) -> list[str]:
        notes = self.data_notes + self.label_report
        if self.coverage is not None:
            notes += self.coverage.lines()
        notes += self.transfer_notes
        note = fine_tuning_note(self.config.model)
        if note:
            notes.append(note)
        if not have_matplotlib():
            notes.append(NO_MATPLOTLIB)
        return notes

    # ---------------------------------------------------------------- model
    def build_model(self, meta: ClassifierMeta) -> nn.Module:
        sigmoid = meta.multi_label or len(meta.labels) == 2
        return build_ensemble(lambda: self.build_member(meta), self.config.model.ensemble,
                              lambda members: ClassifierEnsemble(members, sigmoid))

    def build_member(self, meta: ClassifierMeta) -> SequenceClassifier:
        model = SequenceClassifier(len(meta.vocab), len(meta.labels), self.config.model, meta.multi_label)
        if self.pretrained is not None:  # only for a fresh model: a checkpoint's weights already hold the vectors
            model.embedding.weight.data.copy_(self.pretrained)
        if self.language_model is not None:  # likewise
            self.transfer_notes.append(init_from_language_model(model, meta.vocab, self.language_model))
        model.embedding.weight.requires_grad_(not self.config.model.freeze_embeddings)
        return model

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer | None:
        """With --lr-pretrained-scale or --unfreeze-epochs: the transferred weights in a group of their own (frozen
        ones too, which take no step while they get no gradient); else the trainer's optimizer."""
        settings = self.config.model
        if settings.lr_pretrained_scale == 1.0 and not settings.unfreeze_epochs:
            return None
        from seqtrain.training.trainer import make_optimizer

        return make_optimizer(self.config.train, parameter_groups(model, settings, self.config.train.lr))

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Gradual unfreezing: the transferred weights take no gradient in the first --unfreeze-epochs epochs."""
        settings = self.config.model
        if not settings.unfreeze_epochs:
            return
        for param in transferred_parameters(model, settings):
            frozen = epoch <= settings.unfreeze_epochs or (param is model.embedding.weight and settings.freeze_embeddings)
            param.requires_grad_(not frozen)

    def default_meta(self) -> ClassifierMeta:
        size = self.config.data.max_vocab or 20000
        return ClassifierMeta(["<pad>", "<unk>"] + [f"w{i}" for i in range(size - 2)], ["neg", "pos"])

    def step(self, model: nn.Module, batch: Batch, state: Any, ctx: StepContext) -> StepResult:
        meta = self.meta

        def loss_of(logits: torch.Tensor) -> torch.Tensor:
            if meta.multi_label or logits.dim() == 1:
                return F.binary_cross_entropy_with_logits(logits, batch.targets.float())
            return F.cross_entropy(logits, batch.targets)

        loss, logits = split_members(model, model(batch.tokens, batch.lengths), loss_of)
        if meta.multi_label:
            predicted = (torch.sigmoid(logits) >= meta.threshold).long()
            correct = (predicted == batch.targets).all(-1).sum()
        else:
            predicted = (logits > 0).long() if logits.dim() == 1 else logits.argmax(-1)
            correct = (predicted == batch.targets).sum()
        count = len(batch)
        sums = {"loss": loss.detach() * count, "accuracy": correct}
        sums.update(count_sums(predicted, batch.targets, len(meta.labels)))
        return StepResult(loss, count, sums)

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        counts = counts_from_sums(sums, len(self.meta.labels), self.meta.multi_label)
        self.counts[self.current_split] = counts  # the last call of a pass sees all of it
        return {"loss": sums.get("loss", 0.0) / max(count, 1),
                **headline_scores(counts, sums.get("accuracy", 0.0), count, self.meta.multi_label)}

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        """The baselines by split, and per-class precision, recall, F1 and support of the pass just scored
        (the test pass at the end of `fit`, the chosen split in `evaluate`)."""
        return baseline_and_class_rows(self.baselines, self.current_split, self.counts, self.meta.labels)

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        log_baselines_and_confusion(self.baselines, self.counts, data, self.meta.labels, log, epoch)
        if self.config.model.log_embeddings and epoch >= self.config.train.epochs:
            log_embedding_layer(log, model.embedding.weight, self.meta.vocab, epoch)

    # ------------------------------------------------------------ inference
    def vocab(self) -> Vocab:
        """The run's Vocab, built once per meta (Task.per_meta)."""
        return self.per_meta("vocab", lambda: Vocab(self.meta.vocab))

    def predict(
        self, model: nn.Module, texts: list[str], device: torch.device, top_k: int = 1, threshold: float | None = None
    ) -> list[list[Prediction]]:
        """Per text: the `top_k` most likely labels with their probabilities (one label per text), or every
        label at or above the threshold (multi-label; the run's own threshold unless given)."""
        if top_k < 1:
            raise SeqtrainError(f"--top-k must be at least 1, not {top_k}")
        if threshold is not None and not 0 <= threshold <= 1:
            raise SeqtrainError(f"--threshold must be between 0 and 1, not {threshold}")
        meta = self.meta
        vocab = self.vocab()
        cut = meta.max_len
        ceiling = self.config.data.max_text_tokens  # as in training: a huge text costs no more than a long one
        ids = [torch.tensor(vocab.encode(tokenize(t, ceiling))[-cut if cut else 0 :] or [vocab.unk_index]) for t in texts]
        lengths = torch.tensor([len(x) for x in ids])
        tokens = nn.utils.rnn.pad_sequence(ids, batch_first=True)
        model.eval()
        with torch.no_grad():
            logits = model(tokens.to(device), lengths.to(device)).float().cpu()
        if meta.multi_label:
            cut_at = meta.threshold if threshold is None else threshold
            probs = torch.sigmoid(logits)
            return [
                [Prediction(meta.labels[i], p[i].item()) for i in p.argsort(descending=True).tolist() if p[i] >= cut_at]
                for p in probs
            ]
        if logits.dim() == 1:
            positive = torch.sigmoid(logits)
            probs = torch.stack([1 - positive, positive], -1)
        else:
            probs = torch.softmax(logits, -1)
        top = probs.topk(min(top_k, probs.shape[-1]), -1)
        return [
            [Prediction(meta.labels[i], p) for p, i in zip(values.tolist(), indices.tolist())]
            for values, indices in zip(top.values, top.indices)
        ]


def label_report(
    names: list[str], targets: torch.Tensor, parts: dict[str, torch.Tensor], multi_label: bool
) -> list[str]:
    """Start-of-run lines: each label with its number of texts, the split sizes, and the class imbalance."""
    per_label = targets.sum(0) if multi_label else torch.bincount(targets, minlength=len(names))
    ranked = sorted(range(len(names)), key=lambda i: (-int(per_label[i]), names[i]))
    shown = ", ".join(f"{names[i]} {int(per_label[i]):,}" for i in ranked[:40])
    more = f", ... {len(names) - 40} more" if len(names) > 40 else ""
    kind = "several per text" if multi_label else "one per text"
    sizes = ", ".join(f"{name} {len(idx):,}" for name, idx in parts.items() if len(idx))
    lines = [f"labels ({len(names)}, {kind}): {shown}{more}", f"texts: {sizes}"]
    big, small = ranked[0], ranked[-1]
    ratio = int(per_label[big]) / max(int(per_label[small]), 1)
    share = int(per_label[big]) / max(len(targets), 1)
    line = (f"class imbalance: largest '{names[big]}' {share:.1%} of texts, smallest '{names[small]}' "
            f"{int(per_label[small]):,} texts ({ratio:.0f}:1)")
    if ratio >= 3:
        line += "; macro-F1 weighs every class alike and is the fairer score here"
    lines.append(line)
    return lines


NO_MATPLOTLIB = "confusion-matrix images are skipped: matplotlib is not installed (pip install 'seqtrain[plot]')"


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot_confusion(counts: Counts, labels: list[str], log, epoch: int) -> None:
    """A TensorBoard image of the validation confusion matrix (rows: truth, normalised per row); for
    multi-label runs, per label: true positives, false positives and false negatives."""
    if not have_matplotlib():
        if epoch == 1:
            log.text("confusion", NO_MATPLOTLIB, epoch)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = min(4 + 0.25 * len(labels), 16)
    figure, axes = plt.subplots(figsize=(size, size * 0.9))
    if counts.confusion is not None:
        matrix = counts.confusion.double()
        shown = matrix / matrix.sum(1, keepdim=True).clamp(min=1)
        axes.imshow(shown.numpy(), cmap="Blues", vmin=0, vmax=1)
        axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        axes.set_ylabel("true")
        axes.set_xlabel("predicted")
        if len(labels) <= 12:
            for row in range(len(labels)):
                for col in range(len(labels)):
                    colour = "white" if shown[row, col] > 0.5 else "black"
                    axes.text(col, row, f"{int(matrix[row, col])}", ha="center", va="center", fontsize=8, color=colour)
    else:
        table = torch.stack([counts.tp, counts.fp, counts.fn], 1).double()
        axes.imshow(table.numpy(), cmap="Blues", aspect="auto")
        axes.set_xticks(range(3), ["true pos", "false pos", "false neg"])
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_title(f"validation, epoch {epoch}")
    figure.tight_layout()
    log.figure("confusion/val", figure, epoch)
    plt.close(figure)


def baseline_and_class_rows(
    baselines: dict[str, dict[str, dict[str, float]]], split: str, counts: dict[str, Counts], labels: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """A classifier's extra report rows: its baselines by split, and per-class scores of the pass just scored
    (`split`, with its counts) when that pass was val or test."""
    rows = {name: dict(named) for name, named in baselines.items()}
    scored = counts.get(split)
    if split in ("val", "test") and scored is not None:
        per_class = scored.per_class()
        for i, label in enumerate(labels):
            rows.setdefault(split, {})[f"class {label}"] = {k: v[i].item() for k, v in per_class.items()}  # support stays an int
    return rows


def log_baselines_and_confusion(
    baselines: dict[str, dict[str, dict[str, float]]], counts: dict[str, Counts], data: TaskData, labels: list[str],
    log, epoch: int,
) -> None:
    """Each epoch's baseline scalars and the validation confusion image, for every classifier family."""
    for split, named in baselines.items():
        for name, values in named.items():
            log.scalars(f"baseline/{split}/{name}", values, epoch)
    if data.val is not None and counts.get("val") is not None:
        plot_confusion(counts["val"], labels, log, epoch)
