"""Classify recordings: `audio` (a user's class folders of WAV files, or a CSV of path and label) and `fsdd`.

A waveform reaches the model as it is; the model's front-end computes log-mel
or MFCC frames on its device (models/features.py), so `predict` takes WAV
files. The per-channel statistics are those of the training split's frames.
The 1-NN baselines compare the (normalised) frames.

FSDD (the Free Spoken Digit Dataset, Jakobovski et al.): 3,000 recordings
`{digit}_{speaker}_{index}.wav`, 6 speakers x 10 digits x 50, 8 kHz. Its
own rule makes recordings 0-4 of each digit and speaker the test set;
`--split speakers` holds out whole speakers (`--test-speakers`) instead.
No checksum of the release archive is published, so the download is checked
by what can be checked: the recordings' names, their number, and that every
file is a complete WAV (its data chunk as long as its header says).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seqtrain.config import Schema, SourceData, TrainSettings, opt
from seqtrain.data.audio import load_audio
from seqtrain.data.download import cache_dir, download, extract, source_key
from seqtrain.data.signals import Sequences
from seqtrain.data.sources import local_source
from seqtrain.errors import SeqtrainError
from seqtrain.models.features import LogMel, SpecAugment
from seqtrain.tasks.base import register
from seqtrain.tasks.signals import SequenceClassificationTask, SequenceSplits, SignalMeta, SignalModel, TestSplit

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_NAME = re.compile(r"^([0-9])_([a-z]+)_([0-9]+)\.wav$")
FSDD_COUNT = 3000
FSDD_TEST_INDEX = 5  # recordings 0-4 of each digit and speaker are the test set


@dataclass
class AudioFeatures:
    sample_rate: int = opt(16000, "Every recording is resampled to this rate (Hz).", at_least=1000)
    n_mels: int = opt(40, "Mel bands of the log-mel spectrogram.", at_least=1)
    win_ms: float = opt(25.0, "Analysis window in milliseconds.", at_least=1)
    hop_ms: float = opt(10.0, "Hop between frames in milliseconds.", at_least=1)
    mfcc: int = opt(0, "Use this many MFCCs (a DCT of the log-mel bands) instead of the log-mel bands; 0: log-mel.", at_least=0)
    spec_augment: int = opt(
        0, "SpecAugment in training: this many time masks (up to 10 frames each) and frequency masks (up to 1/8 of "
        "the bands each); 0: none.", at_least=0,
    )


@dataclass
class AudioData(SourceData, SequenceSplits, TestSplit, AudioFeatures):
    path_col: str = opt("path", "CSV: the column holding each WAV file's path (relative to the CSV).")
    label_col: str = opt("label", "CSV: the column holding each recording's label.")
    dtw_window: float = opt(
        0.1, "Sakoe-Chiba band of the 1-NN DTW baseline, as a fraction of the length; 0 skips DTW.", at_least=0, below=1
    )


@dataclass
class FsddData(SourceData, SequenceSplits, AudioFeatures):
    split: str = opt(
        "index", "index: the dataset's rule (recordings 0-4 of each digit and speaker are the test set); "
        "speakers: every recording of --test-speakers is the test set.", ("index", "speakers"),
    )
    test_speakers: str = opt("george", "With --split speakers: comma-separated speakers held out for testing.")
    dtw_window: float = opt(
        0.1, "Sakoe-Chiba band of the 1-NN DTW baseline, as a fraction of the length; 0 skips DTW.", at_least=0, below=1
    )


def read_wav_folders(root: Path, sample_rate: int) -> Sequences:
    """`root/<label>/*.wav`: the folder name is the label."""
    out = Sequences()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.glob("*.wav")):
            out.add(load_audio(file, sample_rate), folder.name, f"{folder.name}/{file.name}")
    if not out.values:
        raise SeqtrainError(f"{root} holds no class folders of .wav files")
    return out


def read_wav_csv(path: Path, path_col: str, label_col: str, sample_rate: int) -> Sequences:
    """A CSV with a header naming the path and label columns; paths are relative to the CSV's folder."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for name, flag in ((path_col, "--path-col"), (label_col, "--label-col")):
            if name not in columns:
                raise SeqtrainError(f"{flag}: no column '{name}' in {path}; its columns are {', '.join(columns)}")
        out = Sequences()
        for row in reader:
            file = path.parent / row[path_col].strip()
            out.add(load_audio(file, sample_rate), row[label_col].strip(), row[path_col].strip())
    if not out.values:
        raise SeqtrainError(f"{path} lists no recordings")
    return out


