"""word2vec training speed: corpus words per second of wall time and per second of CPU time.

    python scripts/bench_word2vec.py --data-dir DIR [--steps 300] [--batch-size 4000] [--threads 1]

Runs the word2vec task's own sampler, model and sparse Adam for `--steps` batches of IMDB reviews
(train + unsup, as `seqtrain fit --task word2vec --data-dir DIR` reads them; the tokenized corpus is
cached after the first run). Words per CPU second is what the machine delivers to this process; on a
shared machine it is the steadier figure, and on an idle one the two agree.
"""

from __future__ import annotations

import argparse
import time

import torch

from seqtrain.tasks import build_config, make_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = make_task(build_config("word2vec", {"data_dir": args.data_dir, "batch_size": args.batch_size}))
    data = task.prepare(quiet=True)
    model = task.build_model(data.meta)
    optimizer = task.optimizer(model)
    words = pairs = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for index, batch in enumerate(data.train):
        if index >= args.steps:
            break
        optimizer.zero_grad()
        model(batch).backward()
        optimizer.step()
        words += batch.words
        pairs += batch.pairs
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{args.steps} batches of {args.batch_size} words, vocabulary {len(data.meta.vocab):,}, {pairs:,} pairs, "
          f"{args.threads} thread(s)")
    print(f"wall {wall:.1f} s: {words / wall:,.0f} words/s; CPU {cpu:.1f} s: {words / cpu:,.0f} words per CPU second")


if __name__ == "__main__":
    main()
