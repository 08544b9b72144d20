"""The HTTP service (Starlette, ASGI): `POST /score` one item, `GET /health`.

`/score` answers 200 with the item's embeddings, labels and neighbours (with `index_builds`: the
build of each index they came from, as /health names it); 422 when a signal found
the input bad (the batch job's reason per signal under `errors`, the other signals' results
still given); 503 when every error may pass on another try (a fetch that timed out) or the queue
is full; 400, 408, 413 for a request that is not an item, too slow or too large; 504 when it was
not scored within the time limit. `/health` says what is loaded (model versions, index builds),
the reloads, the queue, and the connections each limit closed (timeouts, and refusals at `max_connections`). A task looks for new champions every `serve.reload_check_s`.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conf.settings import ServeSettings
from serving.batcher import Busy, MicroBatcher
from serving.connections import ClosedConnections
from serving.reload import Champions
from serving.requests import Refused, parse_item, read_body
from serving.scorer import Item, ItemResult, fetched, online_policy


def create_app(champions: Champions, serve: ServeSettings, closed: ClosedConnections) -> Starlette:
    """The service of `champions`, with the limits and batching of `serve`, reporting the connections its server's timeouts counted in `closed`."""
    batcher: MicroBatcher[Item, ItemResult] = MicroBatcher(champions.score, serve.max_batch, serve.max_wait_ms / 1000, serve.max_queue)
    # fetches wait on other servers for up to their deadline: on the loop's default pool (cpu count + 4
    # threads) a few slow servers held every body's parsing and the reload check (found in review)
    fetches = ThreadPoolExecutor(serve.max_connections, thread_name_prefix="fetch")
    fetch_policy = online_policy(champions.settings.fetch.policy, serve.request_timeout_s)

    async def score(request: Request) -> JSONResponse:
        try:
            item = await asyncio.to_thread(parse_item, await read_body(request, serve.max_body_bytes, serve.body_timeout_s))
            result = await asyncio.wait_for(scored(item), serve.request_timeout_s)
        except Refused as refused:  # the connection is closed after it: the rest of a body refused is never read
            return JSONResponse({"error": refused.reason}, refused.status, headers={"Connection": "close"})
        except Busy as busy:
            return JSONResponse({"error": str(busy)}, 503, headers={"Retry-After": "1"})
        except TimeoutError:
            return JSONResponse({"error": f"timeout: not scored within {serve.request_timeout_s:g}s"}, 504)
        body: dict[str, Any] = result.as_dict()
        if not (errors := result.errors):
            return JSONResponse(body)
        body["errors"] = errors
        body["error"] = "; ".join(f"{name}: {reason}" for name, reason in sorted(errors.items()))
        return JSONResponse(body, 503 if result.retryable else 422)

    async def scored(item: Item) -> ItemResult:
        """The item's result: its image fetched on a thread of its own (an image by URI), then scored in a batch."""
        if item.to_fetch:
            item = await asyncio.get_running_loop().run_in_executor(fetches, fetched, item, fetch_policy)
        return await batcher.submit(item)

    async def health(request: Request) -> JSONResponse:
        current = champions.current
        return JSONResponse({
            "status": "ok", **current.state, "skipped_indexes": current.skipped, "skipped_heads": current.skipped_heads, "loaded_at": current.loaded_at.isoformat(),
            "reloads": champions.reloads, "reload_error": champions.last_error,
            "waiting": batcher.waiting, "batches": batcher.batches, "items": batcher.items, "closed_connections": dataclasses.asdict(closed),
        })

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(serve.reload_check_s)
            await loop.run_in_executor(None, champions.check)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await batcher.start()
        watcher = asyncio.create_task(watch(), name="champion-watch")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await batcher.stop()
            fetches.shutdown(wait=False, cancel_futures=True)  # a fetch under way ends by its request's time limit

    return Starlette(routes=[Route("/score", score, methods=["POST"]), Route("/health", health, methods=["GET"])], lifespan=lifespan)