class AudioClassificationTask(SequenceClassificationTask):
    """A sequence classifier whose inputs are waveforms and whose model starts with the feature front-end."""

    def frontend(self) -> LogMel:
        d = self.config.data
        return LogMel(d.sample_rate, d.n_mels, d.win_ms, d.hop_ms, d.mfcc)

    def augment(self) -> nn.Module | None:
        return SpecAugment(self.config.data.spec_augment) if self.config.data.spec_augment else None

    def cut(self, x: torch.Tensor, max_len: int) -> torch.Tensor:
        return x[: self.frontend().samples_for(max_len)] if max_len else x

    def feature_size(self) -> int:
        return self.config.data.mfcc or self.config.data.n_mels

    def default_meta(self) -> SignalMeta:
        size = self.feature_size()
        return SignalMeta([str(d) for d in range(10)], size, torch.zeros(size), torch.ones(size))

    def featurise(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The front-end's frames of every recording, computed in length-sorted batches."""
        frontend, out = self.frontend(), [torch.empty(0)] * len(inputs)
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        with torch.no_grad():
            for start in range(0, len(order), 64):
                chunk = order[start : start + 64]
                waves = nn.utils.rnn.pad_sequence([inputs[i] for i in chunk], batch_first=True)
                frames, counts = frontend(waves, torch.tensor([len(inputs[i]) for i in chunk]))
                for row, i in enumerate(chunk):
                    out[i] = frames[row, : counts[row]]
        return out

    def read_inputs(self, path: Path) -> list[tuple[str, torch.Tensor]]:
        if path.suffix.lower() != ".wav":
            raise SeqtrainError(f"{path}: an audio model reads .wav files")
        return [(path.name, torch.from_numpy(load_audio(path, self.config.data.sample_rate)))]

    def on_epoch_end(self, model: nn.Module, data, log, epoch: int) -> None:
        super().on_epoch_end(model, data, log, epoch)
        if epoch == 1:
            log_spectrograms(model, data.train, log)


def log_spectrograms(model: nn.Module, loader, log, count: int = 4) -> None:
    """A few training inputs as TensorBoard images of their normalised features (time left to right, low bands at the bottom)."""
    body = model.body
    batch = next(iter(loader))
    was_training = body.training
    body.eval()
    with torch.no_grad():
        device = body.normalise.mean.device
        features, lengths = body.frontend(batch.tokens[:count].to(device), batch.lengths[:count].to(device))
        features = body.normalise(features, lengths).cpu()
    body.train(was_training)
    for row in range(len(features)):
        image = features[row, : lengths[row]].T.flip(0)  # [bands, frames]
        image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-6)
        log.writer.add_image(f"input/spectrogram_{row}", image[None], 1)


@register("audio")
class AudioTask(AudioClassificationTask):
    description = "Classify recordings: --data a folder of class folders of WAV files (train/ and test/ optional), or a CSV of path,label."
    schema = Schema(TrainSettings, SignalModel, AudioData)
    defaults = {"cell": "gru", "hidden": 64, "epochs": 30, "batch_size": 32, "lr": 3e-3, "stack": 2}

    def load(self, quiet: bool) -> tuple[Sequences, Sequences | None]:
        d = self.config.data
        path = local_source(d)
        if path is None:
            raise SeqtrainError("audio needs --data: a folder of class folders of .wav files, or a CSV of path and label")
        if path.is_file():
            return read_wav_csv(path, d.path_col, d.label_col, d.sample_rate), None
        if (path / "train").is_dir():
            test = read_wav_folders(path / "test", d.sample_rate) if (path / "test").is_dir() else None
            return read_wav_folders(path / "train", d.sample_rate), test
        return read_wav_folders(path, d.sample_rate), None


