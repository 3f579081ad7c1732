"""Load test of `seqtrain serve`: K concurrent clients for T seconds, batching on and off side by side, then abuse.

    python scripts/bench_serve.py RUN --reviews ../shared/data/imdb/aclImdb-labeled.tar.gz [--lm LM_RUN]

For each setting (--max-batch N, then --max-batch 1: batching off), in
turn and `--rounds` times interleaved, it starts the server on a loopback
port, drives the predict route with `--clients` concurrent clients sending
one real review each per request for `--seconds`, and prints requests per
second, p50/p99 latency, errors and the server's resident memory at the
start and end of the load (sampled every second). Then a bad-input pass
(malformed JSON, a body past the limit, an unknown run, a wrong ability, a
client that sends its body slowly, and, with --lm, a stream dropped
mid-way) after which the server must still answer. With --lm it also
compares a streamed generation's characters per second with `seqtrain generate`'s.
Everything is bounded: each pass stops by itself, every request has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reviews(path: Path, count: int) -> list[str]:
    """The first `count` test reviews of an aclImdb archive or folder."""
    if path.is_dir():
        files = sorted((path / "aclImdb" / "test").glob("*/*.txt"))[:count]
        return [f.read_text(encoding="utf-8") for f in files]
    out = []
    with tarfile.open(path) as archive:
        for member in archive:
            if "/test/" in member.name and member.name.endswith(".txt") and member.isfile():
                out.append(archive.extractfile(member).read().decode("utf-8"))
                if len(out) == count:
                    break
    return out


class Server:
    """`seqtrain serve` in a subprocess on a free loopback port, with its memory sampled every second."""

    def __init__(self, runs: list[str], *flags: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "seqtrain", "serve", *runs, "--port", str(self.port), *flags]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.rss: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            self.stop()
            raise SystemExit(f"the server did not start: {self.process.stderr.read()[-500:]}")
        self.sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.sampling and self.process.poll() is None:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss.append(int(line.split()[1]) // 1024)
            time.sleep(1)

    def stop(self) -> int:
        self.sampling = False
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


async def load(base: str, route: str, bodies: list[dict], clients: int, seconds: float) -> dict:
    """`clients` concurrent clients, each posting one body after another until `seconds` pass."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one_client(index: int) -> None:
            nonlocal errors
            n = index
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    response = await client.post(route, json=bodies[n % len(bodies)])
                    errors += response.status_code != 200
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - start)
                n += clients

        started = time.monotonic()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99": latencies[min(int(len(latencies) * 0.99), len(latencies) - 1)] * 1000 if latencies else float("nan"),
        "errors": errors,
        "requests": len(latencies),
    }


