"""The benchmarks' own training paths run: a script that drives the Trainer by hand breaks silently otherwise."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    if str(SCRIPTS) not in sys.path:  # as when run: a script imports its siblings
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_train_drives_the_trainer_over_a_few_batches():
    bench = load_script("bench_train")
    generator = torch.Generator().manual_seed(0)
    seqs = [torch.randint(2, bench.VOCAB, (int(n),), generator=generator) for n in torch.randint(5, 40, (2 * bench.BATCH,))]
    targets = torch.randint(0, 2, (len(seqs),), generator=generator)
    assert bench.train_seqtrain(seqs, targets) > 0


def test_bench_kernel_times_nn_fused_and_the_product_floor(monkeypatch):
    bench = load_script("bench_kernel")
    monkeypatch.setitem(bench.SIZES, "tiny", (4, 6, 3, 8))
    results = bench.compare("lstm", bench.SIZES["tiny"], repeats=1)
    assert set(results) == {"train fwd+bwd", "infer fwd"}
    for nn_ms, fused_ms, floor_ms, auto in results.values():
        assert min(nn_ms, fused_ms, floor_ms) > 0 and auto in ("nn", "fused")


def test_keras_recipe_feeds_keras_seqtrains_own_tokens_front_padded(imdb_dir):
    recipe = load_script("keras_recipe")
    x, y, x_test, y_test = recipe.imdb_arrays(str(imdb_dir))
    assert x.shape == (300, recipe.MAX_LEN) and x_test.shape == (120, recipe.MAX_LEN)
    assert sorted(set(y.tolist())) == [0.0, 1.0] and y.mean() == 0.5
    lengths = (x > 0).sum(1)
    assert (x[:, -1] > 0).all() and (lengths < recipe.MAX_LEN).all()  # short reviews: zeros in front, tokens at the end
    long = [torch.arange(1, 601)]
    assert recipe.front_padded(long)[0].tolist() == list(range(101, 601))  # truncated at the front, as pad_sequences does


def test_the_keras_xla_worker_trains_on_a_tiny_input_in_its_own_process(monkeypatch):
    bench = load_script("bench_train")
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
        pytest.skip("the keras-xla row needs TensorFlow and Keras 3, not installed: pip install tensorflow-cpu keras")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    generator = torch.Generator().manual_seed(0)
    seqs = [torch.randint(2, bench.VOCAB, (int(n),), generator=generator) for n in torch.randint(5, 40, (bench.BATCH,))]
    targets = torch.randint(0, 2, (len(seqs),), generator=generator)
    assert bench.train_keras(seqs, targets, threads=1, xla=True) > 0
