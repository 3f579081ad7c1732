"""Run settings as dataclasses, with TOML in and out.

A run's settings have three sections, `train`, `model` and `data`. Each
section has a shared base (what every task family really uses) that a family
extends with its own typed fields, so a task's schema holds exactly the
settings it reads: an imdb run's `config.toml` has no `window`, and `--window`
is refused for it. Every field carries its help text in `metadata`, so the
CLI builds its flags from these classes and a setting is declared once.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtrain.errors import SeqtrainError

SECTIONS = ("train", "model", "data")


def opt(
    default: Any, help: str, choices: tuple[str, ...] | None = None, at_least: float | None = None,
    below: float | None = None,
) -> Any:
    """A dataclass field with the help text, allowed values and range its CLI flag shows and checks.

    `at_least` is an inclusive lower bound, `below` an exclusive upper bound;
    `validate` refuses values outside them before any data loads.
    """
    metadata = {"help": help, "choices": choices, "at_least": at_least, "below": below}
    return field(default=default, metadata=metadata)


# --------------------------------------------------------------------- train
@dataclass
class TrainSettings:
    """The loop's settings: every task has these."""

    epochs: int = opt(5, "Passes over the training data.", at_least=1)
    batch_size: int = opt(64, "Examples per batch.", at_least=1)
    lr: float = opt(1e-3, "Learning rate.")
    optimizer: str = opt("adam", "Optimizer.", ("adam", "adamw", "rmsprop", "sgd"))
    weight_decay: float = opt(0.0, "Weight decay (L2; decoupled for adamw).", at_least=0)
    lr_schedule: str = opt(
        "constant", "Learning rate over all training steps: constant, or decayed to 0 (cosine or linear).",
        ("constant", "cosine", "linear"),
    )
    clip: float = opt(1.0, "Clip gradients to this global norm; 0 turns clipping off.", at_least=0)
    patience: int = opt(0, "Stop after this many epochs without a better validation score; 0 never stops early.", at_least=0)
    ema: float = opt(
        0.0, "Validate, keep (best.pt) and test an exponential moving average of the weights, with this decay per "
        "step (e.g. 0.99; warmed up as (1+n)/(10+n)); training still steps the weights themselves. 0 turns it off.",
        at_least=0, below=1,
    )
    seed: int = opt(42, "Random seed for data order, initialisation and dropout.")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N.")
    threads: int = opt(
        0,
        "CPU threads for torch; 0 chooses from the model's recurrent step: 1 where a second thread gains nothing "
        "and loses 10x or more when other jobs share the cores (every default model), all cores for large steps.",
        at_least=0,
    )
    max_steps: int = opt(
        0, "Quick trial: at most this many batches per training, validation and test pass; 0 runs whole passes.",
        at_least=0,
    )
    logdir: str = opt("runs", "Folder that holds the run directories.")
    save_every: int = opt(
        0, "Also write last.pt every N training steps, with the position in the epoch, so a killed run resumes "
        "exactly where it was; 0 saves at the end of each epoch only.", at_least=0,
    )
    max_bad_steps: int = opt(
        3, "Stop after this many training steps in a row with a non-finite loss or gradient (each one is skipped).",
        at_least=1,
    )
    precision: str = opt(
        "32", "Arithmetic of the forward pass: 32 (float32), bf16 (bfloat16 products; on CPU only where it has native "
        "bfloat16, else float32) or 16 (float16 autocast with a gradient scaler).",
        ("32", "bf16", "16"),
    )
    accumulate: int = opt(
        1, "Split each batch into N micro-batches whose gradients add up to the whole batch's (less memory, "
        "same effective batch and clipping).", at_least=1,
    )
    deterministic: bool = opt(False, "Deterministic kernels only (torch and cuDNN): reproducible on GPU, often slower.")


@dataclass
class LanguageModelTrain(TrainSettings):
    bptt: int = opt(100, "Tokens per truncated-BPTT chunk; the hidden state carries across chunks.", at_least=1)


