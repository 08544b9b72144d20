"""HTTP connections that must send their request head, and take their answers, in time, and no more of them than `max_connections`.

uvicorn closes a connection left idle after an answer (`timeout_keep_alive`) but sets no limit on
the head of a request: a connection that sent nothing, or part of a head, held one of
`max_connections` for ever, and that many of them locked every other client out (503). Here a
connection whose request line and headers have not all arrived within `head_timeout_s` of its
opening, or of its previous answer's leaving, is closed. The body has its own limit (serving.requests).

Nor does uvicorn limit the time an answer takes to leave: a client that sends requests (several
pipelined, or one with a large answer) and never reads fills the socket's buffers, uvicorn's writes
pause, and closing the connection waits for a buffer that never drains. Here a connection whose
writing is paused and whose client took none of its answer's bytes for `write_timeout_s` is aborted
(its buffers dropped); a client that reads slowly but steadily is not, as nginx's `send_timeout`.
The head's clock starts only once the answer before has left (writing no longer paused), so a
client that is not taking its answer is cut off by the write timeout alone.

A connection made while `max_connections` connections are open, or more requests than that are
still being answered, gets uvicorn's 503 (its `service_unavailable`: `Connection: close`) as it
opens, before any request: decided per request, a connection that sent nothing held a place until
its head timed out and was never counted as refused. h11 lets a server answer before a request, and
the close lingers (RFC 9112, 9.6): what the client sends is read and dropped until it closes, or for
`head_timeout_s`, since a socket closed with bytes unread, or that receives the request after its
close, resets the connection and the client may lose its 503. A request that arrives while more
requests than that are under way (a client gone leaves its request running) gets uvicorn's 503 too.
uvicorn decides that inside its request handling (`limit_concurrency`), logging a line that names no
client and counting nothing, so its limit is left unset and the same condition is decided here.

Each such close or refusal logs a warning naming the client and is counted in a `ClosedConnections`
the server's protocols share with the app, whose `/health` reports it.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import http
import struct
import termios
from dataclasses import dataclass
from typing import Any

import h11
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass
class ClosedConnections:
    """How many connections each limit has closed since the service started: one object for all its connections and its `/health`."""

    head_timeout: int = 0
    write_timeout: int = 0
    max_connections: int = 0  # requests refused (503, closed): more than `max_connections` requests under way
    max_connections_at_accept: int = 0  # connections refused as they opened (503, closed): `max_connections` open or requests under way


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not in by its deadline or whose client stopped taking its answers, and refusing connections and requests beyond `max_connections`."""

    def __init__(self, *args: Any, max_connections: int | None, head_timeout_s: float, write_timeout_s: float, closed: ClosedConnections,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = closed
        self.served_app = self.app
        self.max_connections = max_connections
        self.head_timeout_s = head_timeout_s
        self.head_deadline: asyncio.TimerHandle | None = None
        self.write_timeout_s = write_timeout_s
        self.write_deadline: asyncio.TimerHandle | None = None
        self.unsent_at_start = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._at_limit():
            self._refuse_connection()
        else:
            self._await_head()

    def handle_events(self) -> None:
        # uvicorn answers a request parsed in this call with `self.app`; its connections and tasks
        # cannot change before the call parses one (a second request in one call needs the first's
        # answer sent, which happens in its task), so deciding here decides as uvicorn's check would
        self.app = self._refuse if self._at_limit() else self.served_app
        super().handle_events()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # h11 parsed a whole head: a request is under way
            self._cancel_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.flow.write_paused:  # kept alive for the next request (one pipelined is parsed already)
            self._await_head()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._await_progress()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_deadline()
        if self.conn.their_state is h11.IDLE:  # the answer before has left: the next request's head is due
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self._cancel_write_deadline()
        super().connection_lost(exc)

    def _at_limit(self) -> bool:
        """Whether a connection or request now is one too many: uvicorn's `limit_concurrency` condition, with `max_connections` + 1 as that limit."""
        return self.max_connections is not None and max(len(self.connections), len(self.tasks)) > self.max_connections

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """uvicorn's own 503 for a request beyond `max_connections`, counted and logged with its client."""
        self.closed.max_connections += 1
        self.logger.warning("Refused the request of %s with 503: max_connections (%d) reached.", self._client_name(), self.max_connections)
        await service_unavailable(scope, receive, send)

    def _refuse_connection(self) -> None:
        """uvicorn's 503 for a connection beyond `max_connections` as it opens, counted and logged with its client; it holds no place while its close lingers."""
        self.connections.discard(self)
        self.closed.max_connections_at_accept += 1
        self.logger.warning("Refused the connection of %s with 503: max_connections (%d) reached.", self._client_name(), self.max_connections)
        phrase = http.HTTPStatus.SERVICE_UNAVAILABLE.phrase.encode()  # service_unavailable's reason and body
        headers = [*self.server_state.default_headers, (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(phrase)),
                   (b"connection", b"close")]
        self.transport.write(self.conn.send(h11.Response(status_code=503, headers=headers, reason=phrase)) + self.conn.send(h11.Data(data=phrase))
                             + self.conn.send(h11.EndOfMessage()))
        self.transport.set_protocol(LingeringClose(self.transport, self.head_timeout_s))

    def _await_head(self) -> None:
        """Start the time the next request's head has to arrive in full (bytes that come meanwhile do not restart it)."""
        self._cancel_head_deadline()
        if not self.transport.is_closing():
            self.head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.closed.head_timeout += 1
            self.logger.warning("Closed the connection of %s: it sent no whole request head within %gs.", self._client_name(), self.head_timeout_s)
            self.timeout_keep_alive_handler()  # uvicorn's close of a connection with no request under way

    def _await_progress(self) -> None:
        """Start the time in which the client has to take some of what waits to be sent."""
        self._cancel_write_deadline()
        self.unsent_at_start = self._unsent()
        self.write_deadline = self.loop.call_later(self.write_timeout_s, self._write_timed_out)

    def _write_timed_out(self) -> None:
        if self._unsent() < self.unsent_at_start:  # the client read some: it has as long again for more
            self._await_progress()
            return
        self.write_deadline = None
        self.closed.write_timeout += 1
        self.logger.warning("Closed the connection of %s: it took none of its answers for %gs.", self._client_name(), self.write_timeout_s)
        self.transport.abort()  # a close would wait for the buffer to drain

    def _cancel_write_deadline(self) -> None:
        if self.write_deadline is not None:
            self.write_deadline.cancel()
            self.write_deadline = None

    def _client_name(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"

    def _unsent(self) -> int:
        """Bytes of answers the client has not taken: in the transport's buffer, and those its socket holds not yet acknowledged (Linux)."""
        in_socket = 0
        with contextlib.suppress(OSError, AttributeError):  # SIOCOUTQ is Linux's; elsewhere only the transport's buffer counts
            in_socket = struct.unpack("i", fcntl.ioctl(self.transport.get_extra_info("socket").fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        return self.transport.get_write_buffer_size() + in_socket


class LingeringClose(asyncio.Protocol):
    """A connection answered and closing: its writing shut, what its client still sends read and dropped until the client closes or `linger_s` passes, so no reset costs the client its answer."""

    def __init__(self, transport: asyncio.Transport, linger_s: float) -> None:
        transport.write_eof()
        self.deadline = asyncio.get_running_loop().call_later(linger_s, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline.cancel()
