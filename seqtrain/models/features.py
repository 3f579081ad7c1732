"""Audio features in torch, on the model's device: log-mel spectrogram and MFCC, and SpecAugment masking.

Part of the model, so a checkpoint turns a waveform into a prediction by
itself and the features run wherever the model runs. Frames are not centred
(frame f covers samples [f*hop, f*hop + win)), so a sequence's frames never
read the padding of a batch: frames = 1 + (samples - win) // hop, at least 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """HTK's mel scale."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """[n_fft // 2 + 1, n_mels] triangular filters evenly spaced on the mel scale (peak 1, no area normalisation)."""
    f_max = f_max or sample_rate / 2
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def dct_matrix(n_mels: int, n_mfcc: int) -> torch.Tensor:
    """[n_mels, n_mfcc] orthonormal DCT-II: MFCC = log-mel @ this."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64)
    basis = torch.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None]) * math.sqrt(2.0 / n_mels)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.float()


class LogMel(nn.Module):
    """Waveforms [B, S] -> log-mel frames [B, F, n_mels] (or MFCC [B, F, n_mfcc]) and frame counts [B]."""

    def __init__(self, sample_rate: int, n_mels: int = 40, win_ms: float = 25.0, hop_ms: float = 10.0, n_mfcc: int = 0):
        super().__init__()
        self.win = max(2, round(sample_rate * win_ms / 1000))
        self.hop = max(1, round(sample_rate * hop_ms / 1000))
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.register_buffer("window", torch.hann_window(self.win, periodic=True), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, self.n_fft, n_mels), persistent=False)
        self.register_buffer("dct", dct_matrix(n_mels, n_mfcc) if n_mfcc else torch.empty(0), persistent=False)
        self.size = n_mfcc or n_mels

    def extra_repr(self) -> str:
        return f"win={self.win}, hop={self.hop}, n_fft={self.n_fft}, features={self.size}"

    def frame_count(self, samples: torch.Tensor) -> torch.Tensor:
        return torch.clamp((samples - self.win) // self.hop + 1, min=1)

    def samples_for(self, frames: int) -> int:
        """The samples that `frames` frames read (the --max-len rule for waveforms)."""
        return (frames - 1) * self.hop + self.win

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if waveforms.shape[1] < self.win:
            waveforms = nn.functional.pad(waveforms, (0, self.win - waveforms.shape[1]))
        frames = waveforms.float().unfold(1, self.win, self.hop) * self.window  # [B, F, win]
        power = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)  # [B, F, n_fft/2 + 1]
        return self.from_power(power), self.frame_count(lengths.to(waveforms.device))

    def from_power(self, power: torch.Tensor) -> torch.Tensor:
        """Power spectra [B, F, n_fft/2 + 1] -> log-mel (or MFCC) frames; shared with the exported front end."""
        features = torch.log(power @ self.filters + 1e-6)
        return features @ self.dct if self.dct.numel() else features


class SpecAugment(nn.Module):
    """In training only: `masks` time spans (up to `max_frames` frames each) and `masks` channel spans (up to 1/8 of
    the channels) set to zero, the training mean of normalised features (Park et al. 2019, without time warping)."""

    def __init__(self, masks: int, max_frames: int = 10):
        super().__init__()
        self.masks, self.max_frames = masks, max_frames

    def extra_repr(self) -> str:
        return f"masks={self.masks}, max_frames={self.max_frames}"

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.masks:
            return x
        batch, steps, channels = x.shape
        keep = torch.ones_like(x, dtype=torch.bool)
        time = torch.arange(steps, device=x.device)[None]
        freq = torch.arange(channels, device=x.device)[None]
        for _ in range(self.masks):
            width = (torch.rand(batch, 1, device=x.device) * (self.max_frames + 1)).long()
            start = (torch.rand(batch, 1, device=x.device) * (lengths.to(x.device)[:, None] - width).clamp(min=1)).long()
            keep &= ~((time >= start) & (time < start + width))[:, :, None]
            width = (torch.rand(batch, 1, device=x.device) * (channels // 8 + 1)).long()
            start = (torch.rand(batch, 1, device=x.device) * (channels - width + 1)).long()
            keep &= ~((freq >= start) & (freq < start + width))[:, None, :]
        return x * keep