@dataclass
class ForecastTrain(TrainSettings):
    loss: str = opt("mse", "Regression loss.", ("mse", "mae", "huber"))


@dataclass
class Seq2SeqTrain(TrainSettings):
    teacher_forcing: float = opt(
        1.0, "Chance of feeding the true previous token (per token) instead of the model's own; 1.0 always."
    )
    tf_schedule: str = opt(
        "constant",
        "Teacher forcing over the run: constant, or decaying from 1.0 to --teacher-forcing "
        "(linear, or inverse-sigmoid as in scheduled sampling).",
        ("constant", "linear", "inverse-sigmoid"),
    )


# --------------------------------------------------------------------- model
@dataclass
class ModelSettings:
    """The recurrent-layer knobs every model family honours."""

    cell: str = opt("lstm", "Recurrent cell.", ("rnn", "lstm", "gru"))
    hidden: int = opt(128, "Hidden units per direction and layer.", at_least=1)
    layers: int = opt(1, "Stacked recurrent layers.", at_least=1)
    dropout: float = opt(0.0, "Dropout on inputs, between layers and before the output layer.", at_least=0, below=1)
    recurrent_dropout: float = opt(
        0.0, "Dropout on the hidden state between time steps (one mask per sequence).", at_least=0, below=1
    )
    layer_norm: bool = opt(False, "Layer-normalised recurrent cells (LNSimpleRNNCell and its LSTM/GRU kin).")
    kernel: str = opt(
        "auto",
        "Recurrent kernel: 'torch' (nn's), 'fused' (a compiled CPU time loop and hand-written backward, same "
        "parameters), or 'auto': fused where it measured faster on CPU (training; inference but for float32 LSTMs).",
        ("auto", "torch", "fused"),
    )
    init: str = opt(
        "keras",
        "Initialisation: 'keras' (Glorot-uniform input weights, orthogonal recurrent weights, zero biases but an LSTM "
        "forget-gate bias of 1; embeddings uniform +-0.05, Glorot heads) or 'torch' (PyTorch's uniform +-1/sqrt(hidden)).",
        ("keras", "torch"),
    )


@dataclass
class EncoderModel(ModelSettings):
    """Models that embed padded token sequences and encode them (classifiers, seq2seq)."""

    embed_dim: int = opt(128, "Embedding size.", at_least=1)
    bidirectional: bool = opt(False, "Run each layer in both directions.")
    packing: str = opt(
        "off",
        "Variable-length batches: 'off' runs them padded with masks (measured faster on CPU and on an H100), "
        "'on' packs them (pack_padded_sequence); both give the same outputs.",
        ("off", "on"),
    )


@dataclass
class EnsembleField:
    ensemble: int = opt(
        1, "Train K copies of the model side by side (each its own random start and loss) and use the mean of their "
        "probabilities, at K times the cost (it lifted Reuters, not the short-sentence sets: docs/tuning.md).", at_least=1,
    )


@dataclass
class ClassifierModel(EncoderModel, EnsembleField):
    pooling: str = opt("last", "How the sequence output becomes one vector.", ("last", "mean", "max"))
    embeddings: str | None = opt(
        None, "Pretrained vectors: a GloVe/word2vec text (.txt/.gz/.zip) or binary file, a word2vec or classifier "
        "run, or a name like glove.6B.100d."
    )
    freeze_embeddings: bool = opt(False, "Keep pretrained embeddings fixed during training.")
    init_from: str | None = opt(
        None, "A word-level language-model run whose embedding rows (matched word by word) and recurrent weights "
        "start this model (pre-training, then fine-tuning).",
    )
    unfreeze_epochs: int = opt(
        0, "With --init-from or --embeddings: keep the transferred weights (embedding; the LM's recurrent layers) fixed "
        "for the first N epochs, training the fresh ones only, then release them (gradual unfreezing).", at_least=0,
    )
    lr_pretrained_scale: float = opt(
        1.0, "With --init-from or --embeddings: the transferred weights' learning rate as a multiple of --lr "
        "(discriminative fine-tuning, e.g. 0.3); 1 trains every weight alike.", at_least=0,
    )
    log_embeddings: bool = opt(False, "Show the trained embedding layer in TensorBoard's projector (most frequent 10,000 words).")


