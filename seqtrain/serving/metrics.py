"""Counters and histograms in Prometheus' text exposition format, kept by hand: a few dozen lines instead of a dependency."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


def labels(**pairs: str) -> str:
    return ",".join(f'{k}="{v}"' for k, v in pairs.items())


class Metrics:
    """requests by route and status, errors by route, request latency by route, and model batch sizes by run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batches: dict[str, Histogram] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[labels(route=route, status=str(status))] += 1
            if status >= 400:
                self.errors[labels(route=route)] += 1
            self.latency.setdefault(labels(route=route), Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, run: str, size: int) -> None:
        with self.lock:
            self.batches.setdefault(labels(run=run), Histogram(BATCH_BUCKETS)).observe(size)

    def text(self) -> str:
        out = []
        with self.lock:
            out += ["# HELP seqtrain_requests_total HTTP requests by route and status.", "# TYPE seqtrain_requests_total counter"]
            out += [f"seqtrain_requests_total{{{key}}} {value}" for key, value in sorted(self.requests.items())]
            out += ["# HELP seqtrain_errors_total Requests answered with a 4xx or 5xx status.", "# TYPE seqtrain_errors_total counter"]
            out += [f"seqtrain_errors_total{{{key}}} {value}" for key, value in sorted(self.errors.items())]
            out += self._histograms("seqtrain_request_seconds", "Request latency in seconds.", self.latency)
            out += self._histograms("seqtrain_batch_size", "Inputs per model call (merged requests).", self.batches)
        return "\n".join(out) + "\n"

    @staticmethod
    def _histograms(name: str, help_text: str, histograms: dict[str, Histogram]) -> list[str]:
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for key, hist in sorted(histograms.items()):
            for bound, count in zip(hist.buckets, hist.counts):
                out.append(f'{name}_bucket{{{key},le="{bound:g}"}} {count}')
            out.append(f'{name}_bucket{{{key},le="+Inf"}} {hist.count}')
            out.append(f"{name}_sum{{{key}}} {hist.total:.6g}")
            out.append(f"{name}_count{{{key}}} {hist.count}")
        return out
