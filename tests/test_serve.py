"""`seqtrain serve`: each ability's route, batching of concurrent requests, 4xx JSON for bad input, auth, streaming,
and a SIGTERM that drains and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqtrain.inference import load_trained
from tiny_runs import tiny_runs

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from seqtrain.serving.app import ServeSettings, build_app  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory, imdb_dir) -> dict[str, Path]:
    return tiny_runs(tmp_path_factory, imdb_dir)


@pytest.fixture(scope="module")
def trained(runs):
    return {name: load_trained(path / "best.pt", "cpu") for name, path in runs.items()}


def serve(trained, calls, **settings):
    """Run `calls(client)` against a fresh in-process app (its batching worker lives on this event loop)."""
    app = build_app(ServeSettings({}, **settings), trained)

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await calls(client)

    return asyncio.run(main())


def batch_sizes(metrics: str, run: str) -> tuple[int, float]:
    """(model calls, inputs) for a run, from the Prometheus text."""
    count = re.search(rf'seqtrain_batch_size_count{{run="{run}"}} (\d+)', metrics)
    total = re.search(rf'seqtrain_batch_size_sum{{run="{run}"}} (\S+)', metrics)
    return int(count.group(1)), float(total.group(1))


def test_each_ability_answers_like_the_cli(trained):
    rows = [[float(i) / 10] for i in range(100)]

    async def calls(client):
        return (
            await client.get("/health"),
            await client.post("/v1/imdb/predict", json={"texts": ["A wonderful film", "Awful"], "top_k": 2}),
            await client.post("/v1/pairs/translate", json={"texts": ["3 plus 4"]}),
            await client.post("/v1/sine/forecast", json={"rows": rows}),
            await client.post("/v1/charlm/generate", json={"prime": "the ", "length": 40, "seed": 3}),
            await client.get("/openapi.json"),
        )

    health, predict, translate, forecast, generate, docs = serve(trained, calls)
    assert health.json()["runs"] == {"imdb": "predict", "charlm": "generate", "pairs": "translate", "sine": "forecast"}
    imdb, pairs, sine, charlm = trained["imdb"], trained["pairs"], trained["sine"], trained["charlm"]
    expected = imdb.task.predict(imdb.model, ["A wonderful film", "Awful"], imdb.device, 2)
    got = predict.json()["predictions"]
    assert [[p["label"] for p in row] for row in got] == [[p.label for p in row] for row in expected]
    assert got[0][0]["probability"] == pytest.approx(expected[0][0].probability, abs=1e-6)
    assert translate.json()["translations"] == pairs.task.translate(pairs.model, ["3 plus 4"], pairs.device)
    import numpy as np

    window = np.asarray(rows[-sine.task.meta.window :], dtype=np.float32)[None]
    assert forecast.json()["forecast"] == pytest.approx(sine.task.forecast_windows(sine.model, window, sine.device)[0])
    assert generate.text == "".join(charlm.task.generate(charlm.model, "the ", 40, 1.0, None, 3))
    assert {"/v1/imdb/predict", "/v1/charlm/generate", "/health", "/metrics"} <= set(docs.json()["paths"])


def test_concurrent_requests_are_merged_into_batches(trained):
    async def calls(client):
        texts = [{"texts": [f"review number {i} was great"]} for i in range(16)]
        answers = await asyncio.gather(*(client.post("/v1/imdb/predict", json=body) for body in texts))
        return answers, (await client.get("/metrics")).text

    answers, metrics = serve(trained, calls, max_batch=32, max_wait_ms=200)
    assert all(a.status_code == 200 for a in answers)
    batches, inputs = batch_sizes(metrics, "imdb")
    assert inputs == 16 and batches < 16  # several requests shared a model call
    answers, metrics = serve(trained, calls, max_batch=1)
    assert batch_sizes(metrics, "imdb") == (16, 16)  # batching off: one call per request



def test_a_merged_batch_answers_each_text_as_predict_alone_would(trained):
    run = trained["imdb"]
    texts = ["good", "a dull and far too long film " * 30, "fine acting", "bad " * 200, "ok"]

    async def calls(client):
        answers = await asyncio.gather(*(client.post("/v1/imdb/predict", json={"texts": [t]}) for t in texts))
        return [a.json()["predictions"][0][0] for a in answers], (await client.get("/metrics")).text

    served, metrics = serve(trained, calls, max_batch=32, max_wait_ms=200)
    assert batch_sizes(metrics, "imdb")[0] < len(texts)  # merged, then split by length inside the call
    alone = [run.task.predict(run.model, [t], run.device)[0][0] for t in texts]
    assert [s["label"] for s in served] == [p.label for p in alone]
    assert [s["probability"] for s in served] == pytest.approx([p.probability for p in alone], abs=1e-5)
    assert run.task.vocab() is run.task.vocab()  # built once per run, not per call

BAD = [
    ("/v1/imdb/predict", b"{not json", 422, "malformed JSON"),
    ("/v1/imdb/predict", b"[1, 2]", 422, "JSON object"),
    ("/v1/imdb/predict", b'{"texts": []}', 422, "empty"),
    ("/v1/imdb/predict", b'{"texts": "one"}', 422, "texts"),
    ("/v1/imdb/predict", json.dumps({"texts": ["x" * 30_000]}).encode(), 413, "characters"),
    ("/v1/imdb/predict", json.dumps({"texts": ["x"] * 100}).encode(), 413, "100 texts"),
    ("/v1/imdb/predict", b'{"texts": ["' + b"x" * (2 << 20) + b'"]}', 413, "bytes"),
    ("/v1/nobody/predict", b'{"texts": ["x"]}', 404, "no run 'nobody'"),
    ("/v1/imdb/generate", b"{}", 404, "does predict"),
    ("/v1/charlm/generate", b'{"length": 100000}', 413, "length"),
    ("/v1/charlm/generate", b'{"prime": "\\u00e9\\u00e9"}', 400, "never saw"),
    ("/v1/charlm/generate", b'{"temperature": 0}', 422, "temperature"),
    ("/v1/pairs/translate", b'{"texts": ["  "]}', 422, "empty text"),
    ("/v1/pairs/translate", b'{"texts": ["1 plus 1"], "beam": 99}', 413, "beam"),
    ("/v1/sine/forecast", b'{"rows": [[1.0]]}', 422, "rows"),
    ("/v1/sine/forecast", b'{"rows": [[1.0, 2.0]]}', 422, "rows"),
]


def test_every_bad_input_gets_a_4xx_json_error_and_the_server_keeps_serving(trained):
    async def calls(client):
        headers = {"content-type": "application/json"}
        answers = [await client.post(path, content=body, headers=headers) for path, body, _, _ in BAD]
        return answers, await client.post("/v1/imdb/predict", json={"texts": ["still here"]})

    answers, after = serve(trained, calls)
    for (path, _, status, words), answer in zip(BAD, answers):
        assert answer.status_code == status and words in answer.json()["error"], (path, answer.text)
    assert after.status_code == 200


def test_a_token_guards_the_model_routes_and_metrics(trained):
    async def calls(client):
        body = {"texts": ["x"]}
        return (
            await client.post("/v1/imdb/predict", json=body),
            await client.post("/v1/imdb/predict", json=body, headers={"authorization": "Bearer wrong"}),
            await client.post("/v1/imdb/predict", json=body, headers={"authorization": "Bearer s3cret"}),
            await client.get("/metrics"),
            await client.get("/health"),
        )

    none, wrong, right, metrics, health = serve(trained, calls, token="s3cret")
    assert none.status_code == wrong.status_code == metrics.status_code == 401 and "Bearer" in none.json()["error"]
    assert right.status_code == 200 and health.status_code == 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_server_streams_generation_and_drains_on_sigterm(runs, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "seqtrain", "serve", f"lm={runs['charlm']}", f"imdb={runs['imdb']}", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"SEQTRAIN_CACHE": str(tmp_path)})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        chunks = []
        with httpx.stream("POST", f"{base}/v1/lm/generate", json={"prime": "the", "length": 1500, "seed": 1}, timeout=30) as response:
            assert response.headers["content-type"].startswith("text/plain")
            for chunk in response.iter_text():
                chunks.append(chunk)
                if len(chunks) == 1:  # a request still in flight when the signal comes
                    server.send_signal(signal.SIGTERM)
        assert "".join(chunks).startswith("the") and len("".join(chunks)) == 3 + 1500
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()


def test_merged_texts_run_in_groups_of_similar_length_and_answer_in_order():
    from seqtrain.serving.abilities import by_length

    texts = ["x" * 500, "a", "y" * 60, "b" * 45, "z" * 20000, "c", "w" * 480]
    calls = []
    answers = by_length(texts, lambda group: calls.append(group) or [len(t) for t in group])
    assert answers == [len(t) for t in texts]
    assert ["z" * 20000] in calls  # the long review runs alone: the others would step through its padding
    assert len(calls) < len(texts) - 1  # the short ones share calls


def test_length_groups_are_the_cheapest_split_of_the_sorted_lengths():
    import itertools
    import random

    from seqtrain.serving.abilities import CALL_COST, ROW_COST, STEP_COST, length_groups

    def cost(groups, lengths):
        return sum(CALL_COST + max(lengths[i] for i in g) * (STEP_COST + ROW_COST * len(g)) for g in groups)

    rng = random.Random(0)
    for _ in range(20):
        lengths = [rng.choice([40, 300, 1500, 6000]) + rng.randrange(200) for _ in range(8)]
        groups = length_groups(lengths)
        assert sorted(i for g in groups for i in g) == list(range(8))
        order = sorted(range(8), key=lengths.__getitem__)
        splits = (
            [order[a:b] for a, b in zip((0, *cuts), (*cuts, 8))]
            for k in range(8) for cuts in itertools.combinations(range(1, 8), k)
        )
        assert cost(groups, lengths) == pytest.approx(min(cost(s, lengths) for s in splits))
    assert length_groups([1000] * 40) == [list(range(40))]  # equal lengths: one call