@dataclass
class TaggerModel(EncoderModel, EnsembleField):
    """Sequence tagging: word and character features, the recurrent encoder, a softmax or CRF per token."""

    embeddings: str | None = opt(
        None, "Pretrained word vectors: a GloVe/word2vec text (.txt/.gz/.zip) or binary file, a word2vec or classifier "
        "run, or a name like glove.6B.100d (looked up case-insensitively)."
    )
    freeze_embeddings: bool = opt(False, "Keep pretrained embeddings fixed during training.")
    char_encoder: str = opt(
        "cnn", "Character-level word features: a character CNN with max pooling (Ma & Hovy 2016), a character "
        "BiLSTM (Lample et al. 2016), or none.", ("cnn", "lstm", "none"),
    )
    char_dim: int = opt(30, "Character embedding size.", at_least=1)
    char_hidden: int = opt(50, "Character features per word: CNN filters, or LSTM units per direction.", at_least=1)
    crf: bool = opt(True, "A linear-chain CRF over the tags (Viterbi decoding, the scheme's invalid moves forbidden); off: a softmax per token.")
    unk_replace: float = opt(
        0.5, "Training: a word seen once in training is read as <unk> with this chance, so <unk> learns (Lample et al. 2016).",
        at_least=0, below=1,
    )


@dataclass
class LanguageModelModel(ModelSettings):
    embed_dim: int = opt(128, "Embedding size.", at_least=1)
    tie_weights: bool = opt(False, "Share the embedding matrix with the output layer (needs --embed-dim = --hidden).")
    output: str = opt(
        "full",
        "Output layer: a full softmax over the vocabulary, or an adaptive softmax (frequent words in a head, rarer "
        "ones in smaller clusters; exact log-probabilities, much faster for large vocabularies).",
        ("full", "adaptive"),
    )
    cutoffs: str = opt(
        "auto",
        "Adaptive softmax cluster boundaries in the frequency-sorted vocabulary, e.g. 2000,10000; 'auto' uses "
        "2000,10000 where the vocabulary is larger (a vocabulary of 2,001 tokens or fewer gets a full softmax).",
    )


@dataclass
class ForecastModel(ModelSettings):
    every_step: bool = opt(
        False,
        "Predict the next --horizon values at every time step (sequence to sequence, trained on all steps, "
        "scored on the last) instead of from the last state only.",
    )
    residual: bool = opt(False, "Learn the change from the last observed value (the naive forecast plus a correction).")
    highway: bool = opt(
        False,
        "A linear autoregression on the target's window added to the forecast (LSTNet's highway), started at the "
        "least-squares fit: the model starts as the linear forecast and learns what it misses.",
    )


@dataclass
class Seq2SeqModel(EncoderModel):
    attention: str = opt("none", "Decoder attention over the encoder outputs.", ("none", "dot", "bahdanau"))


# ---------------------------------------------------------------------- data
@dataclass
class DataSettings:
    """Tasks that generate their data (sine, dates) use this empty base."""


@dataclass
class SourceData(DataSettings):
    """Where a task's data comes from, resolved the same way for every task (seqtrain/data/sources.py)."""

    data: str | None = opt(None, "A local copy of the data: a file, a folder or an archive (skips the download).")
    data_dir: str | None = opt(None, "The same as --data (kept for existing commands); give one of the two.")
    cache_dir: str | None = opt(None, "Download and preprocessing cache (default: $SEQTRAIN_CACHE or ~/.cache/seqtrain).")
    mirror: str | None = opt(None, "Base URL or folder to download from instead of the canonical host ($SEQTRAIN_MIRROR).")


