"""WAV files in, mono float waveforms at the run's sample rate out.

PCM (8-bit unsigned, 16/24/32-bit signed) is read with the standard library's
`wave`; IEEE float and WAVE_FORMAT_EXTENSIBLE files, which `wave` refuses
before Python 3.12, through a small RIFF chunk reader here. Several channels
are averaged to one. Resampling is a windowed-sinc polyphase filter in torch
(the method of torchaudio's `resample`, written here because torchaudio
wheels pin one torch version each, and none matches the torch this project
runs on). Every malformed file is a one-line error naming it.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import numpy as np
import torch

from seqtrain.errors import SeqtrainError

PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(mono float32 waveform in [-1, 1], sample rate) of a WAV file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SeqtrainError(f"cannot read {path}: {exc.strerror}") from None
    fmt, data = riff_chunks(raw, path)
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the format tag
    if tag == PCM and bits in (8, 16, 24, 32):
        samples = _read_pcm(path, channels, bits, len(data)) if _wave_reads(raw) else _decode_pcm(data, bits)
    elif tag == FLOAT and bits in (32, 64):
        samples = np.frombuffer(data[: len(data) // (bits // 8) * (bits // 8)], dtype="<f4" if bits == 32 else "<f8")
    else:
        raise SeqtrainError(
            f"{path}: WAV format {tag} with {bits}-bit samples is not supported; convert it to PCM "
            "(e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav`)"
        )
    if not channels or len(samples) < channels:
        raise SeqtrainError(f"{path} holds no audio samples")
    frames = samples[: len(samples) // channels * channels].reshape(-1, channels).astype(np.float32)
    return frames.mean(1) if channels > 1 else frames[:, 0], rate


def riff_chunks(raw: bytes, path: Path) -> tuple[bytes, bytes]:
    """The `fmt ` and `data` chunks of a RIFF/WAVE file; a truncated data chunk is an error, not silence."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise SeqtrainError(f"{path} is not a WAV file (no RIFF/WAVE header)")
    position, fmt, data = 12, None, None
    while position + 8 <= len(raw):
        kind, size = raw[position : position + 4], struct.unpack("<I", raw[position + 4 : position + 8])[0]
        body = raw[position + 8 : position + 8 + size]
        if kind == b"fmt ":
            fmt = body
        elif kind == b"data":
            if len(body) < size:
                raise SeqtrainError(
                    f"{path} is truncated: its data chunk declares {size:,} bytes, the file holds {len(body):,}"
                )
            data = body
            break
        position += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise SeqtrainError(f"{path} has no valid 'fmt ' chunk")
    if data is None:
        raise SeqtrainError(f"{path} has no 'data' chunk (truncated?)")
    return fmt, data


def _wave_reads(raw: bytes) -> bool:
    """Whether the header says plain PCM, which `wave` reads (it refuses the extensible header before Python 3.12)."""
    return struct.unpack("<H", raw[20:22])[0] == PCM


def _read_pcm(path: Path, channels: int, bits: int, size: int) -> np.ndarray:
    with wave.open(str(path), "rb") as handle:
        frames = handle.readframes(handle.getnframes())
    if len(frames) < size - size % (channels * bits // 8):
        raise SeqtrainError(f"{path} is truncated: {len(frames):,} of {size:,} bytes of samples could be read")
    return _decode_pcm(frames, bits)


def _decode_pcm(data: bytes, bits: int) -> np.ndarray:
    """Little-endian PCM bytes as float64 in [-1, 1): 8-bit is unsigned, wider samples signed."""
    width = bits // 8
    data = data[: len(data) // width * width]
    if bits == 8:
        return (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128) / 128
    if bits == 24:
        triples = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        return np.where(values >= 1 << 23, values - (1 << 24), values) / float(1 << 23)
    return np.frombuffer(data, dtype="<i2" if bits == 16 else "<i4").astype(np.float64) / float(1 << (bits - 1))


def resample(waveform: torch.Tensor, source: int, target: int, zero_crossings: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """[S] at `source` Hz to `target` Hz: a Hann-windowed sinc low-pass at `rolloff` x the lower Nyquist, one
    filter phase per output sample of the reduced ratio (target/gcd outputs per source/gcd inputs)."""
    if source == target:
        return waveform
    divisor = math.gcd(source, target)
    up, down = source // divisor, target // divisor  # `down` outputs for every `up` inputs
    cutoff = min(up, down) * rolloff
    width = math.ceil(zero_crossings * up / cutoff)
    offsets = torch.arange(-width, width + up, dtype=torch.float64)[None] / up  # input positions, in input periods
    phases = -torch.arange(down, dtype=torch.float64)[:, None] / down
    t = (phases + offsets) * cutoff
    window = torch.where(t.abs() <= zero_crossings, torch.cos(t * math.pi / zero_crossings / 2) ** 2, torch.zeros_like(t))
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * torch.where(t == 0, 1, t)))
    kernel = (kernel * window * cutoff / up).to(waveform.dtype)  # [down, taps]
    length = waveform.shape[-1]
    padded = torch.nn.functional.pad(waveform.reshape(1, 1, -1), (width, width + up))
    out = torch.nn.functional.conv1d(padded, kernel[:, None], stride=up)  # [1, down, blocks]
    out = out[0].transpose(0, 1).reshape(-1)
    return out[: math.ceil(down * length / up)]


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """A WAV file as a mono float32 waveform at `sample_rate`."""
    samples, rate = read_wav(path)
    if rate != sample_rate:
        samples = resample(torch.from_numpy(samples).double(), rate, sample_rate).float().numpy()
    return samples
