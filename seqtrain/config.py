"""Run settings as dataclasses, with TOML in and out.

Every field carries its help text in `metadata`, so the CLI builds its flags
from these classes and a setting is declared exactly once. Tasks override
defaults through `Task.defaults`; explicit flags override both.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtrain.errors import SeqtrainError


def opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with the help text (and allowed values) its CLI flag shows."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class ModelConfig:
    cell: str = opt("lstm", "Recurrent cell.", ("rnn", "lstm", "gru"))
    embed_dim: int = opt(128, "Embedding size.")
    hidden: int = opt(128, "Hidden units per direction and layer.")
    layers: int = opt(1, "Stacked recurrent layers.")
    bidirectional: bool = opt(False, "Run each layer in both directions.")
    dropout: float = opt(0.0, "Dropout on embeddings, between layers and before the head.")
    pooling: str = opt("last", "How the sequence output becomes one vector.", ("last", "mean", "max"))
    embeddings: str | None = opt(
        None, "Pretrained vectors: a GloVe/word2vec text file (.txt/.gz/.zip) or a name like glove.6B.100d."
    )
    freeze_embeddings: bool = opt(False, "Keep pretrained embeddings fixed during training.")
    packing: str = opt(
        "auto",
        "Variable-length batches: 'on' packs (pack_padded_sequence), 'off' runs padded with masks; "
        "'auto' packs on CUDA only (measured fastest there; slower on CPU).",
        ("auto", "on", "off"),
    )
    recurrent_dropout: float = opt(0.0, "Dropout on the hidden state between time steps (one mask per sequence).")
    layer_norm: bool = opt(False, "Layer-normalised recurrent cells (LNSimpleRNNCell and its LSTM/GRU kin).")
    every_step: bool = opt(
        False,
        "Forecasting: predict the next --horizon values at every time step (sequence to sequence, trained on all "
        "steps, scored on the last) instead of from the last state only.",
    )
    residual: bool = opt(
        False, "Forecasting: learn the change from the last observed value (the naive forecast plus a correction)."
    )
    attention: str = opt("none", "Seq2seq decoder attention over the encoder outputs.", ("none", "dot", "bahdanau"))
    tie_weights: bool = opt(
        False, "Language models: share the embedding matrix with the output layer (needs --embed-dim = --hidden)."
    )


@dataclass
class TrainConfig:
    epochs: int = opt(5, "Passes over the training data.")
    batch_size: int = opt(64, "Examples per batch.")
    lr: float = opt(1e-3, "Learning rate.")
    optimizer: str = opt("adam", "Optimizer.", ("adam", "adamw", "rmsprop", "sgd"))
    weight_decay: float = opt(0.0, "Weight decay (L2; decoupled for adamw).")
    lr_schedule: str = opt(
        "constant", "Learning rate over all training steps: constant, or decayed to 0 (cosine or linear).",
        ("constant", "cosine", "linear"),
    )
    clip: float = opt(1.0, "Clip gradients to this global norm; 0 turns clipping off.")
    patience: int = opt(0, "Stop after this many epochs without a better validation score; 0 never stops early.")
    seed: int = opt(42, "Random seed for data order, initialisation and dropout.")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N.")
    threads: int = opt(
        0, "CPU threads for torch; 0 keeps torch's default. 1 is fastest when other jobs share the cores."
    )
    bptt: int = opt(100, "Language models: tokens per truncated-BPTT chunk; the hidden state carries across chunks.")
    max_steps: int = opt(0, "Stop each epoch after this many batches; 0 runs whole epochs (for quick trials).")
    logdir: str = opt("runs", "Folder that holds the run directories.")
    loss: str = opt("mse", "Regression loss (forecasting).", ("mse", "mae", "huber"))
    teacher_forcing: float = opt(
        1.0, "Seq2seq: chance of feeding the true previous token (per token) instead of the model's own; 1.0 always."
    )
    tf_schedule: str = opt(
        "constant",
        "Seq2seq teacher forcing over the run: constant, or decaying from 1.0 to --teacher-forcing "
        "(linear, or inverse-sigmoid as in scheduled sampling).",
        ("constant", "linear", "inverse-sigmoid"),
    )


@dataclass
class DataConfig:
    data_dir: str | None = opt(None, "Local copy of the data set (offline use); skips the download.")
    cache_dir: str | None = opt(None, "Download and preprocessing cache [default: $SEQTRAIN_CACHE or ~/.cache/seqtrain].")
    mirror: str | None = opt(None, "Base URL or folder to download from instead of the canonical host [$SEQTRAIN_MIRROR].")
    max_vocab: int = opt(20000, "Largest vocabulary, counted on the training split (padding and unknown included).")
    min_freq: int = opt(1, "Drop words seen fewer times than this in training.")
    max_len: int = opt(0, "Keep at most this many tokens per example (the last ones); 0 keeps all.")
    text: str | None = opt(None, "Language models (charlm, wordlm): a UTF-8 text file or a folder of .txt files.")
    val_split: float = opt(0.1, "Fraction of the training data held out for validation.")
    data: str | None = opt(
        None,
        "A local data file: the CSV for csv-series or jena, tab-separated pairs for pairs or translate "
        "(.txt, .gz or .zip).",
    )
    target: str | None = opt(None, "Forecasting: the column to predict.")
    features: str | None = opt(
        None, "Forecasting: comma-separated input columns besides the target, or 'all' [default: the target only]."
    )
    time_col: str | None = opt(None, "Forecasting: the timestamp column; rows are put in time order and it is never a feature.")
    window: int = opt(50, "Forecasting: input time steps per example.")
    horizon: int = opt(1, "Forecasting: how many future steps to predict.")
    stride: int = opt(1, "Forecasting: steps between the starts of consecutive windows.")
    every: int = opt(1, "Forecasting: keep every Nth row (6 turns 10-minute records into hourly ones).")
    test_split: float = opt(0.1, "Forecasting: fraction of the rows (the most recent) held out for testing.")
    num_pairs: int = opt(10000, "Seq2seq: use the first N pairs of the file (or generate N); 0 uses all.")
    level: str = opt("word", "Seq2seq tokens: characters or words.", ("char", "word"))
    reverse: bool = opt(False, "Seq2seq: swap source and target (e.g. French to English).")


@dataclass
class Config:
    task: str = "imdb"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    SECTIONS: typing.ClassVar[tuple[str, ...]] = ("model", "train", "data")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        config = cls(task=raw.get("task", "imdb"))
        for section in cls.SECTIONS:
            config.update({f"{section}.{k}": v for k, v in raw.get(section, {}).items()})
        return config

    def update(self, values: dict[str, Any]) -> None:
        """Set `section.field` keys, refusing names that do not exist and values outside their choices."""
        for key, value in values.items():
            section_name, _, name = key.partition(".")
            section = getattr(self, section_name, None)
            if section_name not in self.SECTIONS or name not in {f.name for f in dataclasses.fields(section)}:
                raise SeqtrainError(f"unknown setting '{key}'")
            choices = field_choices(type(section), name)
            if choices and value not in choices:
                raise SeqtrainError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, not '{value}'")
            setattr(section, name, value)

    def to_toml(self) -> str:
        lines = [f"task = {_toml_value(self.task)}"]
        for section in self.SECTIONS:
            lines.append(f"\n[{section}]")
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                if value is not None:  # TOML has no null: an absent key reads back as None
                    lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, path: Path) -> Config:
        try:
            return cls.from_dict(tomllib.loads(Path(path).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SeqtrainError(f"cannot read config {path}: {exc}") from exc


def field_choices(section_cls: type, name: str) -> tuple[str, ...] | None:
    return next(f.metadata.get("choices") for f in dataclasses.fields(section_cls) if f.name == name)


def section_fields(section: str) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) pairs of one section, for building CLI flags."""
    cls = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}[section]
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
