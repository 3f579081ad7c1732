"""Tagging throughput in tokens per second, CRF against softmax, measured side by side in one process.

For each variant (the conll2003 preset's model with --crf and with --no-crf) it times training steps
(forward, loss, backward, Adam step) and tagging (forward and decoding: Viterbi or argmax) over the
same batches of CoNLL-2003's training file, in interleaved rounds so a shared machine's load falls
on both alike; prints the median of the rounds and the ratio.

    python scripts/bench_tagging.py --data ../shared/data/conll2003 [--batches 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from seqtrain.tasks import build_config, make_task
from seqtrain.tasks.base import StepContext


def variant(data: str, crf: bool, batches: int):
    task = make_task(build_config("conll2003", {"data": data, "crf": crf}))
    loaded = task.prepare(quiet=True)
    torch.manual_seed(0)
    model = task.build_model(loaded.meta)
    optimizer = torch.optim.Adam(model.parameters(), lr=task.config.train.lr)
    return task, model, optimizer, list(itertools.islice(loaded.train, batches))


def train_rate(task, model, optimizer, batches) -> float:
    model.train()
    tokens, started = 0, time.perf_counter()
    for batch in batches:
        result = task.step(model, batch, None, StepContext(True))
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        tokens += result.count
    return tokens / (time.perf_counter() - started)


def tag_rate(model, batches) -> float:
    model.eval()
    tokens, started = 0, time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            emissions = model(batch.words, batch.casings, batch.chars, batch.lengths)
            model.decode(emissions, batch.lengths)
            tokens += int(batch.lengths.sum())
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/conll2003", help="a CoNLL-2003 folder (eng.train ...)")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {name: variant(args.data, crf, args.batches) for name, crf in (("crf", True), ("softmax", False))}
    rates: dict[str, dict[str, list[float]]] = {name: {"train": [], "tag": []} for name in variants}
    for _ in range(args.rounds):
        for name, (task, model, optimizer, batches) in variants.items():
            rates[name]["train"].append(train_rate(task, model, optimizer, batches))
            rates[name]["tag"].append(tag_rate(model, batches))
    print(f"CoNLL-2003 train batches: {args.batches} x {variants['crf'][0].config.train.batch_size} sentences, "
          f"{args.rounds} interleaved rounds, {args.threads} thread(s); median tokens/s")
    print(f"{'':10}{'train':>12}{'tag':>12}")
    for name in variants:
        print(f"{name:10}{statistics.median(rates[name]['train']):12,.0f}{statistics.median(rates[name]['tag']):12,.0f}")
    for what in ("train", "tag"):
        ratio = statistics.median(rates["softmax"][what]) / statistics.median(rates["crf"][what])
        print(f"softmax / crf, {what}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
