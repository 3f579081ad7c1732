"""Load test of `seqtrain serve`: K concurrent clients for T seconds, batching on and off side by side, then abuse.

    python scripts/bench_serve.py RUN --reviews ../shared/data/imdb/aclImdb-labeled.tar.gz [--lm LM_RUN]
    python scripts/bench_serve.py RUN --reviews ... --memory-minutes 5      # resident memory over a long run

For each setting (--max-batch N, then --max-batch 1: batching off), in
turn and `--rounds` times interleaved, it starts the server on a loopback
port, drives the predict route with `--clients` concurrent clients sending
one real review each per request for `--seconds`, and prints requests per
second, p50/p99 latency, errors, texts per model call (the server's
/metrics) and the server's resident memory at the start and end of the load
(sampled every second). The clients are light: raw HTTP/1.1 on asyncio
streams, kept-alive connections, in `--client-processes` processes of
their own (not pinned: on a 2-core machine they share the cores with the
server, as real clients on the same host would), so that what is measured
is the server rather than a client library. Then a bad-input pass
(malformed JSON, a body past the limit, an unknown run, a wrong ability, a
client that sends its body slowly, and, with --lm, a stream dropped
mid-way) after which the server must still answer. With --lm it also
compares a streamed generation's characters per second with `seqtrain generate`'s.
With --memory-minutes it instead keeps one server (batching on) under the
same load that long and prints its resident memory at intervals and the growth.
Everything is bounded: each pass stops by itself, every request has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system, all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def mean_batch(self, run: str) -> float:
        """Inputs per model call so far, from the server's own /metrics."""
        text = httpx.get(f"{self.base}/metrics", timeout=30).text
        count = re.search(rf'seqtrain_batch_size_count{{run="{run}"}} (\S+)', text)
        total = re.search(rf'seqtrain_batch_size_sum{{run="{run}"}} (\S+)', text)
        return float(total.group(1)) / float(count.group(1)) if count else float("nan")

    def stop(self) -> int:
        self.sampling = False
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def post_request(route: str, body: bytes) -> bytes:
    """One HTTP/1.1 POST on a kept-alive connection, written out by hand."""
    head = f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status of the next response on `reader`, its body read and dropped (the server always sends Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def drive(port: int, requests: list[bytes], firsts: list[int], stride: int, deadline: float) -> tuple[list[float], int]:
    """One connection per entry of `firsts` (the request it sends first; then every `stride`-th), each posting one
    request after another; the latencies of those answered before the wall clock passes `deadline`."""
    latencies: list[float] = []
    errors = 0

    async def one_client(n: int) -> None:
        nonlocal errors
        reader = writer = None
        while time.time() < deadline:
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(requests[n % len(requests)])
                errors += await asyncio.wait_for(read_response(reader), 60) != 200
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                errors += 1
                writer = None
            if time.time() <= deadline:
                latencies.append(time.perf_counter() - start)
            n += stride
        if writer is not None:
            writer.close()

    await asyncio.gather(*(one_client(n) for n in firsts))
    return latencies, errors


def client_process(port: int, requests: list[bytes], firsts: list[int], stride: int, start: float, seconds: float, out) -> None:
    """One client process: its share of the connections, from the wall-clock `start` on; latencies and errors to `out`."""
    time.sleep(max(0.0, start - time.time()))
    out.send(asyncio.run(drive(port, requests, firsts, stride, start + seconds)))


def load(port: int, route: str, bodies: list[dict], clients: int, seconds: float, processes: int = 2) -> dict:
    """`clients` concurrent clients for `seconds`, spread over `processes` light client processes (raw HTTP/1.1 on
    asyncio streams, no client library), so the clients' own cost stays small and off the server's process."""
    import multiprocessing

    requests = [post_request(route, json.dumps(body).encode()) for body in bodies]
    context = multiprocessing.get_context("spawn")
    start = time.time() + 2  # every process connects at the same moment
    pipes, workers = [], []
    for index in range(processes):
        receive, send = context.Pipe(duplex=False)
        firsts = list(range(index, clients, processes))
        worker = context.Process(target=client_process, args=(port, requests, firsts, clients, start, seconds, send))
        worker.start()
        pipes.append(receive)
        workers.append(worker)
    latencies: list[float] = []
    errors = 0
    for receive, worker in zip(pipes, workers):
        got, failed = receive.recv()
        latencies += got
        errors += failed
        worker.join()
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
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


def memory_run(args: argparse.Namespace, bodies: list[dict], flags: list[str]) -> None:
    """The server's resident memory over a long run under load: printed every `--memory-every` seconds, and its
    growth from the end of the first interval (start-up and the first batches of each size) to the end."""
    server = Server([f"imdb={args.run}"], *flags)
    started = len(server.rss)
    result = load(server.port, "/v1/imdb/predict", bodies, args.clients, args.memory_minutes * 60, args.client_processes)
    rss = server.rss[started:]  # one sample a second from the start of the load
    batch = server.mean_batch("imdb")
    status = server.stop()
    every = max(int(args.memory_every), 1)
    print(f"memory: {args.clients} clients for {args.memory_minutes:g} min, batching on ({' '.join(flags)}), "
          f"one IMDB test review per request: {result['rps']:.1f} req/s, p99 {result['p99']:.0f} ms, "
          f"{result['errors']} errors, {result['requests']} requests, {batch:.1f} texts per model call; exit {status}")
    marks = list(range(0, len(rss), every)) + [len(rss) - 1]
    print("  server RSS MiB at " + ", ".join(f"{m} s: {rss[m]}" for m in dict.fromkeys(marks)))
    settled = rss[min(every, len(rss) - 1)]
    print(f"  growth from {every} s to the end: {rss[-1] - settled:+d} MiB ({settled} -> {rss[-1]}), highest {max(rss)} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a classifier run (folder or checkpoint)")
    parser.add_argument("--reviews", type=Path, required=True, help="aclImdb archive or folder: the request texts")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="on/off pairs, interleaved")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument("--client-processes", type=int, default=2, help="processes the clients are spread over")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads (seqtrain serve --threads), both settings")
    parser.add_argument("--memory-minutes", type=float, default=0,
                        help="instead of the comparison: one server with batching on under the same load for this long, "
                             "its resident memory printed every --memory-every seconds, and the growth after the first interval")
    parser.add_argument("--memory-every", type=float, default=30)
    parser.add_argument("--lm", help="a language-model run: adds a dropped stream and the generation rate")
    parser.add_argument("--gen-length", type=int, default=2000, help="at most the server's generation limit (2,000)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bodies = [{"texts": [text]} for text in reviews(args.reviews, 500)]
    threads = ["--threads", str(args.threads)]
    settings = {f"batching on (max {args.max_batch}, {args.max_wait_ms:g} ms)": ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), *threads],
                "batching off": ["--max-batch", "1", *threads]}
    if args.memory_minutes:
        return memory_run(args, bodies, next(iter(settings.values())))
    results: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, flags in settings.items():
            server = Server([f"imdb={args.run}"], *flags)
            load(server.port, "/v1/imdb/predict", bodies[:8], 4, 3)  # warm-up
            mark, cpu = len(server.rss), server.cpu_seconds()
            result = load(server.port, "/v1/imdb/predict", bodies, args.clients, args.seconds, args.client_processes)
            result["cpu_ms"] = (server.cpu_seconds() - cpu) * 1000 / max(result["requests"], 1)
            rss = server.rss[mark:] or server.rss[-1:]
            result["rss"] = (rss[0], rss[-1], max(rss))
            result["batch"] = server.mean_batch("imdb")
            result["exit"] = server.stop()
            results[name].append(result)
    print(f"{args.clients} clients, {args.seconds:g} s each, {args.rounds} round(s), one IMDB test review per request, "
          f"{args.threads} torch thread(s) in the server")
    print("(batch: texts per model call; CPU ms/req: the server's CPU time per answered request, all its threads)")
    print(f"{'setting':<34} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'batch':>6} {'CPU ms/req':>10}  server RSS MiB (start, end, max)  exit")
    for name, runs in results.items():
        for r in runs:
            print(f"{name:<34} {r['rps']:7.1f} {r['p50']:8.0f} {r['p99']:8.0f} {r['errors']:6d} {r['batch']:6.1f} {r['cpu_ms']:10.1f}"
                  f"  {r['rss']}  {r['exit']}")
    on, off = (statistics.median(r["rps"] for r in runs) for runs in results.values())
    cpu_on, cpu_off = (statistics.median(r["cpu_ms"] for r in runs) for runs in results.values())
    print(f"batching on / off: {on / off:.2f}x requests per second; {cpu_off / cpu_on:.2f}x requests per server CPU-second")
    print("bad input and slow clients:")
    server = Server([f"imdb={args.run}", *([f"lm={args.lm}"] if args.lm else [])])
    problems = abuse(server, "imdb", args.lm)
    print(f"  server exit status after SIGTERM: {server.stop()}")
    print("  " + ("; ".join(problems) if problems else "no 5xx, the server kept serving"))
    if args.lm:
        generation_rates(args.lm, args.gen_length, max(args.rounds, 2))


if __name__ == "__main__":
    main()
