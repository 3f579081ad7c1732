"""Greedy vs beam search on a trained seq2seq run's test split: BLEU and decoding time, side by side.

    python scripts/beam_bleu.py RUN_OR_CKPT [--beams 1,3,5] [--length-penalty 1.0] [--logdir runs]
"""

from __future__ import annotations

import argparse
import time

from seqtrain.bleu import corpus_bleu
from seqtrain.data.text import tokenize
from seqtrain.inference import load_trained
from seqtrain.training.runs import resolve_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", nargs="?")
    parser.add_argument("--beams", default="1,3,5")
    parser.add_argument("--length-penalty", type=float, default=1.0)
    parser.add_argument("--logdir", default="runs")
    args = parser.parse_args()

    checkpoint = resolve_checkpoint(args.run, args.logdir)
    trained = load_trained(checkpoint, "cpu")
    task, model, device = trained.require("translate"), trained.model, trained.device
    test = task.prepare(task.meta, quiet=True).test
    sources = [source for source, _ in test.pairs]
    references = [[tokenize(r) for r in refs] for refs in test.references]
    print(f"{checkpoint}: {len(sources)} test pairs")
    print("| decoding | BLEU | exact match (any reference) | time | time vs greedy |")
    print("|---|---|---|---|---|")
    greedy_time = None
    for beam in (int(b) for b in args.beams.split(",")):
        started = time.perf_counter()
        outputs = task.translate(model, sources, device, beam=beam, length_penalty=args.length_penalty)
        elapsed = time.perf_counter() - started
        greedy_time = greedy_time or elapsed
        bleu = corpus_bleu([tokenize(o) for o in outputs], references)
        exact = sum(tokenize(o) in refs for o, refs in zip(outputs, references)) / len(outputs)
        name = "greedy" if beam == 1 else f"beam {beam}"
        print(f"| {name} | {bleu:.2f} | {exact:.3f} | {elapsed:.1f} s | {elapsed / greedy_time:.1f}x |")


if __name__ == "__main__":
    main()
