"""Training throughput: seqtrain against two minimal hand-written PyTorch loops, side by side.

The model is the classic one from the RNN lectures: Embedding(10000, 32) ->
LSTM(32) -> Dense(1), reviews capped at 500 tokens. The three contenders
train on the same reviews in one process, interleaved over several rounds,
and the best round of each is reported (these machines are noisy):

- pad500:  every review padded to 500 tokens (the Keras `pad_sequences` way),
- bucketed: a hand-written loop with length buckets, padded per batch,
- seqtrain: the real Trainer over its SequenceLoader (bucketing, masking,
  clipping, TensorBoard logging included),
- seqtrain-packed: the same with pack_padded_sequence instead of masking,
- seqtrain-nn: the same with nn.LSTM's own kernel (`--kernel torch`; `auto`, above, trains with the
  fused CPU kernel of models/fused.py where its compiled loop builds),
- keras (when installed): Keras 3's `model.fit` on the same model, padded to 500,
  on TensorFlow when it is installed (`pip install tensorflow-cpu keras`), else on
  Keras' torch backend (step by step in Python: timed on fewer reviews); each Keras round
  runs in a fresh process of its own, so TensorFlow's runtime never shares a process with
  the PyTorch contenders (in one process it halved their rates),
- keras-xla (on TensorFlow): the same with `jit_compile=True`, which Keras leaves off on CPU by default:
  the strongest setting a Keras user has, so every ratio is also taken against it. Its own process too,
  the same thread count, and the XLA program compiled on a warm-up batch before the timed epoch,
- seqtrain-bf16 (where the CPU has native bfloat16, avx512_bf16 or AMX): seqtrain with `--precision bf16`.

    python scripts/bench_train.py [--data-dir ../shared/data/imdb] [--examples 3200] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

TENSORFLOW = importlib.util.find_spec("tensorflow") is not None  # looked up before the stand-in below hides it
if __name__ == "__main__" and "--keras-worker" not in sys.argv:
    # TensorBoard (imported by seqtrain) loads TensorFlow where it is installed, as it is for the Keras rows: keep
    # its runtime out of the PyTorch contenders' process (see train_keras); TensorBoard uses its own stand-in.
    sys.modules["tensorflow"] = None

from seqtrain.data.batching import SequenceLoader, bucket_batches, pad_batch
from seqtrain.models.fused_loop import compiled_loop
from seqtrain.tasks import build_config, make_task
from seqtrain.tasks.classification import ClassifierMeta
from seqtrain.training.device import cpu_has_native_bf16
from seqtrain.training.tensorboard import RunLogger
from seqtrain.training.trainer import Trainer, make_optimizer

MAX_LEN, VOCAB, BATCH = 500, 10000, 64


class SeedsModel(nn.Module):
    """Embedding(10000, 32) -> LSTM(32) -> Linear(1), reading the state at each review's end."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 32, batch_first=True)
        self.head = nn.Linear(32, 1)

    def forward(self, tokens, lengths=None):
        out, (h, _) = self.lstm(self.embedding(tokens))
        last = h[-1] if lengths is None else out[torch.arange(len(out)), lengths - 1]
        return self.head(last).squeeze(-1)


def reviews(data_dir: str | None, n: int) -> tuple[list[torch.Tensor], torch.Tensor, str]:
    """Real IMDB reviews when a data dir is given, else synthetic ones with IMDB's length spread."""
    if data_dir:
        task = make_task(build_config("imdb", {"data": data_dir, "max_vocab": VOCAB, "max_len": MAX_LEN, "val_split": 0.0}))
        train = task.prepare(quiet=True).train
        return list(train.sequences[:n]), train.targets[:n], f"IMDB ({data_dir})"
    g = torch.Generator().manual_seed(0)
    lengths = (torch.distributions.LogNormal(5.3, 0.7).sample((n,)).clamp(10, MAX_LEN)).long()
    seqs = [torch.randint(2, VOCAB, (int(k),), generator=g) for k in lengths]
    return seqs, torch.randint(0, 2, (n,), generator=g), "synthetic (IMDB-like lengths)"


