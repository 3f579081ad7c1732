"""The lectures' IMDB recipe in Keras 3, on exactly the reviews and tokens seqtrain trains on.

Embedding(10000, 32) -> LSTM(32) -> Dense(1, sigmoid), reviews padded and
truncated at the front to 500 tokens (`pad_sequences`' defaults), RMSprop
lr 1e-3 (Keras' constants), batch 128, 10 epochs, `validation_split=0.2`.
The tokens come from seqtrain's own IMDB preparation (its tokenizer and
10,000-word vocabulary), so the two frameworks differ only in their training
loops: compare with

    seqtrain fit --task imdb --data DIR --cell lstm --embed-dim 32 --hidden 32 --no-bidirectional \
        --pooling last --dropout 0 --max-vocab 10000 --max-len 500 --optimizer rmsprop --lr 1e-3 \
        --batch-size 128 --epochs 10 --val-split 0.2 --lr-schedule constant --clip 0 --seed S

For each seed it prints the validation accuracy by epoch and two test
accuracies: of the model after the last epoch (what the lectures report) and
of the weights of the best validation epoch (what seqtrain evaluates).

    pip install tensorflow-cpu keras   # Keras' home backend; KERAS_BACKEND=torch also works, slowly
    python scripts/keras_recipe.py --data-dir ../shared/data/imdb --seeds 0 1 2 [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from bench_train import MAX_LEN, VOCAB, front_padded, lectures_keras_model  # the sibling script

from seqtrain.tasks import build_config, make_task


def imdb_arrays(data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    task = make_task(build_config("imdb", {"data": data_dir, "max_vocab": VOCAB, "max_len": MAX_LEN, "val_split": 0.0}))
    data = task.prepare(quiet=True)
    train, test = data.train, data.test
    x, x_test = (front_padded(split.sequences, torch.int32).numpy() for split in (train, test))  # as pad_sequences
    return x, train.targets.numpy().astype("float32"), x_test, test.targets.numpy().astype("float32")


def run_seed(seed: int, x, y, x_test, y_test) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    order = np.random.default_rng(seed).permutation(len(x))  # validation_split takes the last 20% as given
    x, y = x[order], y[order]
    model = lectures_keras_model(keras)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="binary_crossentropy", metrics=["accuracy"])

    class KeepBest(keras.callbacks.Callback):
        best, weights = -1.0, None

        def on_epoch_end(self, epoch, logs=None):
            if logs["val_accuracy"] > self.best:
                self.best, self.weights = logs["val_accuracy"], self.model.get_weights()

    keep = KeepBest()
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=128, epochs=10, validation_split=0.2, callbacks=[keep], verbose=0)
    seconds = time.perf_counter() - start
    final = model.evaluate(x_test, y_test, batch_size=512, verbose=0)[1]
    model.set_weights(keep.weights)
    best = model.evaluate(x_test, y_test, batch_size=512, verbose=0)[1]
    return {"val": history.history["val_accuracy"], "final": final, "best": best, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="an IMDB data dir (aclImdb/ or its archive)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: its own choice)")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    x, y, x_test, y_test = imdb_arrays(args.data_dir)
    import keras

    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"keras {keras.__version__} on {keras.backend.backend()}; {len(x)} train / {len(x_test)} test reviews")
    finals, bests = [], []
    for seed in args.seeds:
        r = run_seed(seed, x, y, x_test, y_test)
        finals.append(r["final"])
        bests.append(r["best"])
        val = ", ".join(f"{100 * v:.1f}" for v in r["val"])
        print(f"seed {seed}: test {100 * r['final']:.2f}% after epoch 10, {100 * r['best']:.2f}% at the best "
              f"validation epoch; validation by epoch {val}; {r['seconds']:.0f} s of fit", flush=True)
    print(f"mean over {len(args.seeds)} seeds: test {100 * np.mean(finals):.2f}% after epoch 10, "
          f"{100 * np.mean(bests):.2f}% at the best validation epoch")


if __name__ == "__main__":
    main()
