

def test_bench_features_times_decode_features_and_a_training_step(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_features", Path(__file__).resolve().parents[1] / "scripts" / "bench_features.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    files = [write_pcm(tmp_path / f"{i}.wav", tone(300 + 100 * i, 0.3), 2) for i in range(4)]
    rates = bench.measure(files, rounds=1, batch=2)
    assert set(rates) == {"decode", "features", "train step"} and min(rates.values()) > 0