@dataclass
class VocabFields:
    max_vocab: int = opt(20000, "Largest vocabulary, counted on the training split (specials included); 0: no limit.", at_least=0)
    min_freq: int = opt(1, "Drop words seen fewer times than this in training.", at_least=1)


def min_steps_field() -> Any:
    return opt(
        1000, "Training budget in optimizer steps: a small training split gets more epochs (up to 100) to reach it, "
        "and a --patience of about 150 steps, the best validation epoch kept; 0 (or typing --epochs): exactly --epochs.",
        at_least=0,
    )


@dataclass
class ClassifierData(SourceData, VocabFields):
    max_len: int = opt(0, "Keep at most this many tokens per example (the last ones); 0 keeps all.", at_least=0)
    val_split: float = opt(0.1, "Fraction of the training data held out for validation.", at_least=0, below=1)
    max_text_tokens: int = opt(
        10_000, "Hard ceiling per text: a longer one keeps its first N tokens (a notice says how many were cut and "
        "where); a text is read up to 50 bytes a token. The default keeps every IMDB and Reuters text whole.",
        at_least=1,
    )
    batch_tokens: int = opt(
        131_072, "Most padded tokens per batch (examples x the longest one's length): batches of long texts get "
        "fewer examples, a text longer than this one of its own, so memory does not grow with the data; 0: "
        "--batch-size alone decides.", at_least=0,
    )
    min_steps: int = min_steps_field()


@dataclass
class PretrainFields:
    pretrain_vectors: bool = opt(
        False, "Start the embedding from word2vec vectors trained on the data's own unlabelled text (IMDB: the training "
        "and unlabelled reviews; Reuters R8/R52: the records outside the test split), once; later runs read them "
        "from the cache. --embeddings replaces them.",
    )


@dataclass
class ImdbData(ClassifierData, PretrainFields):
    """IMDB: the text classifier's data settings and in-domain word vectors."""


@dataclass
class TextData(ClassifierData):
    """A user's own labelled texts (seqtrain/data/labelled.py)."""

    text_col: str = opt("text", "CSV/TSV/JSON Lines: the column holding the text.")
    label_col: str = opt("label", "CSV/TSV/JSON Lines: the column holding the label(s).")
    label_sep: str | None = opt(None, "Separator of several labels in one label cell (e.g. '|'); makes the task multi-label.")
    encoding: str = opt("utf-8", "Text encoding of the files (e.g. cp1252, latin-1); undecodable bytes are an error.")
    test_split: float = opt(
        0.1, "Fraction held out for testing when the data gives no test split (stratified, seeded).", at_least=0, below=1
    )
    threshold: float = opt(0.5, "Multi-label: a label is predicted when its probability is at least this.", at_least=0, below=1)
    pretrain_text: str | None = opt(
        None, "Unlabelled text (a UTF-8 file, one document a line, or a folder of .txt files) for word2vec vectors "
        "that start the embedding: trained once, cached, read by later runs (SST-2 with 50,000 movie reviews: mean of "
        "8 seeds 82.22% against 80.32%). --embeddings replaces them.",
    )
    format: str = opt(
        "auto", "File layout: auto (by folder or suffix; .label files are lines), lines (one `label text` a line, as "
        "SST-2 and TREC), files (a folder of one file per class, one text a line, as Pang & Lee's).",
        ("auto", "lines", "files"),
    )
    coarse_sep: str | None = opt(None, "Keep each label's part before this separator (TREC's 'NUM:dist' with ':' gives NUM).")
    val_data: str | None = opt(None, "A validation file or folder in the same format as --data (replaces --val-split).")
    test_data: str | None = opt(None, "A test file or folder in the same format as --data (replaces --test-split).")
    folds: int = opt(
        0, "Stratified K-fold cross-validation: K runs, each testing on one fold, then the mean and standard "
        "deviation; 0 or 1: one run.", at_least=0,
    )
    fold: int = opt(0, "With --folds K: which fold (0 to K-1) this run tests on; `--folds` runs them all.", at_least=0)


