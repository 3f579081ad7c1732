"""Classify texts with a classifier exported by `seqtrain export RUN --format onnx`, without seqtrain.

Needs only numpy and onnxruntime: the tokenizer rule, vocabulary and labels
come from the export's seqtrain.json.

    python docs/examples/classify_onnx.py EXPORT_DIR "A wonderful film." "Dull and far too long."

Prints one line per text: label<TAB>probability<TAB>text.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime


def load(folder: Path) -> tuple[dict, onnxruntime.InferenceSession]:
    sidecar = json.loads((folder / "seqtrain.json").read_text(encoding="utf-8"))
    if sidecar.get("family") != "classifier" or sidecar.get("runtime") != "onnx":
        raise SystemExit(f"{folder} holds a {sidecar.get('family')} export for {sidecar.get('runtime')}, not an ONNX classifier")
    graph = sidecar["graphs"]["classifier"]
    return sidecar, onnxruntime.InferenceSession(str(folder / graph["file"]), providers=["CPUExecutionProvider"])


def encode(text: str, sidecar: dict, index: dict[str, int]) -> list[int]:
    rule = sidecar["tokenizer"]
    cleaned = re.sub(rule["break_pattern"], " ", text, flags=re.IGNORECASE).lower()
    ids = [index.get(token, sidecar["unk_id"]) for token in re.findall(rule["token_pattern"], cleaned)]
    if sidecar["max_len"]:
        ids = ids[-sidecar["max_len"]:]
    return ids or [sidecar["unk_id"]]


def classify(folder: Path, texts: list[str]) -> list[tuple[str, float]]:
    sidecar, session = load(folder)
    index = {token: i for i, token in enumerate(sidecar["vocab"])}
    encoded = [encode(text, sidecar, index) for text in texts]
    tokens = np.full((len(encoded), max(map(len, encoded))), sidecar["pad_id"], dtype=np.int64)
    for row, ids in enumerate(encoded):
        tokens[row, : len(ids)] = ids
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    (probabilities,) = session.run(None, {"tokens": tokens, "lengths": lengths})
    best = probabilities.argmax(-1)
    return [(sidecar["labels"][i], float(p[i])) for i, p in zip(best, probabilities)]


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.strip().splitlines()[4].strip())
    texts = sys.argv[2:]
    for text, (label, probability) in zip(texts, classify(Path(sys.argv[1]), texts)):
        print(f"{label}\t{probability:.4f}\t{text}")


if __name__ == "__main__":
    main()
