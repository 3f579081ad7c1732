"""Transcribe WAV files with a CTC model exported by `seqtrain export RUN --format onnx`, without seqtrain.

Needs only numpy and onnxruntime (and the standard library's `wave`): the
graph holds the log-mel front end and the normalisation, so it takes the
waveform; the symbols, blank and separator come from the export's
seqtrain.json; greedy decoding is the function below. Reads 16-bit PCM WAV
files recorded at the sidecar's sample_rate (resample others first).

    python docs/examples/transcribe_onnx.py EXPORT_DIR one.wav two.wav

Prints one line per file: transcript<TAB>file.
"""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path

import numpy as np
import onnxruntime


def load(folder: Path) -> tuple[dict, onnxruntime.InferenceSession]:
    sidecar = json.loads((folder / "seqtrain.json").read_text(encoding="utf-8"))
    if sidecar.get("family") != "ctc" or sidecar.get("runtime") != "onnx":
        raise SystemExit(f"{folder} holds a {sidecar.get('family')} export for {sidecar.get('runtime')}, not an ONNX CTC model")
    graph = sidecar["graphs"]["ctc"]
    return sidecar, onnxruntime.InferenceSession(str(folder / graph["file"]), providers=["CPUExecutionProvider"])


def read_wav(path: Path, sample_rate: int) -> np.ndarray:
    """A 16-bit PCM WAV file as a mono float32 waveform in [-1, 1)."""
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2 or handle.getframerate() != sample_rate:
            raise SystemExit(f"{path}: needs 16-bit PCM at {sample_rate} Hz")
        samples = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768
    return samples.reshape(-1, handle.getnchannels()).mean(1)


def greedy(log_probs: np.ndarray, blank: int) -> list[int]:
    """The most likely index per frame, repeats merged, blanks dropped."""
    best = log_probs.argmax(-1)
    return [int(s) for i, s in enumerate(best) if s != blank and (i == 0 or s != best[i - 1])]


def transcribe(folder: Path, files: list[Path]) -> list[str]:
    sidecar, session = load(folder)
    out = []
    for file in files:
        waveform = read_wav(file, sidecar["sample_rate"])
        if sidecar["max_samples"]:
            waveform = waveform[: sidecar["max_samples"]]
        log_probs, frames = session.run(None, {"waveforms": waveform[None], "lengths": np.array([len(waveform)], np.int64)})
        ids = greedy(log_probs[0, : frames[0]], sidecar["blank"])
        out.append(sidecar["separator"].join(sidecar["symbols"][i - 1] for i in ids))
    return out


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.strip().splitlines()[8].strip())
    files = [Path(name) for name in sys.argv[2:]]
    for file, text in zip(files, transcribe(Path(sys.argv[1]), files)):
        print(f"{text}\t{file.name}")


if __name__ == "__main__":
    main()
