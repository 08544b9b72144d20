"""HTTP connections that must send their request head in time.

uvicorn closes a connection left idle after an answer (`timeout_keep_alive`) but sets no limit on
the head of a request: a connection that sent nothing, or part of a head, held one of
`max_connections` for ever, and that many of them locked every other client out (503). Here a
connection whose request line and headers have not all arrived within `head_timeout_s` of its
opening, or of its previous answer, is closed. The body has its own limit (serving.requests).
"""
from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not in by its deadline."""

    def __init__(self, *args: Any, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout_s = head_timeout_s
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # h11 parsed a whole head: a request is under way
            self._cancel_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:  # kept alive for the next request (one pipelined is parsed already)
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        """Start the time the next request's head has to arrive in full (bytes that come meanwhile do not restart it)."""
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        if self.conn.their_state is h11.IDLE:
            self.timeout_keep_alive_handler()  # uvicorn's close of a connection with no request under way
