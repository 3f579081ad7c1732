"""Word language model training speed: full softmax against adaptive softmax, side by side in one process.

Both models are the wikitext2 task's (2x200 LSTM by default) on the real
WikiText-2 training stream; each round trains `--steps` steps of one, then of
the other (interleaved, so a change in background load hits both), through
the task's own step and the trainer's optimizer. It also checks that the
adaptive model's log-probabilities are normalised (exact, not sampled).

    python scripts/bench_softmax.py --data ../shared/data/wikitext-2
    python scripts/bench_softmax.py --data ../shared/data/wikitext-2 --batch-size 64 --rounds 3 --steps 10
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from seqtrain.tasks import build_config, make_task
from seqtrain.tasks.base import StepContext
from seqtrain.training.trainer import make_optimizer


def train_rate(task, model, optimizer, chunks: list, steps: int) -> float:
    """Tokens per second over `steps` training steps (state carried and detached, as the trainer does)."""
    model.train()
    state, tokens = None, 0
    started = time.perf_counter()
    for batch in chunks[:steps]:
        result = task.step(model, batch, state, StepContext(True))
        state = tuple(s.detach() for s in result.state) if isinstance(result.state, tuple) else result.state.detach()
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), task.config.train.clip)
        optimizer.step()
        tokens += result.count
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder with WikiText-2's train/valid/test .txt(.gz)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="training steps per model per round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tasks, models, optimizers = {}, {}, {}
    for output in ("full", "adaptive"):
        torch.manual_seed(0)
        task = make_task(build_config("wikitext2", {"data": args.data, "output": output, "batch_size": args.batch_size}))
        data = task.prepare(quiet=True)
        tasks[output], models[output] = task, task.build_model(data.meta)
        optimizers[output] = make_optimizer(task.config.train, models[output].parameters())
    chunks = list(data.train)[: args.steps + 1]
    cutoffs = models["adaptive"].decoder.cutoffs[:-1]
    m = tasks["full"].config.model
    print(f"model {m.layers}x{m.hidden} {m.cell}, vocabulary {len(data.meta.vocab):,}, batch {args.batch_size}, "
          f"bptt {tasks['full'].config.train.bptt}, {args.threads} thread(s), adaptive cutoffs {cutoffs}, "
          f"load average before {os.getloadavg()[0]:.2f}")
    for output, model in models.items():
        print(f"  {output:8} parameters {sum(p.numel() for p in model.parameters()):,}")
    with torch.no_grad():
        models["adaptive"].eval()
        scores, _ = models["adaptive"](chunks[0][0][:2, :5])
        total = scores.exp().sum(-1)
        print(f"adaptive probabilities sum to 1 within {float((total - 1).abs().max()):.1e} over all {scores.shape[-1]:,} words")

    rates: dict[str, list[float]] = {"full": [], "adaptive": []}
    for round_index in range(args.rounds):
        for output in rates:
            rates[output].append(train_rate(tasks[output], models[output], optimizers[output], chunks, args.steps))
        print(f"round {round_index + 1}: full {rates['full'][-1]:,.0f} tok/s, adaptive {rates['adaptive'][-1]:,.0f} tok/s, "
              f"ratio {rates['adaptive'][-1] / rates['full'][-1]:.2f}x", flush=True)
    best = {output: max(values) for output, values in rates.items()}
    print(f"best round: full {best['full']:,.0f} tok/s, adaptive {best['adaptive']:,.0f} tok/s: "
          f"adaptive is {best['adaptive'] / best['full']:.2f}x; load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
