"""Export adapters for models over numeric sequences: signal and audio classifiers, and CTC speech models.

The per-channel normalisation is inside every graph (the model's own
buffers), so a caller feeds raw values: feature vectors for `signal`,
waveforms for the audio tasks. The audio front end (log-mel or MFCC frames)
is inside the graph too: the model's own front end frames the waveform with
`unfold`, which the TorchScript-based ONNX exporter refuses over a length
that varies, and calls `rfft`, which it has no operator for; `StftLogMel`
computes the same frames through torch.stft (ONNX's STFT operator), and the
parity check compares the written graph with the model as trained.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from seqtrain.export.core import Export, Graph, Runner, as_arrays, exporter, sample_batches
from seqtrain.export.families import BATCH, Probabilities, label_accuracy
from seqtrain.inference import Trained
from seqtrain.models.ctc import BLANK, greedy_decode
from seqtrain.models.features import LogMel
from seqtrain.tasks.ctc import CtcTask
from seqtrain.tasks.signals import SequenceClassificationTask


class StftLogMel(nn.Module):
    """A LogMel front end's frames through torch.stft: waveforms [B, S], lengths [B] -> frames [B, F, size], counts [B].

    Each stft frame is n_fft samples long with the window zero-padded at its end, so it holds LogMel's frame
    (samples [f*hop, f*hop + win), windowed) followed by zeros, as LogMel's rfft pads it: the same transform of
    the same numbers. n_fft - 1 zeros after the waveform give every frame its samples (and a waveform shorter
    than one window its one frame); the frames past LogMel's count are cut off, so the shapes equal LogMel's
    for every length.
    """

    def __init__(self, frontend: LogMel):
        super().__init__()
        self.frontend = frontend
        self.register_buffer("window", nn.functional.pad(frontend.window, (0, frontend.n_fft - frontend.win)), persistent=False)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        front = self.frontend
        x = nn.functional.pad(waveforms.float(), (0, front.n_fft - 1))
        spectrum = torch.stft(x, front.n_fft, front.hop, front.n_fft, self.window, center=False, return_complex=False)
        frames = front.frame_count(torch._shape_as_tensor(waveforms)[1])  # a tensor in the graph, not a traced constant
        power = spectrum.pow(2).sum(-1).transpose(1, 2)[:, :frames]
        return front.from_power(power), front.frame_count(lengths)


def with_graph_frontend(model: nn.Module) -> nn.Module:
    """A copy of an audio model whose front end is StftLogMel (the model itself when it reads feature vectors)."""
    if model.body.frontend is None:
        return model
    copied = copy.deepcopy(model)
    copied.body.frontend = StftLogMel(copied.body.frontend)
    return copied.eval()


def inputs(trained: Trained) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The graphs' first input name, its varying axes, and the sidecar's fields saying how to fill it."""
    task, model, meta = trained.task, trained.model, trained.task.meta
    normalisation = {"mean": meta.mean.tolist(), "std": meta.std.tolist(), "in_graph": True,
                     "rule": "(x - mean) / std per channel, inside the graph: feed raw values"}
    if model.body.frontend is None:
        return "values", {0: "batch", 1: "steps"}, {
            "input_rule": "values float32 [batch, steps, channels] in the channels' own units, right-padded with 0; "
            "lengths int64 [batch] the steps of each row",
            "channels": meta.channels,
            "normalisation": normalisation,
            "stack": model.body.every,
            "max_len": meta.max_len,
            "max_len_rule": "0: whole sequences; else keep each sequence's first max_len steps",
        }
    data, front = task.config.data, model.body.frontend
    return "waveforms", {0: "batch", 1: "samples"}, {
        "input_rule": "waveforms float32 [batch, samples]: mono, in [-1, 1], at sample_rate Hz (resample first), "
        "right-padded with 0; lengths int64 [batch] the samples of each row",
        "sample_rate": data.sample_rate,
        "frontend": {
            "in_graph": True, "features": "mfcc" if data.mfcc else "log-mel", "n_mels": data.n_mels, "mfcc": data.mfcc,
            "win": front.win, "hop": front.hop, "n_fft": front.n_fft, "window": "hann, periodic",
            "rule": "frame f reads samples [f*hop, f*hop + win), zero-padded to n_fft; frames = max(1, 1 + (samples - "
            "win) // hop); log(power @ mel filters + 1e-6), then a DCT-II for MFCCs",
        },
        "normalisation": normalisation | {"of": "the front end's frames"},
        "stack": model.body.every,
        "max_len": meta.max_len,
        "max_samples": front.samples_for(meta.max_len) if meta.max_len else 0,
        "max_len_rule": "0: whole recordings; else keep each recording's first max_samples samples (max_len frames)",
    }


