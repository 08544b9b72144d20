"""The service under uvicorn: in the foreground for `content-signals serve`, or in a thread for
the tests and the load test (a free loopback port by default)."""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import uvicorn
from starlette.applications import Starlette

from conf.settings import ServeSettings, Settings
from serving.app import create_app
from serving.connections import ClosedConnections, LimitedH11Protocol
from serving.reload import Champions

START_TIMEOUT_S = 60.0
KEEP_ALIVE_S = 5  # an idle connection is closed after this


def _server(app: Starlette, host: str, port: int, log_level: str, max_connections: int | None, head_timeout_s: float,
            write_timeout_s: float, closed: ClosedConnections) -> uvicorn.Server:
    """A uvicorn server that serves `max_connections` connections at once, more answered 503, each closed
    when a request's head has not arrived within `head_timeout_s` or its client took none of its answers
    for `write_timeout_s` (refusals and closes counted in `closed`); the protocol decides the limit, not
    uvicorn's `limit_concurrency`, whose refusals nothing could count."""
    protocol = functools.partial(LimitedH11Protocol, max_connections=max_connections, head_timeout_s=head_timeout_s, write_timeout_s=write_timeout_s,
                                 closed=closed)  # uvicorn calls it as it calls a protocol class
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on", http=protocol,
                                         timeout_keep_alive=KEEP_ALIVE_S))


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (the one the OS chose for port 0)."""
    return server.servers[0].sockets[0].getsockname()[1]


@contextmanager
def running(app: Starlette, host: str = "127.0.0.1", port: int = 0, max_connections: int | None = None,
            head_timeout_s: float = ServeSettings().head_timeout_s, write_timeout_s: float = ServeSettings().write_timeout_s,
            closed: ClosedConnections | None = None) -> Iterator[str]:
    """The app served by uvicorn in a thread of this process, its connections closed by a timeout or refused
    at `max_connections` counted in `closed` (the one the app reports, if it reports them); yields its base URL, and stops it
    (connections closed, the lifespan's shutdown run) when the block ends."""
    server = _server(app, host, port, "warning", max_connections, head_timeout_s, write_timeout_s, ClosedConnections() if closed is None else closed)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the service did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{bound_port(server)}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)


def serve(settings: Settings) -> None:
    """Load the champion signals and serve them until interrupted (Ctrl-C, SIGTERM)."""
    torch.set_num_threads(settings.torch_threads)
    champions, closed = Champions(settings), ClosedConnections()
    server = _server(create_app(champions, settings.serve, closed), settings.serve.host, settings.serve.port, "info", settings.serve.max_connections,
                     settings.serve.head_timeout_s, settings.serve.write_timeout_s, closed)
    # after its shutdown uvicorn raises the signal it caught again: Ctrl-C's KeyboardInterrupt is the
    # end asked for, not a failure (a traceback after a clean shutdown, found in review), as in uvicorn.run
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
