"""WAV reading, resampling, log-mel/MFCC features against a numpy reference, CTC decoding, and the audio tasks end to end."""

from __future__ import annotations

import csv
import itertools
import json
import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seqtrain.data.audio import read_wav, resample
from seqtrain.errors import SeqtrainError
from seqtrain.models.ctc import edit_distance, greedy_decode, prefix_beam_decode, required_frames
from seqtrain.models.features import LogMel, SpecAugment
from seqtrain_cli.main import app

RATE = 8000


def write_pcm(path: Path, samples: np.ndarray, width: int, channels: int = 1, rate: int = RATE) -> Path:
    """`samples` in [-1, 1] written with the standard library's `wave` at `width` bytes per sample."""
    frames = np.repeat(samples[:, None], channels, 1).reshape(-1)
    if width == 1:
        raw = np.clip(np.round(frames * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    elif width == 3:
        ints = np.clip(np.round(frames * (1 << 23)), -(1 << 23), (1 << 23) - 1).astype(np.int32)
        raw = b"".join(struct.pack("<i", int(v))[:3] for v in ints)
    else:
        dtype = "<i2" if width == 2 else "<i4"
        scale = 1 << (8 * width - 1)
        raw = np.clip(np.round(frames * scale), -scale, scale - 1).astype(dtype).tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(raw)
    return path


def write_float_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                     + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    return path


def tone(freq: float, seconds: float = 0.1, rate: int = RATE, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize("width, channels", list(itertools.product((1, 2, 3, 4), (1, 2))))
def test_reads_pcm_of_every_width_and_channel_count(tmp_path, width, channels):
    samples = tone(440)
    got, rate = read_wav(write_pcm(tmp_path / "a.wav", samples, width, channels))
    assert rate == RATE and got.shape == samples.shape
    assert np.abs(got - samples).max() <= 1.5 / (1 << (8 * width - 1))


def test_reads_float_wav_and_averages_channels(tmp_path):
    samples = tone(300)
    got, _ = read_wav(write_float_wav(tmp_path / "f.wav", samples))
    np.testing.assert_array_equal(got, samples)
    left, right = tone(300), tone(500)
    stereo = np.stack([left, right], 1).reshape(-1)
    with wave.open(str(tmp_path / "s.wav"), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes((stereo * 32767).astype("<i2").tobytes())
    got, _ = read_wav(tmp_path / "s.wav")
    np.testing.assert_allclose(got, (left + right) / 2, atol=1e-4)


def test_truncated_and_unsupported_wavs_are_one_line_errors(tmp_path):
    path = write_pcm(tmp_path / "t.wav", tone(440), 2)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SeqtrainError, match="t.wav is truncated: its data chunk declares 1,600 bytes, the file holds 1,500"):
        read_wav(path)
    alaw = bytearray(write_pcm(tmp_path / "a.wav", tone(440), 2).read_bytes())
    alaw[20:22] = struct.pack("<H", 6)  # A-law
    (tmp_path / "a.wav").write_bytes(bytes(alaw))
    with pytest.raises(SeqtrainError, match="a.wav: WAV format 6 with 16-bit samples is not supported; convert it to PCM"):
        read_wav(tmp_path / "a.wav")
    (tmp_path / "x.wav").write_bytes(b"not a wav at all")
    with pytest.raises(SeqtrainError, match="x.wav is not a WAV file"):
        read_wav(tmp_path / "x.wav")


def test_resample_keeps_a_tone_and_removes_what_the_new_rate_cannot_hold():
    t = torch.arange(16000, dtype=torch.float64) / 16000
    down = resample(torch.sin(2 * math.pi * 440 * t), 16000, 8000)
    expected = torch.sin(2 * math.pi * 440 * torch.arange(8000, dtype=torch.float64) / 8000)
    assert len(down) == 8000 and (down[50:-50] - expected[50:-50]).abs().max() < 2e-3
    aliased = resample(torch.sin(2 * math.pi * 3000 * t), 16000, 4000)  # above the new Nyquist (2 kHz)
    assert aliased[50:-50].pow(2).mean() < 1e-4
    assert len(resample(torch.zeros(441), 44100, 16000)) == 160


def numpy_log_mel(wave_: np.ndarray, rate: int, n_mels: int, win: int, hop: int, n_fft: int, n_mfcc: int = 0) -> np.ndarray:
    """An independent reference: frame by frame, numpy FFT, filters built from the HTK formula point by point."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(0), mel(rate / 2), n_mels + 2) / 2595) - 1)
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    filters = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        for k, f in enumerate(freqs):
            if edges[m] <= f <= edges[m + 1]:
                filters[m, k] = (f - edges[m]) / (edges[m + 1] - edges[m])
            elif edges[m + 1] < f <= edges[m + 2]:
                filters[m, k] = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1])
    rows = []
    for start in range(0, len(wave_) - win + 1, hop):
        spectrum = np.abs(np.fft.rfft(wave_[start : start + win] * window, n_fft)) ** 2
        rows.append(np.log(filters @ spectrum + 1e-6))
    out = np.array(rows)
    if n_mfcc:
        n = np.arange(n_mels)
        out = np.array([[np.sum(row * np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels))) * np.sqrt((1 if k else 0.5) * 2 / n_mels)
                         for k in range(n_mfcc)] for row in out])
    return out


@pytest.mark.parametrize("n_mfcc", [0, 13])
def test_features_match_an_independent_numpy_reference(n_mfcc):
    rng = np.random.default_rng(0)
    signal = (tone(700, 0.3) + rng.normal(0, 0.05, 2400)).astype(np.float32)
    frontend = LogMel(RATE, n_mels=20, win_ms=25, hop_ms=10, n_mfcc=n_mfcc)
    features, frames = frontend(torch.from_numpy(signal)[None], torch.tensor([len(signal)]))
    reference = numpy_log_mel(signal.astype(np.float64), RATE, 20, 200, 80, 256, n_mfcc)
    assert int(frames[0]) == len(reference) == features.shape[1]
    np.testing.assert_allclose(features[0].numpy(), reference, atol=2e-3, rtol=1e-3)


def test_features_of_a_batch_ignore_its_padding():
    short, long = tone(500, 0.2), tone(900, 0.5)
    frontend = LogMel(RATE, n_mels=16)
    alone, count = frontend(torch.from_numpy(short)[None], torch.tensor([len(short)]))
    batch = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(short), torch.from_numpy(long)], batch_first=True)
    together, counts = frontend(batch, torch.tensor([len(short), len(long)]))
    assert counts[0] == count[0]
    torch.testing.assert_close(together[0, : counts[0]], alone[0])


def test_spec_augment_masks_in_training_only():
    torch.manual_seed(0)
    augment = SpecAugment(2)
    x = torch.ones(4, 50, 16)
    assert (augment.eval()(x, torch.full((4,), 50)) == 1).all()
    masked = augment.train()(x, torch.full((4,), 50))
    assert (masked == 0).any() and (masked == 1).float().mean() > 0.5


# ---------------------------------------------------------------------- CTC
def posteriors(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows).log()


def test_greedy_merges_repeats_and_drops_blanks():
    # frames: a a blank a b b  (symbols: 0 blank, 1 a, 2 b) -> a a b
    best = [1, 1, 0, 1, 2, 2]
    rows = [[0.8 if s == b else 0.1 for s in range(3)] for b in best]
    assert greedy_decode(posteriors(rows)[None], torch.tensor([6])) == [[1, 1, 2]]
    assert greedy_decode(posteriors(rows)[None], torch.tensor([2])) == [[1]]  # only the valid frames


def brute_force_best(log_probs: torch.Tensor) -> list[int]:
    """The labelling with the highest total probability over all alignments, by enumerating every path."""
    totals: dict[tuple[int, ...], float] = {}
    steps, symbols = log_probs.shape
    for path in itertools.product(range(symbols), repeat=steps):
        merged = [s for i, s in enumerate(path) if s != 0 and (i == 0 or s != path[i - 1])]
        p = math.exp(sum(float(log_probs[t, s]) for t, s in enumerate(path)))
        totals[tuple(merged)] = totals.get(tuple(merged), 0.0) + p
    return list(max(totals, key=totals.get))


def test_prefix_beam_finds_the_most_likely_labelling_where_the_best_path_does_not():
    # the classic case: the single best path is blank-blank-blank ('' ), but 'a' has more probability in total
    rows = [[0.5, 0.4, 0.1], [0.5, 0.4, 0.1], [0.5, 0.4, 0.1]]
    log_probs = posteriors(rows)
    assert greedy_decode(log_probs[None], torch.tensor([3])) == [[]]
    assert prefix_beam_decode(log_probs, 3, beam=16) == brute_force_best(log_probs) == [1]


def test_prefix_beam_agrees_with_brute_force_on_random_posteriors():
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        log_probs = torch.log_softmax(torch.randn(5, 3, generator=generator) * 2, -1)
        assert prefix_beam_decode(log_probs, 5, beam=64) == brute_force_best(log_probs)


def test_edit_distance_and_required_frames():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2 and edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert required_frames([1, 1, 2]) == 4 and required_frames([1, 2, 3]) == 3


# -------------------------------------------------------------- end to end
SYMBOL_TONES = {"a": 400, "b": 1200, "c": 2400}


def write_tone_corpus(root: Path, count: int = 60, seed: int = 0, most: int = 3) -> Path:
    """WAVs of 1 to `most` tones with silence between: a class folder per first tone, and a transcript CSV."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        text = "".join(rng.choice(list(SYMBOL_TONES), size=int(rng.integers(1, most + 1))))
        pieces = []
        for symbol in text:
            pieces += [np.zeros(int(rng.integers(200, 600)), np.float32), tone(SYMBOL_TONES[symbol], rng.uniform(0.08, 0.14))]
        pieces.append(np.zeros(300, np.float32))
        folder = root / text[0]
        folder.mkdir(parents=True, exist_ok=True)
        write_pcm(folder / f"{i}.wav", np.concatenate(pieces) + rng.normal(0, 0.01, sum(map(len, pieces))).astype(np.float32), 2)
        rows.append((f"{text[0]}/{i}.wav", text))
    with open(root / "transcripts.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "text"), *rows])
    return root


def test_audio_task_learns_tones_and_predicts_wav_files(tmp_path):
    data = write_tone_corpus(tmp_path / "tones", most=1)
    runner = CliRunner()
    result = runner.invoke(app, [
        "fit", "--task", "audio", "--data", str(data), "--sample-rate", "8000", "--n-mels", "16", "--hidden", "16",
        "--epochs", "6", "--test-split", "0.2", "--spec-augment", "1", "--logdir", str(tmp_path / "runs"),
    ])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").glob("audio-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9
    assert "1nn-euclidean" in metrics["extra"]["test"]
    wav = next((data / "b").glob("*.wav"))
    predicted = runner.invoke(app, ["predict", str(run), str(wav)])
    assert predicted.exit_code == 0, predicted.output
    label, probability, name = predicted.output.strip().split("\t")
    assert (label, name) == ("b", wav.name) and float(probability) > 1 / 3
    refused = runner.invoke(app, ["predict", str(run), str(data / "transcripts.csv")])
    assert refused.exit_code == 2 and "an audio model reads .wav files" in refused.output


def test_ctc_task_learns_tone_sequences_and_transcribes(tmp_path):
    data = write_tone_corpus(tmp_path / "tones", count=120)
    runner = CliRunner()
    result = runner.invoke(app, [
        "fit", "--task", "ctc", "--data", str(data / "transcripts.csv"), "--sample-rate", "8000", "--n-mels", "16",
        "--hidden", "24", "--stack", "2", "--epochs", "15", "--lr", "0.01", "--logdir", str(tmp_path / "runs"),
    ])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").glob("ctc-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["ler"] <= 0.2
    assert metrics["extra"]["test"]["beam8"]["ler"] <= 0.2
    wavs = sorted((data / "c").glob("*.wav"))[:3]
    out = runner.invoke(app, ["transcribe", str(run), *map(str, wavs)])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == [w.name for w in wavs]
    assert sum(line.startswith("c") for line in lines) >= 2
    wrong = runner.invoke(app, ["predict", str(run), str(wavs[0])])
    assert wrong.exit_code == 2 and "seqtrain transcribe" in wrong.output


def test_ctc_task_names_a_missing_column(tmp_path):
    (tmp_path / "t.csv").write_text("file,text\na.wav,ab\n")
    result = CliRunner().invoke(app, ["fit", "--task", "ctc", "--data", str(tmp_path / "t.csv"), "--logdir", str(tmp_path)])
    assert result.exit_code == 2 and "--path-col: no column 'path'" in result.output


def test_bench_features_times_decode_features_and_a_training_step(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_features", Path(__file__).resolve().parents[1] / "scripts" / "bench_features.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    files = [write_pcm(tmp_path / f"{i}.wav", tone(300 + 100 * i, 0.3), 2) for i in range(4)]
    rates = bench.measure(files, rounds=1, batch=2)
    assert set(rates) == {"decode", "features", "train step"} and min(rates.values()) > 0


def write_fsdd_archive(folder: Path) -> Path:
    """A v1.0.10.tar.gz laid out as GitHub's: 3,000 tiny recordings under <top>/recordings/."""
    import tarfile

    from seqtrain.tasks.audio import FSDD_SPEAKERS

    root = folder / "src" / "free-spoken-digit-dataset-1.0.10" / "recordings"
    root.mkdir(parents=True)
    names = [f"{d}_{s}_{i}.wav" for d in range(10) for s in FSDD_SPEAKERS for i in range(50)]
    content = write_pcm(folder / "one.wav", tone(300, 0.01), 2).read_bytes()
    for name in names:
        (root / name).write_bytes(content)
    archive = folder / "mirror" / "v1.0.10.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root.parent, arcname=root.parent.name)
    return archive


def test_fsdd_downloads_through_a_mirror_checks_the_recordings_and_splits_them(tmp_path):
    from seqtrain.tasks import build_config
    from seqtrain.tasks.audio import fsdd_problem, fsdd_recordings, fsdd_split

    archive = write_fsdd_archive(tmp_path)
    config = build_config("fsdd", {"mirror": str(archive.parent)})
    files = fsdd_recordings(config, quiet=True)
    assert len(files) == 3000
    train, test = fsdd_split(files, "index", "")
    assert (len(train), len(test)) == (2700, 300) and all(int(f.stem.split("_")[2]) < 5 for f in test)
    train, test = fsdd_split(files, "speakers", "george,theo")
    assert (len(train), len(test)) == (2000, 1000)
    with pytest.raises(SeqtrainError, match="--test-speakers must name some but not all"):
        fsdd_split(files, "speakers", "bob")
    assert fsdd_problem(tmp_path / "src") is None
    next((tmp_path / "src").glob("*/recordings/9_*.wav")).unlink()
    assert fsdd_problem(tmp_path / "src") == "2,999 recordings named {digit}_{speaker}_{index}.wav, expected 3,000"