def abuse(server: Server, name: str, lm: str | None) -> list[str]:
    """Bad requests of every kind; returns the problems found (a 5xx, a dead server)."""
    problems = []
    base = server.base
    cases = [
        ("malformed JSON", f"/v1/{name}/predict", b"{not json"),
        ("a 2 MiB body", f"/v1/{name}/predict", b'{"texts": ["' + b"x" * (2 << 20) + b'"]}'),
        ("an unknown run", "/v1/nobody/predict", b'{"texts": ["x"]}'),
        ("a wrong ability", f"/v1/{name}/generate", b"{}"),
        ("an empty list", f"/v1/{name}/predict", b'{"texts": []}'),
    ]
    for what, route, body in cases:
        status = httpx.post(base + route, content=body, headers={"content-type": "application/json"}, timeout=30).status_code
        print(f"  {what:<28} -> {status}")
        if not 400 <= status < 500:
            problems.append(f"{what}: {status}")
    # a slow client: its body trickles in over a few seconds while another request is served
    slow = socket.create_connection(("127.0.0.1", server.port))
    body = b'{"texts": ["a slow client"]}'
    slow.sendall(f"POST /v1/{name}/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    for i in range(0, len(body), 4):
        slow.sendall(body[i : i + 4])
        meanwhile = httpx.post(f"{base}/v1/{name}/predict", json={"texts": ["meanwhile"]}, timeout=30).status_code
        if meanwhile != 200:
            problems.append(f"a request beside the slow client: {meanwhile}")
        time.sleep(0.3)
    answer = slow.recv(200).split(b" ")[1].decode()
    slow.close()
    print(f"  {'a slow client (3 s of body)':<28} -> {answer}; requests beside it: served")
    if lm:
        with httpx.stream("POST", f"{base}/v1/lm/generate", json={"length": 2000}, timeout=30) as response:
            next(response.iter_text())  # read one chunk, then drop the connection
        print(f"  {'a stream dropped mid-way':<28} -> closed by the client")
    status = httpx.post(f"{base}/v1/{name}/predict", json={"texts": ["still serving?"]}, timeout=30).status_code
    print(f"  {'a good request afterwards':<28} -> {status}")
    if status != 200:
        problems.append(f"the server stopped serving: {status}")
    return problems


def generation_rates(lm: str, length: int, rounds: int) -> None:
    """Characters per second of `seqtrain generate`'s loop (task.generate gathered as the command streams it, timed
    in this process after loading, so start-up is not counted) and of one client reading the served stream, interleaved."""
    import torch

    from seqtrain.generation import gathered
    from seqtrain.inference import load_trained
    from seqtrain.training.runs import resolve_checkpoint
    from seqtrain_cli.main import STREAM_SECONDS

    torch.set_num_threads(1)
    trained = load_trained(resolve_checkpoint(lm), "cpu")
    server = Server([f"lm={lm}"])
    cli, served = [], []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            for _chunk in gathered(trained.task.generate(trained.model, "", length, 1.0, None, 1), STREAM_SECONDS):
                pass
            cli.append(length / (time.perf_counter() - start))
            start = time.perf_counter()
            with httpx.stream("POST", f"{server.base}/v1/lm/generate", json={"length": length, "seed": 1}, timeout=120) as response:
                text = "".join(response.iter_text())
            if response.status_code != 200:
                raise SystemExit(f"the served generation failed: {text}")
            served.append(length / (time.perf_counter() - start))
    finally:
        server.stop()
    print(f"generation, {length} characters, {rounds} rounds interleaved: seqtrain generate {statistics.median(cli):,.0f} chars/s, "
          f"served stream {statistics.median(served):,.0f} chars/s ({statistics.median(served) / statistics.median(cli):.0%}); "
          f"{len(text)} characters received")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a classifier run (folder or checkpoint)")
    parser.add_argument("--reviews", type=Path, required=True, help="aclImdb archive or folder: the request texts")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="on/off pairs, interleaved")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument("--lm", help="a language-model run: adds a dropped stream and the generation rate")
    parser.add_argument("--gen-length", type=int, default=2000, help="at most the server's generation limit (2,000)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bodies = [{"texts": [text]} for text in reviews(args.reviews, 500)]
    settings = {f"batching on (max {args.max_batch}, {args.max_wait_ms:g} ms)": ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
                "batching off": ["--max-batch", "1"]}
    results: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, flags in settings.items():
            server = Server([f"imdb={args.run}"], *flags)
            asyncio.run(load(server.base, "/v1/imdb/predict", bodies[:8], 4, 3))  # warm-up
            mark = len(server.rss)
            result = asyncio.run(load(server.base, "/v1/imdb/predict", bodies, args.clients, args.seconds))
            rss = server.rss[mark:] or server.rss[-1:]
            result["rss"] = (rss[0], rss[-1], max(rss))
            result["exit"] = server.stop()
            results[name].append(result)
    print(f"{args.clients} clients, {args.seconds:g} s each, {args.rounds} round(s), one IMDB test review per request")
    print(f"{'setting':<34} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}  server RSS MiB (start, end, max)  exit")
    for name, runs in results.items():
        for r in runs:
            print(f"{name:<34} {r['rps']:7.1f} {r['p50']:8.0f} {r['p99']:8.0f} {r['errors']:6d}  {r['rss']}  {r['exit']}")
    on, off = (statistics.median(r["rps"] for r in runs) for runs in results.values())
    print(f"batching on / off: {on / off:.2f}x requests per second")
    print("bad input and slow clients:")
    server = Server([f"imdb={args.run}", *([f"lm={args.lm}"] if args.lm else [])])
    problems = abuse(server, "imdb", args.lm)
    print(f"  server exit status after SIGTERM: {server.stop()}")
    print("  " + ("; ".join(problems) if problems else "no 5xx, the server kept serving"))
    if args.lm:
        generation_rates(args.lm, args.gen_length, max(args.rounds, 2))


if __name__ == "__main__":
    main()
