"""Tag sentences with a tagger exported by `seqtrain export RUN --format onnx`, without seqtrain.

Needs only numpy and onnxruntime: the tokenizer, vocabularies, casing and
character rules, tags and the CRF's scores come from the export's
seqtrain.json; Viterbi decoding is the function below.

    python docs/examples/tag_onnx.py EXPORT_DIR "John lives in Paris ." "Mary met Bob ."

Prints token<TAB>tag lines (tags in the sidecar's `tag_scheme`), a blank line after each sentence.
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
    if sidecar.get("family") != "tagger" or sidecar.get("runtime") != "onnx":
        raise SystemExit(f"{folder} holds a {sidecar.get('family')} export for {sidecar.get('runtime')}, not an ONNX tagger")
    graph = sidecar["graphs"]["tagger"]
    return sidecar, onnxruntime.InferenceSession(str(folder / graph["file"]), providers=["CPUExecutionProvider"])


def casing(token: str, names: list[str]) -> int:
    """The sidecar's casing_rule."""
    if token.isdigit():
        name = "digits"
    elif any(c.isdigit() for c in token):
        name = "has-digit"
    elif token.islower():
        name = "lower"
    elif token.isupper():
        name = "upper"
    elif token[:1].isupper() and token[1:].islower():
        name = "title"
    else:
        name = "other"
    return names.index(name)


def encode(sentences: list[list[str]], sidecar: dict) -> dict[str, np.ndarray]:
    """The graph's inputs for a batch of tokenised sentences, right-padded with 0."""
    words = {w: i for i, w in enumerate(sidecar["vocab"])}
    unk, steps = sidecar["unk_id"], max(map(len, sentences))
    feed = {
        "words": np.zeros((len(sentences), steps), np.int64),
        "casings": np.zeros((len(sentences), steps), np.int64),
        "lengths": np.array([len(s) for s in sentences], np.int64),
    }
    for row, tokens in enumerate(sentences):
        for col, token in enumerate(tokens):
            feed["words"][row, col] = words.get(re.sub(r"\d", "0", token.lower()), unk)
            feed["casings"][row, col] = casing(token, sidecar["casings"])
    if sidecar["chars"] is not None:
        chars, half = {c: i for i, c in enumerate(sidecar["chars"])}, sidecar["max_word_chars"] // 2
        spelled = [[t if len(t) <= 2 * half else t[:half] + t[-half:] for t in tokens] for tokens in sentences]
        feed["chars"] = np.zeros((len(sentences), steps, max(len(t) for s in spelled for t in s)), np.int64)
        for row, tokens in enumerate(spelled):
            for col, token in enumerate(tokens):
                feed["chars"][row, col, : len(token)] = [chars.get(c, unk) for c in token]
    return feed


def viterbi(emissions: np.ndarray, crf: dict) -> list[int]:
    """The highest-scoring tag path of one sentence's emissions [length, tags] under the CRF's scores."""
    start, moves, end = (np.asarray(crf[k], np.float32) for k in ("start", "transitions", "end"))
    score, back = start + emissions[0], []
    for row in emissions[1:]:
        total = score[:, None] + moves  # [from, to]
        back.append(total.argmax(0))
        score = total.max(0) + row
    path = [int((score + end).argmax())]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    return path[::-1]


def tag(folder: Path, texts: list[str]) -> list[list[tuple[str, str]]]:
    sidecar, session = load(folder)
    sentences = [re.findall(sidecar["tokenizer"]["token_pattern"], text) for text in texts]
    kept = [s for s in sentences if s]
    if not kept:
        return [[] for _ in sentences]
    feed = encode(kept, sidecar)
    (emissions,) = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})
    out, found = [], iter(range(len(kept)))
    for tokens in sentences:
        if not tokens:
            out.append([])
            continue
        scores = emissions[next(found), : len(tokens)]
        ids = viterbi(scores, sidecar["crf"]) if sidecar["crf"] else scores.argmax(-1).tolist()
        out.append([(token, sidecar["tags"][i]) for token, i in zip(tokens, ids)])
    return out


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.strip().splitlines()[6].strip())
    for sentence in tag(Path(sys.argv[1]), sys.argv[2:]):
        print("".join(f"{token}\t{tag_}\n" for token, tag_ in sentence))


if __name__ == "__main__":
    main()
