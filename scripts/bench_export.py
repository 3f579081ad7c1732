"""Batch-1 latency of an exported classifier: PyTorch eager against onnxruntime and TorchScript, float32 and int8.

    seqtrain export RUN --format onnx --quantize int8 --out ONNX_DIR --force
    seqtrain export RUN --format torchscript --quantize int8 --out TS_DIR --force
    python scripts/bench_export.py RUN --onnx ONNX_DIR --torchscript TS_DIR --reviews ../shared/data/imdb/aclImdb-labeled.tar.gz

One real test review per call, every variant on the same review in turn
(interleaved), one thread each (torch and onnxruntime alike). Prints the
median latency per variant, its ratio to eager PyTorch, the file sizes, and
the test accuracy the int8 exports recorded in their sidecars.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import reviews  # noqa: E402

from seqtrain.data.text import Vocab, tokenize  # noqa: E402
from seqtrain.export.core import load_runner, plain_recurrent  # noqa: E402
from seqtrain.export.families import Probabilities  # noqa: E402
from seqtrain.inference import load_trained  # noqa: E402
from seqtrain.training.runs import resolve_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--onnx", type=Path, help="an export made with --format onnx --quantize int8")
    parser.add_argument("--torchscript", type=Path, help="an export made with --format torchscript --quantize int8")
    parser.add_argument("--reviews", type=Path, required=True)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    trained = load_trained(resolve_checkpoint(args.run), "cpu")
    meta = trained.task.meta
    vocab = Vocab(meta.vocab)
    inputs = []
    for text in reviews(args.reviews, args.count):
        ids = vocab.encode(tokenize(text))[-meta.max_len if meta.max_len else 0 :] or [vocab.unk_index]
        inputs.append((torch.tensor([ids]), torch.tensor([len(ids)])))
    eager = Probabilities(trained.model, meta.multi_label).eval()
    variants = {"PyTorch eager (as seqtrain predict)": lambda x: eager(*x)}
    plain = Probabilities(plain_recurrent(load_trained(resolve_checkpoint(args.run), "cpu").model), meta.multi_label)
    variants["PyTorch eager, nn kernels"] = lambda x: plain(*x)
    files = {}
    for folder, ext in ((args.onnx, "onnx"), (args.torchscript, "pt")):
        if folder is None:
            continue
        sidecar = json.loads((folder / "seqtrain.json").read_text())
        for kind, name in (("float32", f"classifier.{ext}"), ("int8", f"classifier.int8.{ext}")):
            runner = load_runner(folder / name, threads=1)
            label = f"{'onnxruntime' if ext == 'onnx' else 'TorchScript'} {kind}"
            variants[label] = lambda x, run=runner: run((x[0].numpy(), x[1].numpy()))
            files[label] = ((folder / name).stat().st_size, sidecar["quantized"][kind])
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.no_grad():
        for x in inputs[:5]:
            for run in variants.values():
                run(x)
        for x in inputs:
            for name, run in variants.items():
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["PyTorch eager (as seqtrain predict)"])
    tokens = statistics.median(int(x[1]) for x in inputs)
    print(f"batch 1, {len(inputs)} IMDB test reviews (median {tokens:.0f} tokens), 1 thread, interleaved")
    print(f"{'variant':<38} {'median ms':>9} {'speed vs eager':>14} {'file MiB':>9} {'test accuracy':>13}")
    for name, values in times.items():
        median = statistics.median(values)
        size, accuracy = files.get(name, (None, None))
        print(f"{name:<38} {median * 1000:9.2f} {base / median:13.2f}x {size / 2**20 if size else float('nan'):9.2f} "
              f"{accuracy if accuracy is not None else float('nan'):13.4f}")


if __name__ == "__main__":
    main()