def signal_regressor(trained: Trained, loader: Any) -> Export:
    """Signal regressors: values, lengths -> prediction [batch] in the target's units (the graph scales it back)."""
    name, axes, fields = inputs(trained)
    meta = trained.task.meta
    graph = Graph(
        "regressor", trained.model, [name, "lengths"], ["prediction"], {name: axes, "lengths": BATCH, "prediction": BATCH},
        [(batch.tokens, batch.lengths) for batch in sample_batches(loader)],
    )

    def rmse(runners: dict[str, Runner]) -> tuple[str, float, str]:
        total, count = 0.0, 0
        for batch in loader:
            predicted = runners["regressor"](as_arrays((batch.tokens, batch.lengths)))[0]
            total += float(np.square(predicted.astype(np.float64) - batch.targets.double().numpy()).sum())
            count += len(batch)
        return "rmse", math.sqrt(total / max(count, 1)), "min"

    sidecar = {"family": "signal_regressor", "target": {"mean": meta.target_mean, "std": meta.target_std},
               "output_rule": "one number per sequence in the target's own units (the graph scales it back)", **fields}
    return Export([graph], sidecar, rmse)


@exporter(SequenceClassificationTask)
def sequence_classifier(trained: Trained, loader: Any) -> Export:
    """Signal and audio classifiers: values or waveforms, lengths -> probabilities [batch, labels]
    (a signal regressor: its prediction)."""
    if trained.task.meta.regress:
        return signal_regressor(trained, loader)
    name, axes, fields = inputs(trained)
    module = Probabilities(with_graph_frontend(trained.model), False).eval()
    reference = Probabilities(trained.model, False).eval() if module.model is not trained.model else None
    graph = Graph(
        "classifier", module, [name, "lengths"], ["probabilities"], {name: axes, "lengths": BATCH, "probabilities": BATCH},
        [(batch.tokens, batch.lengths) for batch in sample_batches(loader)], reference,
    )
    family = "signal_classifier" if name == "values" else "audio_classifier"
    sidecar = {"family": family, "labels": trained.task.meta.labels, **fields}
    return Export([graph], sidecar, label_accuracy(loader))


@exporter(CtcTask)
def ctc(trained: Trained, loader: Any) -> Export:
    """CTC speech models: waveforms, lengths -> per-frame log-probabilities [batch, frames, 1 + symbols], frames [batch]."""
    name, axes, fields = inputs(trained)
    module = with_graph_frontend(trained.model)
    graph = Graph(
        "ctc", module, [name, "lengths"], ["log_probs", "frames"],
        {name: axes, "lengths": BATCH, "log_probs": {0: "batch", 1: "frames"}, "frames": BATCH},
        [(batch.tokens, batch.lengths) for batch in sample_batches(loader)], trained.model,
    )

    def label_error_rate(runners: dict[str, Runner]) -> tuple[str, float, str]:
        edits = labels = 0.0
        for batch in loader:
            log_probs, frames = runners["ctc"](as_arrays((batch.tokens, batch.lengths)))
            decoded = greedy_decode(torch.from_numpy(log_probs), torch.from_numpy(frames))
            sums = CtcTask.score(decoded, batch.targets, (batch.targets != 0).sum(1))
            edits, labels = edits + sums["edits"], labels + sums["ref_labels"]
        return "ler", edits / max(labels, 1), "min"

    meta = trained.task.meta
    sidecar = {
        "family": "ctc",
        "symbols": meta.symbols,
        "blank": BLANK,
        "separator": meta.separator,
        "output_rule": "log_probs[b, f, 0] is the blank, log_probs[b, f, i] symbol i - 1 of `symbols`; a row's first "
        "frames[b] frames are valid",
        "decoding": "greedy: the most likely index per valid frame, repeats merged, blanks dropped, symbols joined by "
        "separator (seqtrain transcribe searches a prefix beam instead)",
        **fields,
    }
    return Export([graph], sidecar, label_error_rate)