@dataclass
class TaggerData(SourceData, VocabFields):
    """Token-labelled sentences (seqtrain/data/conll.py)."""

    val_split: float = opt(0.1, "Fraction of the training sentences held out for validation when no dev file is given.", at_least=0, below=1)
    train_scheme: str = opt(
        "bioes", "Span tags are trained in this scheme (read in any, written back in the input's).", ("bioes", "iob2")
    )


@dataclass
class TagFileData(TaggerData):
    """A user's own tagged files."""

    token_col: str = opt("1", "CoNLL columns: the token's column (1-based).")
    tag_col: str = opt("auto", "The tag's column: a number (1-based), 'last' (CoNLL default), or for CoNLL-U upos (default), xpos, deprel.")
    tag_scheme: str = opt(
        "auto", "The input's tags: iob1, iob2 (BIO), bioes (IOBES), plain (e.g. POS), or auto (detected).",
        ("auto", "iob1", "iob2", "bioes", "plain"),
    )
    encoding: str = opt("utf-8", "Text encoding of the files (e.g. cp1252, latin-1); undecodable bytes are an error.")
    test_split: float = opt(0.1, "Fraction of the sentences held out for testing when no test file is given.", at_least=0, below=1)


@dataclass
class ReutersData(ClassifierData, PretrainFields):
    subset: str = opt(
        "reuters46",
        "reuters46: the lectures' 46 topics (Keras' 11,228 newswires, 80/20 split); r8 / r52: Cardoso-Cachopo's "
        "single-topic sets on the ModApte split.",
        ("reuters46", "r8", "r52"),
    )


@dataclass
class LanguageModelData(SourceData, VocabFields):
    pass


@dataclass
class OwnTextData(LanguageModelData):
    text: str | None = opt(None, "A UTF-8 text file or a folder of .txt files (the same as --data).")


@dataclass
class WindowData(DataSettings):
    window: int = opt(50, "Input time steps per example.", at_least=1)
    horizon: int = opt(1, "How many future steps to predict.", at_least=1)
    stride: int = opt(1, "Steps between the starts of consecutive windows.", at_least=1)


@dataclass
class SeriesData(SourceData, WindowData):
    target: str | None = opt(None, "The column to predict.")
    features: str | None = opt(
        None, "Comma-separated input columns besides the target, or 'all' (default: the target only)."
    )
    time_col: str | None = opt(None, "The timestamp column; rows are put in time order and it is never a feature.")
    every: int = opt(1, "Keep every Nth row (6 turns 10-minute records into hourly ones).", at_least=1)
    val_split: float = opt(0.1, "Fraction of the rows held out for validation (after the training rows).", at_least=0, below=1)
    test_split: float = opt(0.1, "Fraction of the rows (the most recent) held out for testing.", at_least=0, below=1)
    min_steps: int = min_steps_field()
    transform: str = opt(
        "none", "Target transforms, comma-separated, in this order: log (positive series whose changes multiply), "
        "diff (forecast the changes), scale (each window by its own mean and spread); inverted on the forecast.",
    )


@dataclass
class PairData(DataSettings, VocabFields):
    num_pairs: int = opt(10000, "Use the first N pairs of the file (or generate N); 0 uses all.", at_least=0)
    level: str | None = opt(None, "Tokens on both sides: characters or words (sets --source-level and --target-level).", ("char", "word"))
    source_level: str = opt("word", "Source tokens: characters or words.", ("char", "word"))
    target_level: str = opt("word", "Target tokens: characters or words.", ("char", "word"))
    val_split: float = opt(0.1, "Fraction of the distinct sources held out for validation, and again for test.", at_least=0, below=0.5)


@dataclass
class FilePairData(SourceData, PairData):
    reverse: bool = opt(False, "Swap source and target (e.g. French to English).")