# ----------------------------------------------------------------------- FSDD
def fsdd_problem(folder: Path) -> str | None:
    """What keeps `folder` from holding FSDD's 3,000 complete recordings (None when nothing does)."""
    found = list(folder.glob("*/recordings/*.wav"))
    named = [f for f in found if FSDD_NAME.match(f.name) and FSDD_NAME.match(f.name).group(2) in FSDD_SPEAKERS]
    if len(named) != FSDD_COUNT:
        return f"{len(named):,} recordings named {{digit}}_{{speaker}}_{{index}}.wav, expected {FSDD_COUNT:,}"
    short = [f.name for f in named if f.stat().st_size <= 44]
    if short:
        return f"{len(short)} recordings hold no samples (e.g. {short[0]})"
    return None


def fsdd_recordings(config, quiet: bool) -> list[Path]:
    """The 3,000 recordings: from --data (a folder holding recordings/, or an archive), else downloaded into the cache."""
    cache = cache_dir(config.data.cache_dir)
    given = local_source(config.data)
    if given is not None and given.is_dir():
        folder = given if (given / "recordings").is_dir() else next((p.parent for p in given.glob("*/recordings")), None)
        if folder is None:
            raise SeqtrainError(f"{given} holds no recordings/ folder of FSDD (--data)")
        files = sorted((folder / "recordings").glob("*.wav"))
    else:
        if given is None:
            archive = download(FSDD_URL, None, cache, config.data.mirror, quiet=quiet)
            target = cache / "fsdd" / "v1.0.10"
        else:
            archive, target = given, cache / "fsdd" / f"{given.name.split('.')[0]}-{source_key(given)}"
        files = sorted(extract(archive, target, fsdd_problem).glob("*/recordings/*.wav"))
    files = [f for f in files if FSDD_NAME.match(f.name)]
    if len(files) != FSDD_COUNT:
        raise SeqtrainError(f"{given or FSDD_URL} holds {len(files):,} FSDD recordings, expected {FSDD_COUNT:,}")
    return files


def fsdd_split(files: list[Path], split: str, test_speakers: str) -> tuple[list[Path], list[Path]]:
    """(train, test) files by the dataset's index rule or by held-out speakers."""
    if split == "speakers":
        held = {s.strip() for s in test_speakers.split(",") if s.strip()}
        unknown = sorted(held - set(FSDD_SPEAKERS))
        if unknown or not held or held == set(FSDD_SPEAKERS):
            raise SeqtrainError(
                f"--test-speakers must name some but not all of {', '.join(FSDD_SPEAKERS)}; got '{test_speakers}'"
            )
        is_test = [FSDD_NAME.match(f.name).group(2) in held for f in files]
    else:
        is_test = [int(FSDD_NAME.match(f.name).group(3)) < FSDD_TEST_INDEX for f in files]
    return [f for f, t in zip(files, is_test) if not t], [f for f, t in zip(files, is_test) if t]


@register("fsdd")
class FsddTask(AudioClassificationTask):
    description = "Free Spoken Digit Dataset: 3,000 spoken digits, 6 speakers, 8 kHz; test = recordings 0-4 (--split speakers: held-out speakers)."
    schema = Schema(TrainSettings, SignalModel, FsddData)
    defaults = {"cell": "gru", "hidden": 64, "epochs": 15, "batch_size": 32, "lr": 3e-3, "stack": 2, "sample_rate": 8000}

    def load(self, quiet: bool) -> tuple[Sequences, Sequences | None]:
        d = self.config.data
        train, test = fsdd_split(fsdd_recordings(self.config, quiet), d.split, d.test_speakers)
        return self.read(train), self.read(test)

    def read(self, files: list[Path]) -> Sequences:
        out = Sequences()
        for file in files:
            out.add(load_audio(file, self.config.data.sample_rate), file.name.split("_")[0], file.name)
        return out
