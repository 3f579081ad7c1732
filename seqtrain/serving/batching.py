"""Concurrent requests merged into one model call: gather up to `max_batch` inputs, or wait at most `max_wait` seconds.

Each request puts its inputs (one or several) on the run's queue with a key
(the settings that must match to share a call, e.g. a beam width); one
worker per run takes the first waiting request, keeps gathering requests
until the batch is full or the wait is over, runs one call per key on a
thread of its own (the event loop keeps accepting), and answers each request
with its own slice of the outputs. max_batch 1 turns batching off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

BatchFn = Callable[[list[Any], Hashable], list[Any]]


@dataclass
class Pending:
    inputs: list[Any]
    key: Hashable
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, run: BatchFn, max_batch: int, max_wait: float, on_batch: Callable[[int], None], executor: ThreadPoolExecutor):
        self.run, self.max_batch, self.max_wait, self.on_batch = run, max_batch, max_wait, on_batch
        self.executor = executor
        self.queue: asyncio.Queue[Pending] | None = None
        self.worker: asyncio.Task | None = None

    async def submit(self, inputs: list[Any], key: Hashable = None) -> list[Any]:
        """The outputs for `inputs`, computed in a batch with whatever else is waiting."""
        if self.queue is None:  # created on the serving loop, at first use
            self.queue = asyncio.Queue()
            self.worker = asyncio.create_task(self._work())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(Pending(inputs, key, future))
        return await future

    async def _work(self) -> None:
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0].inputs)
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    item = self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                batch.append(item)
                size += len(item.inputs)
            for key in dict.fromkeys(p.key for p in batch):
                await self._call([p for p in batch if p.key == key], key)

    async def _call(self, group: list[Pending], key: Hashable) -> None:
        inputs = [x for p in group for x in p.inputs]
        self.on_batch(len(inputs))
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, inputs, key)
        except Exception as exc:  # noqa: BLE001 - the worker lives on
            if len(group) > 1:  # one request's input may be at fault: each alone, so only its own request fails
                for p in group:
                    await self._call([p], key)
                return
            if not group[0].future.done():
                group[0].future.set_exception(exc)
            return
        start = 0
        for p in group:
            if not p.future.done():  # a client that left has a cancelled future
                p.future.set_result(outputs[start : start + len(p.inputs)])
            start += len(p.inputs)