def front_padded(seqs, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """[N, MAX_LEN]: each sequence's last MAX_LEN tokens at the end, zeros in front, as Keras' `pad_sequences`."""
    padded = torch.zeros(len(seqs), MAX_LEN, dtype=dtype)
    for i, s in enumerate(seqs):
        kept = s[-MAX_LEN:]
        padded[i, MAX_LEN - len(kept) :] = kept
    return padded


def lectures_keras_model(keras):
    """The lectures' model in Keras 3, uncompiled: Embedding(VOCAB, 32) -> LSTM(32) -> Dense(1, sigmoid)."""
    return keras.Sequential(
        [keras.Input((MAX_LEN,), dtype="int32"), keras.layers.Embedding(VOCAB, 32), keras.layers.LSTM(32),
         keras.layers.Dense(1, activation="sigmoid")]
    )


def train_pad500(seqs, targets) -> float:
    model = SeedsModel()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    # Keras pads at the front, so the last step is real data; the loop reads the final state.
    padded = front_padded(seqs)
    order = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for i in range(0, len(seqs), BATCH):
        idx = order[i : i + BATCH]
        loss = nn.functional.binary_cross_entropy_with_logits(model(padded[idx]), targets[idx].float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return len(seqs) / (time.perf_counter() - start)


def train_bucketed(seqs, targets) -> float:
    model = SeedsModel()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    start = time.perf_counter()
    for idx in bucket_batches([len(s) for s in seqs], BATCH, torch.Generator().manual_seed(0)):
        tokens, lengths = pad_batch([seqs[i] for i in idx])
        loss = nn.functional.binary_cross_entropy_with_logits(model(tokens, lengths), targets[idx].float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return len(seqs) / (time.perf_counter() - start)


def train_seqtrain(seqs, targets, packing: str = "off", kernel: str = "auto", precision: str = "32") -> float:
    # the lectures' model: one LSTM(32) read at the last step, no dropout (the imdb task's other defaults off)
    settings = {"cell": "lstm", "bidirectional": False, "dropout": 0.0, "embed_dim": 32, "hidden": 32, "pooling": "last",
                "batch_size": BATCH, "max_vocab": VOCAB, "epochs": 1, "device": "cpu", "packing": packing,
                "lr": 1e-3, "lr_schedule": "constant", "kernel": kernel, "precision": precision}
    task = make_task(build_config("imdb", settings))
    config = task.config
    task.meta = ClassifierMeta(["<pad>", "<unk>"] + ["w"] * (VOCAB - 2), ["neg", "pos"])  # what loading data sets
    model = task.build_model(task.meta)
    trainer = Trainer(task)
    loader = SequenceLoader(seqs, targets, BATCH, shuffle=True, seed=0)
    with tempfile.TemporaryDirectory() as logdir:
        log = RunLogger(Path(logdir))
        start = time.perf_counter()
        trainer.train_epoch(model, loader, torch.device("cpu"), make_optimizer(config.train, model.parameters()), log)
        elapsed = time.perf_counter() - start
        log.close()
    return len(seqs) / elapsed


def keras_backend() -> str | None:
    """The backend the Keras row runs on: TensorFlow where installed (Keras' home), else torch; None without Keras."""
    if importlib.util.find_spec("keras") is None:
        return None
    default = "tensorflow" if TENSORFLOW else "torch"
    return os.environ.setdefault("KERAS_BACKEND", default)


def train_keras(seqs, targets, threads: int, xla: bool = False) -> float:
    """Keras 3 on the same reviews, padded to 500 as `pad_sequences` does, in a process of its own.

    Each round starts a fresh Python process that times one epoch of `model.fit` after a warm-up
    batch: TensorFlow's thread pools and oneDNN/OpenMP runtime, loaded into this process, would
    also slow the PyTorch contenders here (by about half, measured), and no user trains with both
    frameworks in one process. `xla` compiles the model with XLA (`jit_compile=True`, TensorFlow only).
    """
    with tempfile.TemporaryDirectory() as folder:
        arrays = Path(folder) / "reviews.pt"
        torch.save({"x": front_padded(seqs, torch.int32), "y": targets.float()}, arrays)
        command = [sys.executable, __file__, "--keras-worker", str(arrays), "--threads", str(threads)]
        worker = subprocess.run(command + (["--xla"] if xla else []), capture_output=True, text=True, check=True,
                                env=os.environ.copy())
    return float(worker.stdout.strip().splitlines()[-1])


def keras_worker(arrays: str, threads: int, xla: bool = False) -> None:
    """One Keras epoch over the saved reviews on `threads` threads (0: the backend's default), with XLA where `xla`;
    prints samples per second as the last line.

    The warm-up batch traces (and with XLA compiles) the training step, so the timed epoch runs compiled code:
    only the epoch's last, shorter batch may still compile a program of its own shape.
    """
    if threads and keras_backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif threads:
        torch.set_num_threads(threads)
    import keras

    data = torch.load(arrays, weights_only=True)
    x, y = data["x"].numpy(), data["y"].numpy()
    model = lectures_keras_model(keras)
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=xla)
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=True)
    print(len(x) / (time.perf_counter() - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="an IMDB data dir (aclImdb/ or its archive); synthetic reviews without")
    parser.add_argument("--examples", type=int, default=3200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keras-examples", type=int, default=640, help="reviews for the (slow) Keras run")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for every contender, Keras' process included (0: each framework's default; "
                        "`seqtrain fit` picks 1 for this model)")
    parser.add_argument("--keras-worker", metavar="ARRAYS", help=argparse.SUPPRESS)  # the Keras round's own process
    parser.add_argument("--xla", action="store_true", help=argparse.SUPPRESS)  # that process compiles with XLA
    args = parser.parse_args()
    if args.keras_worker:
        return keras_worker(args.keras_worker, args.threads, args.xla)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    compiled = compiled_loop() is not None  # built (or loaded) now, not inside the first seqtrain round
    seqs, targets, source = reviews(args.data_dir, args.examples)
    mean_len = sum(len(s) for s in seqs) / len(seqs)
    print(f"data: {source}, {len(seqs)} reviews, mean length {mean_len:.0f} tokens (cap {MAX_LEN}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, fused loop {'compiled' if compiled else 'in Python'}")
    contenders = {
        "pad500": train_pad500,
        "bucketed": train_bucketed,
        "seqtrain": train_seqtrain,
        "seqtrain-packed": lambda s, t: train_seqtrain(s, t, packing="on"),
        "seqtrain-nn": lambda s, t: train_seqtrain(s, t, kernel="torch"),
    }
    if cpu_has_native_bf16():
        contenders["seqtrain-bf16"] = lambda s, t: train_seqtrain(s, t, precision="bf16")
    else:
        print("seqtrain-bf16: left out, this CPU has no native bfloat16 (avx512_bf16 or amx_bf16)")
    backend = keras_backend()
    if backend is None:
        print("keras: not installed (pip install tensorflow-cpu keras for the Keras row)")
    else:
        # On its torch backend Keras runs this LSTM step by step in Python: time it on fewer reviews.
        subset = len(seqs) if backend == "tensorflow" else min(len(seqs), args.keras_examples)
        contenders[f"keras-{backend}"] = lambda s, t: train_keras(s[:subset], t[:subset], args.threads)
        if backend == "tensorflow":
            contenders["keras-xla"] = lambda s, t: train_keras(s, t, args.threads, xla=True)
        print(f"keras 3 on the {backend} backend, {subset} reviews" + (", and with XLA" if backend == "tensorflow" else ""))
    best = {name: 0.0 for name in contenders}
    for round_ in range(args.rounds):
        for name, run in contenders.items():
            rate = run(seqs, targets)
            best[name] = max(best[name], rate)
            print(f"  round {round_ + 1} {name:18s} {rate:8.0f} samples/s", flush=True)
    print("\nbest of rounds (samples/s):")
    for name, rate in best.items():
        print(f"  {name:18s} {rate:8.0f}")
    hand_best = max(best["pad500"], best["bucketed"])
    print(f"\nseqtrain / pad500          = {best['seqtrain'] / best['pad500']:.2f}x  (target >= 3)")
    print(f"seqtrain / best hand loop  = {best['seqtrain'] / hand_best:.2f}x  (target >= 0.95)")
    print(f"packed / masked (seqtrain) = {best['seqtrain-packed'] / best['seqtrain']:.2f}x  (packing is used only where > 1)")
    print(f"auto / nn kernel (seqtrain) = {best['seqtrain'] / best['seqtrain-nn']:.2f}x")
    if backend is not None:
        print(f"seqtrain / keras 3 ({backend}) = {best['seqtrain'] / best[f'keras-{backend}']:.2f}x  (target >= 5)")
    if "keras-xla" in best:
        print(f"seqtrain / keras-xla       = {best['seqtrain'] / best['keras-xla']:.2f}x  (target >= 3)")
        if "seqtrain-bf16" in best:
            print(f"seqtrain-bf16 / keras-xla  = {best['seqtrain-bf16'] / best['keras-xla']:.2f}x  (target >= 5)")


if __name__ == "__main__":
    main()
