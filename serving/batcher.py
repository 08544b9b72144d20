"""Micro-batching: the items of concurrent requests gathered into one batch, so each model runs
one forward pass for all of them instead of one per request.

The first item waits at most `max_wait_s` for others, a batch holds at most `max_batch` items,
and items that arrive while a batch is being scored wait for the next (taken at once, without the
wait, up to `max_batch`). Batches are scored one at a time on one thread: the models already use
the machine's cores for one pass, and one pass at a time keeps a model's memory at one batch's.
At most `max_queue` items wait; more are refused at once (`Busy`), not queued without bound.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Busy(RuntimeError):
    """The queue is full: the caller should answer 503 and the client retry later."""


class MicroBatcher(Generic[In, Out]):
    """Gathers items into batches for `score` (a list in, one result per item out, in order)."""

    def __init__(self, score: Callable[[list[In]], list[Out]], max_batch: int, max_wait_s: float, max_queue: int) -> None:
        self.score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.batches = 0  # batches scored, and items in them: their ratio is the mean batch size
        self.items = 0
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="score")

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start gathering, on the running event loop."""
        self._queue = asyncio.Queue(self.max_queue)
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop gathering; items still waiting are cancelled, a batch being scored finishes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()[1].cancel()
        self._executor.shutdown(wait=True)

    async def submit(self, item: In) -> Out:
        """The item's result, once its batch is scored; Busy when `max_queue` items wait already.
        Cancelling the wait (a request's time limit) leaves the item out of any batch not yet begun."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Busy(f"busy: {self.max_queue} items are waiting to be scored; retry later") from None
        return await future

    async def _gather(self) -> list[tuple[In, asyncio.Future[Out]]]:
        """The next batch: the first item to come, then whatever is waiting, then what arrives
        within `max_wait_s` of the first, up to `max_batch`; items whose request gave up are left out."""
        assert self._queue is not None
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        while not batch:
            batch = [entry for entry in [await self._queue.get()] if not entry[1].done()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if self._queue.empty():
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            else:
                entry = self._queue.get_nowait()
            if not entry[1].done():
                batch.append(entry)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            try:
                results = await loop.run_in_executor(self._executor, self.score, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"scored {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - the batch's requests get the error, the batcher goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