# -------------------------------------------------------------------- config
@dataclass(frozen=True)
class Schema:
    """The dataclass of each section for one task."""

    train: type = TrainSettings
    model: type = ModelSettings
    data: type = DataSettings

    def fields(self) -> dict[str, tuple[str, dataclasses.Field, Any]]:
        """Flag name (field name) -> (section, field, resolved type); names are unique within a schema."""
        out: dict[str, tuple[str, dataclasses.Field, Any]] = {}
        for section in SECTIONS:
            cls = getattr(self, section)
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                if f.name in out:
                    raise TypeError(f"setting {f.name!r} is declared twice in one schema")
                out[f.name] = (section, f, hints[f.name])
        return out


@dataclass
class Config:
    task: str
    train: Any
    model: Any
    data: Any
    #: setting -> the location as the user typed it, where the run records it resolved (config.toml shows both)
    typed: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def create(cls, task: str, schema: Schema, defaults: dict[str, Any] | None = None) -> Config:
        config = cls(task, schema.train(), schema.model(), schema.data())
        config.update(defaults or {})
        return config

    @property
    def schema(self) -> Schema:
        return Schema(type(self.train), type(self.model), type(self.data))

    def update(self, values: dict[str, Any]) -> None:
        """Set settings by name (`window`) or `section.name`, refusing ones this task's schema lacks."""
        fields = self.schema.fields()
        for key, value in values.items():
            name = key.rpartition(".")[2]
            if name not in fields or ("." in key and key.partition(".")[0] != fields[name][0]):
                raise SeqtrainError(
                    f"--{name.replace('_', '-')} is not a setting of task '{self.task}'; "
                    f"`seqtrain fit --task {self.task} --help` lists its flags"
                )
            section, f, _ = fields[name]
            choices = f.metadata.get("choices")
            if choices and value not in choices and not (value is None and f.default is None):
                raise SeqtrainError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, not '{value}'")
            setattr(getattr(self, section), name, value)

    def validate(self) -> None:
        """Refuse values outside each field's declared range, with one line naming the flag."""
        for name, (section, f, _) in self.schema.fields().items():
            value = getattr(getattr(self, section), name)
            low, high = f.metadata.get("at_least"), f.metadata.get("below")
            flag = "--" + name.replace("_", "-")
            if low is not None and not value >= low:
                raise SeqtrainError(f"{flag} must be at least {low:g}, not {value}")
            if high is not None and not value < high:
                raise SeqtrainError(f"{flag} must be below {high:g}, not {value}")
            if isinstance(value, int) and abs(value) > INT64:
                raise SeqtrainError(f"{flag} must be at most {INT64:,}, not {value}")
        if not self.train.lr > 0:
            raise SeqtrainError(f"--lr must be positive, not {self.train.lr}")

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **{section: dataclasses.asdict(getattr(self, section)) for section in SECTIONS}}

    def flat(self) -> dict[str, Any]:
        """`section.field` -> value, e.g. for TensorBoard's hparams table."""
        return {f"{section}.{k}": v for section in SECTIONS for k, v in dataclasses.asdict(getattr(self, section)).items()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], schema: Schema, source: str | Path | None = None) -> Config:
        """A config of `schema` from `to_dict` output (or parsed TOML): unknown keys are refused. With `source`
        (the file it was read from), every section, key and value is checked as its flag is, in one line
        naming the file and the key."""
        config = cls.create(raw["task"], schema)
        if source is not None:
            raw = checked_file_values(raw, schema, config.task, source)
        config.update({f"{section}.{k}": v for section in SECTIONS for k, v in raw.get(section, {}).items()})
        return config

    def to_toml(self) -> str:
        lines = [f"task = {_toml_value(self.task)}"]
        for section in SECTIONS:
            lines.append(f"\n[{section}]")
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                if value is not None:  # TOML has no null: an absent key reads back as None
                    typed = f"  # typed: {self.typed[key]}" if section == "data" and key in self.typed else ""
                    lines.append(f"{key} = {_toml_value(value)}{typed}")
        return "\n".join(lines) + "\n"


INT64 = 2**63 - 1  # the largest integer a setting may hold (torch's sizes are 64-bit)


