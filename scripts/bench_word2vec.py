"""word2vec training speed: corpus words per second of wall time and per second of CPU time.

    python scripts/bench_word2vec.py --data-dir DIR [--steps 200] [--rounds 3] [--batch-size 4000] [--threads 1]

Runs the word2vec task's own sampler, model and optimizer for `--steps` batches of IMDB reviews
(train + unsup, as `seqtrain fit --task word2vec --data-dir DIR` reads them; the tokenized corpus is
cached after the first run), interleaved in rounds with the step seqtrain used before (the same loss
through autograd: sparse embedding gradients with a row per lookup, which the optimizer merges),
both from the same weights on the same batches. Words per CPU second is what the machine delivers to this
process; on a shared machine it is the steadier figure, and on an idle one the two agree.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from seqtrain.models.skipgram import SkipGram, SkipGramBatch
from seqtrain.tasks import build_config, make_task


def previous_loss(model: SkipGram, batch: SkipGramBatch) -> torch.Tensor:
    """The loss as autograd computed it before: shifted rows of sparse embedding lookups."""
    center = model.in_vectors(batch.tokens)
    context = model.out_vectors(batch.tokens)
    count = len(batch.tokens)
    positive = center.new_zeros(())
    for k in range(min(len(batch.right), count - 1)):
        offset = k + 1
        to_right = (center[:-offset] * context[offset:]).sum(-1)
        to_left = (center[offset:] * context[:-offset]).sum(-1)
        positive = positive + (F.logsigmoid(to_right) * batch.right[k, : count - offset]).sum()
        positive = positive + (F.logsigmoid(to_left) * batch.left[k, : count - offset]).sum()
    negative = torch.bmm(model.out_vectors(batch.negatives), center.unsqueeze(2)).squeeze(2)
    return -(positive + (F.logsigmoid(-negative).sum(-1) * batch.weights).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = make_task(build_config("word2vec", {"data_dir": args.data_dir, "batch_size": args.batch_size}))
    data = task.prepare(quiet=True)
    torch.manual_seed(task.config.train.seed)
    model = task.build_model(data.meta)
    before = copy.deepcopy(model)
    loader = data.train
    runs = {  # model, optimizer, loss
        "now": (model, task.optimizer(model), lambda b: model(b)),
        "before": (before, task.optimizer(before), lambda b: previous_loss(before, b)),
    }
    print(f"{args.steps} batches of {args.batch_size} words a round, vocabulary {len(data.meta.vocab):,}, {args.threads} thread(s)")
    totals = {name: [0, 0.0, 0.0] for name in runs}  # words, wall, CPU
    for _, optimizer, loss_of in runs.values():  # untimed: the optimizers' state is allocated and touched
        for _, batch in zip(range(10), loader):
            optimizer.zero_grad()
            loss_of(batch).backward()
            optimizer.step()
    for round_ in range(args.rounds):
        for name, (_, optimizer, loss_of) in runs.items():
            loader.set_epoch(round_)  # the same batches for both
            words, losses = 0, 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            for index, batch in enumerate(loader):
                if index >= args.steps:
                    break
                optimizer.zero_grad()
                loss = loss_of(batch)
                loss.backward()
                optimizer.step()
                words += batch.words
                losses += loss.item()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            for i, value in enumerate((words, wall, cpu)):
                totals[name][i] += value
            print(f"round {round_ + 1} {name:6}: {words / wall:9,.0f} words/s, {words / cpu:9,.0f} words per CPU second "
                  f"(loss {losses / args.steps:,.1f} a batch)")
    rates = {name: (words / wall, words / cpu) for name, (words, wall, cpu) in totals.items()}
    print(f"all rounds: now {rates['now'][0]:,.0f} words/s, {rates['now'][1]:,.0f} per CPU second; before "
          f"{rates['before'][0]:,.0f} words/s, {rates['before'][1]:,.0f} per CPU second; now/before "
          f"{rates['now'][0] / rates['before'][0]:.2f}x wall, {rates['now'][1] / rates['before'][1]:.2f}x CPU")


if __name__ == "__main__":
    main()