def checked_file_values(raw: dict[str, Any], schema: Schema, task: str, source: str | Path) -> dict[str, Any]:
    """A config file's sections with each value checked against its setting's type exactly as its flag
    is (a boolean is not an integer; a choice of numbers may be written 32 or "32"), and unknown sections
    and keys refused, each in one line naming the file and the key."""
    fields = schema.fields()
    out: dict[str, Any] = {}
    for section, values in raw.items():
        if section == "task":
            continue
        if section not in SECTIONS or not isinstance(values, dict):
            what = f"[{section}]" if isinstance(values, dict) else f"key {section!r}"
            raise SeqtrainError(f"{source}: unknown {what}; a seqtrain config holds task = \"...\" and the sections "
                                "[train], [model] and [data]")
        for key, value in values.items():
            if key not in fields or fields[key][0] != section:
                home = f" (it belongs in [{fields[key][0]}])" if key in fields else ""
                raise SeqtrainError(f"{source}: [{section}] {key} is not a setting of task '{task}'{home}; "
                                    f"`seqtrain fit --task {task} --help` lists its settings")
            _, f, hint = fields[key]
            out.setdefault(section, {})[key] = _typed(value, hint, f, f"{source}: [{section}] {key} = {_shown(value)}")
    return out


def setting_kind(hint: Any) -> tuple[Any, bool]:
    """A setting's type without its Optional, and whether None is allowed: what a config file's values and
    the Python API's keywords are both checked against."""
    optional = type(None) in typing.get_args(hint)
    return (next((t for t in typing.get_args(hint) if t is not type(None)), hint) if optional else hint), optional


def _typed(value: Any, hint: Any, f: dataclasses.Field, where: str) -> Any:
    """`value` as its setting's type, or one line saying what the setting takes."""
    flag = "--" + f.name.replace("_", "-")
    kind, optional = setting_kind(hint)
    choices = f.metadata.get("choices")
    if kind is str and choices and isinstance(value, int) and not isinstance(value, bool) and str(value) in choices:
        return str(value)  # precision = 32 means "32"
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and abs(value) > INT64:
            raise SeqtrainError(f"{where}: too large for {flag} (at most {INT64:,})")
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        wanted = {bool: "true or false", int: "a whole number", float: "a number"}.get(kind, "a string in quotes")
        if choices:
            wanted = "one of " + ", ".join(choices)
        raise SeqtrainError(f"{where}: {flag} takes {wanted}, not a TOML {_toml_type(value)}")
    if choices and value not in choices:
        raise SeqtrainError(f"{where}: {flag} takes one of {', '.join(choices)}")
    low, high = f.metadata.get("at_least"), f.metadata.get("below")
    if (low is not None and not value >= low) or (high is not None and not value < high):
        bounds = " and ".join(x for x in (low is not None and f"at least {low:g}", high is not None and f"below {high:g}") if x)
        raise SeqtrainError(f"{where}: {flag} must be {bounds}")
    return value


def _toml_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = _toml_value(value) if isinstance(value, (bool, int, float, str)) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def read_toml(path: Path) -> dict[str, Any]:
    """A config file's raw contents; the task registry turns them into a Config (it knows each task's schema)."""
    if Path(path).suffix.lower() in (".yaml", ".yml", ".json"):
        raise SeqtrainError(f"{path}: seqtrain reads TOML config files (as a run's config.toml), not "
                            f"{Path(path).suffix[1:].upper()}; write it as task = \"...\" then key = value under [train], "
                            "[model] and [data]")
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SeqtrainError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)|\(at end of document\)", str(exc))
        where = f" line {found.group(1)}" if found and found.group(1) else ""
        detail = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise SeqtrainError(f"{path}{where}: not valid TOML ({detail}); a seqtrain config is TOML, as a run's "
                            "config.toml") from None
    if not isinstance(raw.get("task"), str):
        raise SeqtrainError(f"{path} names no task (a seqtrain config.toml starts with task = \"...\")")
    return raw


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
