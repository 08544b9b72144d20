"""The online scorer over real HTTP on loopback, without Spark: two cheap signals (the rule-based
text safety and image quality labelers) at their champion versions in a registry of the test's
own. Hostile requests (corrupt images, a 50 MB body, a slow client, a URI outside the
allowlist), micro-batching of concurrent requests, the reload when the champion alias moves."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conf.settings import load_settings
from lake.registry import Registry
from serving.app import create_app
from serving.connections import ClosedConnections
from serving.reload import Champions
from serving.requests import Refused, parse_item, read_body
from serving.server import running
from signals import model_cache
from signals.decode import InputError, decode_image
from signals.fetch import FetchError, fetch
from tests.conftest import jpeg_bytes

SIGNALS = ("text_safety", "image_quality")
MB = 1_000_000


@pytest.fixture
def settings(tmp_path, empty_registry_db):
    shutil.copytree(empty_registry_db.parent, tmp_path / "_registry")
    enabled = load_settings("local").enabled_signals
    return load_settings("local", [f"lakehouse={tmp_path}", *(f"signals.{n}.enabled={'true' if n in SIGNALS else 'false'}" for n in enabled),
                                   f"fetch.file_roots=[{tmp_path / 'allowed'}]", "serve.max_wait_ms=200", "serve.body_timeout_s=1",
                                   "serve.reload_check_s=0.2", "serve.max_body_bytes=1000000"])


@pytest.fixture
def service(settings):
    champions = Champions(settings)
    with running(create_app(champions, settings.serve, ClosedConnections())) as url:
        yield urlsplit(url), champions


def post(where, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        connection.request("POST", "/score", body, {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def item(image: bytes | None = None, **fields: str | None) -> bytes:
    return json.dumps({"image": None if image is None else base64.b64encode(image).decode(), **fields}).encode()


def health(where) -> dict:
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        connection.request("GET", "/health")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def test_a_good_item_is_scored_by_the_champions(service) -> None:
    where, champions = service
    status, body = post(where, item(jpeg_bytes(3), title="a red bicycle", description="by the canal"))
    assert status == 200, body
    assert set(body["labels"]) == set(SIGNALS) and body["embeddings"] == {} and body["neighbours"] == {}
    versions = {name: s.config.model.version for name, s in champions.current.signals.items()}
    assert {name: row["model_version"] for name, row in body["labels"].items()} == versions == health(where)["signals"]
    for name, row in body["labels"].items():  # decided as the labeler decides: score against the threshold it records
        thresholds = champions.current.signals[name].thresholds
        assert row["labels"] and all(one["decision"] == (one["score"] >= thresholds[one["label"]]) for one in row["labels"] if one["label"] in thresholds)


def test_bad_input_is_a_4xx_with_the_batch_jobs_reason(service, settings, tmp_path) -> None:
    where, _ = service
    truncated = jpeg_bytes(4)[:300]
    with pytest.raises(InputError) as expected:
        decode_image(truncated, settings.decode.limits)
    status, body = post(where, item(truncated, title="fine text"))
    assert status == 422 and body["errors"] == {"image_quality": str(expected.value)}
    assert body["labels"]["text_safety"]["status"] == "ok"  # the good half of the item is still scored

    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(jpeg_bytes(5))
    with pytest.raises(FetchError) as refused:
        fetch(outside.as_uri(), settings.fetch.policy)
    status, body = post(where, json.dumps({"image_uri": outside.as_uri(), "title": "t"}).encode())
    assert status == 422 and body["errors"]["image_quality"] == str(refused.value) and "not allowed" in body["error"]

    wrapped = json.dumps({"image": base64.encodebytes(jpeg_bytes(6)).decode(), "title": "t"}).encode()  # base64 in 76-column lines
    assert post(where, wrapped) == post(where, item(jpeg_bytes(6), title="t"))
    for bad, reason in ((b"{not json", "not JSON"), (b"[" * 100_000, "an item is one JSON object"), (b"[]," * 10_001, "over 10000"), (item(title=3), "must be strings"), (b'["1"]', "not an object"),
                        (json.dumps({"image": "%%%"}).encode(), "not base64"), (item(title="t", colour="red"), "unknown fields")):
        status, body = post(where, bad)
        assert status == 400 and reason in body["error"], (bad, body)


def test_a_body_of_many_json_values_is_refused_before_they_are_made(service) -> None:
    """A body of many distinct keys was parsed whole, then every key named in the reason: a 1 MB body
    was answered with a 1 MB error (45 MB: 30 s and 560 MB to parse and sort, then a 43 MB answer);
    a body of numbers made every one (45 MB of floats: 400 MB). An item holds at most eight strings
    (four fields, their values) and no number: more are refused before parsing, a number when met."""
    where, _ = service
    many_keys = ("{" + ",".join(f'"k{i}":null' for i in range(60_000)) + "}").encode()
    long_key = json.dumps({"k" * 500_000: None}).encode()
    for body in (many_keys, long_key):
        status, answer = post(where, body)
        assert status == 400 and len(answer["error"]) < 1000, answer["error"][:200]
    more_keys = ("{" + ",".join(f'"k{i}":null' for i in range(400_000)) + "}").encode()
    numbers = ('{"title": [' + ",".join(["1.5"] * 1_000_000) + "]}").encode()
    for body, reason in ((more_keys, "strings"), (numbers, "a number")):
        tracemalloc.start()
        try:
            with pytest.raises(Refused) as refused:
                parse_item(body)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert refused.value.status == 400 and reason in refused.value.reason, refused.value.reason[:200]
        assert peak < 2 * len(body), (reason, peak, len(body))  # the body decoded once as text, not an object per value


def test_a_50_mb_body_is_refused_before_it_is_read(service) -> None:
    where, _ = service
    with socket.create_connection((where.hostname, where.port), timeout=10) as s:  # declared: refused from the header
        s.sendall(f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {50 * MB}\r\n\r\n".encode() + b"{" * 1000)
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
    sent = 0  # chunked, no length declared: refused once the limit (1 MB here) is passed, not after 50 MB
    with socket.create_connection((where.hostname, where.port), timeout=10) as s:
        s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (64_000, b" " * 64_000)
        try:
            while sent < 50 * MB:
                s.sendall(chunk)
                sent += 64_000
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 50 * MB / 4
    assert health(where)["status"] == "ok"


def test_a_slow_client_is_cut_off_and_holds_no_one_up(service) -> None:
    where, _ = service
    body = item(title="slow")
    answer: list[bytes] = []

    def slow() -> None:
        with socket.create_connection((where.hostname, where.port), timeout=10) as s:
            s.sendall(f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            for byte in body[:2]:  # a byte every 0.4 s, then nothing: not the whole body within the 1 s limit
                s.sendall(bytes([byte]))
                time.sleep(0.4)
            answer.append(b"".join(iter(lambda: s.recv(4096), b"")))  # until the server closes

    thread = threading.Thread(target=slow)
    started = time.monotonic()
    thread.start()
    time.sleep(0.2)
    status, _ = post(where, item(jpeg_bytes(6), title="quick"))
    quick = time.monotonic() - started
    thread.join(10)
    assert status == 200 and quick < 1.0  # answered while the slow body trickles
    assert answer and answer[0].startswith(b"HTTP/1.1 408") and b"timeout" in answer[0]


def test_a_slow_image_server_holds_up_its_own_request_only(settings, image_server) -> None:
    """An image URI is fetched for its request before it joins a batch, once: fetched inside the
    batch, by each image signal, one server trickling its bytes held every client's items for its
    deadline (and retries) per image signal (found in review: minutes, every request a 504)."""
    slow_server = settings.model_copy(update={"fetch": settings.fetch.model_copy(update={
        "http_hosts": (image_server.netloc,), "allowed_networks": ("127.0.0.1/32",), "deadline_s": 3.0, "read_timeout_s": 2.0,
        "retries": 0})})
    with running(create_app(Champions(slow_server), slow_server.serve, ClosedConnections())) as url:
        where, answers = urlsplit(url), []
        slow = threading.Thread(target=lambda: answers.append(post(where, json.dumps(
            {"image_uri": image_server.url("trickle/a.jpg"), "title": "slow"}).encode())))
        slow.start()
        time.sleep(0.5)
        started = time.monotonic()
        status, _ = post(where, item(jpeg_bytes(6), title="quick"))
        quick = time.monotonic() - started
        slow.join(20)
    assert status == 200 and quick < 1.5
    status, body = answers[0]
    assert status == 503 and body["errors"] == {"image_quality": "transient: timeout (body not read within 3 s; 1 attempts)"}
    assert body["labels"]["text_safety"]["status"] == "ok"


def test_many_slow_image_servers_hold_up_no_other_request(settings, image_server) -> None:
    """Fetches held the event loop's default thread pool (os.cpu_count() + 4 threads, 6 on two
    cores), which also parses every body and runs the reload check: that many requests whose image
    server trickles held every other request, with no URI to fetch, for a fetch's deadline (found in
    review: 3.6 s for an item without a URI, with a 3 s deadline). Each request's fetch has a thread of its own."""
    import os

    slow_requests = min(32, (os.cpu_count() or 1) + 4)  # the default pool's threads, all of them held
    slow_server = settings.model_copy(update={"fetch": settings.fetch.model_copy(update={
        "http_hosts": (image_server.netloc,), "allowed_networks": ("127.0.0.1/32",), "deadline_s": 3.0, "read_timeout_s": 2.0,
        "retries": 0, "pool_size": slow_requests})})  # every fetch under way at once
    with running(create_app(Champions(slow_server), slow_server.serve, ClosedConnections())) as url:
        where, answers = urlsplit(url), []
        assert post(where, item(jpeg_bytes(5), title="warm"))[0] == 200
        slow = [threading.Thread(target=lambda: answers.append(post(where, json.dumps(
            {"image_uri": image_server.url("trickle/a.jpg"), "title": "slow"}).encode()))) for _ in range(slow_requests)]
        for thread in slow:
            thread.start()
        time.sleep(0.5)
        started = time.monotonic()
        status, _ = post(where, item(jpeg_bytes(6), title="quick, its image in the body"))
        quick = time.monotonic() - started
        for thread in slow:
            thread.join(20)
    assert status == 200 and quick < 1.5, f"an item without a URI took {quick:.1f} s behind {slow_requests} slow image fetches"
    assert [a[0] for a in answers] == [503] * slow_requests


def test_a_request_that_timed_out_frees_its_fetch_thread_by_its_time_limit(settings, image_server) -> None:
    """A fetch ends by its request's time limit: each ran on to the fetch policy's deadline (and its
    retries) after its request was answered 504, so `max_connections` slow image servers held every
    fetch thread, and a request for an image on a fast server timed out behind them (found in review)."""
    slow_server = settings.model_copy(update={
        "fetch": settings.fetch.model_copy(update={"http_hosts": (image_server.netloc,), "allowed_networks": ("127.0.0.1/32",),
                                                   "deadline_s": 8.0, "read_timeout_s": 2.0, "retries": 1, "pool_size": 4}),
        "serve": settings.serve.model_copy(update={"max_connections": 2, "request_timeout_s": 1.5})})
    with running(create_app(Champions(slow_server), slow_server.serve, ClosedConnections())) as url:
        where = urlsplit(url)
        assert post(where, item(jpeg_bytes(5), title="warm"))[0] == 200
        with ThreadPoolExecutor(2) as clients:
            slow = list(clients.map(lambda _: post(where, json.dumps({"image_uri": image_server.url("trickle/a.jpg")}).encode()), range(2)))
        status, body = post(where, json.dumps({"image_uri": image_server.url("img/a.jpg"), "title": "quick"}).encode())
    assert [s for s, _ in slow] == [504, 504]
    assert status == 200, body


def test_connections_past_the_limit_are_answered_503(settings) -> None:
    """Each connection may hold a body of up to `max_body_bytes`: without a limit on connections,
    20 clients holding 45 MB bodies each took the service's memory up by 907 MB (found in review)."""
    with running(create_app(Champions(settings), settings.serve, ClosedConnections()), max_connections=2) as url:
        where = urlsplit(url)
        held = [socket.create_connection((where.hostname, where.port), timeout=10) for _ in range(2)]  # open, nothing sent yet
        try:
            deadline, statuses = time.monotonic() + 5, []
            while 503 not in statuses and time.monotonic() < deadline:  # once the server has taken both connections
                connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
                connection.request("POST", "/score", item(title="third"), {"Content-Type": "application/json"})
                statuses.append(connection.getresponse().status)
                connection.close()
            assert statuses[-1] == 503
        finally:
            for s in held:
                s.close()


def test_as_many_kept_alive_clients_as_the_limit_are_all_answered(settings) -> None:
    """uvicorn refuses at its limit counting the connection asking: with `max_connections` given to it as its limit,
    as many kept-alive clients as that were all answered 503 (the benchmark's 32 clients: 269 of 300 requests)."""
    with running(create_app(Champions(settings), settings.serve, ClosedConnections()), max_connections=2) as url:
        where = urlsplit(url)
        clients = [http.client.HTTPConnection(where.hostname, where.port, timeout=30) for _ in range(2)]
        statuses = []
        try:
            for round_ in range(2):
                for i, connection in enumerate(clients):  # both stay open between their requests
                    connection.request("POST", "/score", item(jpeg_bytes(i), title=f"client {i}, request {round_}"),
                                       {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    response.read()
                    statuses.append(response.status)
        finally:
            for connection in clients:
                connection.close()
    assert statuses == [200] * 4


def closed_by_the_server(connection: socket.socket, trickle: bytes = b"") -> bool:
    """Whether the server closes the connection within 20 s, while `trickle` is sent a byte every 0.2 s."""
    deadline = time.monotonic() + 20
    connection.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if trickle:
                connection.sendall(trickle[:1])
                trickle = trickle[1:]
            if connection.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def test_connections_that_send_no_whole_request_head_are_closed_and_free_their_place(settings) -> None:
    """A connection that sent nothing held one of `max_connections` for ever (uvicorn sets no time
    limit before a request's head), so that many idle sockets locked every client out (503). Each is
    closed `head_timeout_s` after it opened, or after its last answer, and clients are answered again:
    one that sent nothing, one that trickles its head a byte at a time, one that sent part of its next head."""
    with running(create_app(Champions(settings), settings.serve, ClosedConnections()), max_connections=3, head_timeout_s=2) as url:
        where = urlsplit(url)
        idle, trickling, kept_alive = (socket.create_connection((where.hostname, where.port), timeout=10) for _ in range(3))
        try:
            kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: service\r\n\r\n")
            assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200")
            kept_alive.sendall(b"POST /score HTTP/1.1\r\nHost: service\r\n")  # the next request's head, never finished
            head = b"POST /score HTTP/1.1\r\nHost: service\r\nX-Slow: " + b"a" * 200  # 40 s of bytes: they do not put the deadline off
            with ThreadPoolExecutor(3) as watch:
                closed = list(watch.map(closed_by_the_server, (idle, trickling, kept_alive), (b"", head, b"")))
            assert closed == [True, True, True]
            assert post(where, item(jpeg_bytes(1), title="after the idle connections"))[0] == 200
        finally:
            for s in (idle, trickling, kept_alive):
                s.close()


LARGE_ANSWER = 16 * MB  # beyond what the socket buffers on loopback hold (about 4 MB in the server's, a client's capped at 64 KiB)


async def n_bytes(request: Request) -> Response:
    """N bytes for `GET /bytes?n=N`: answers beyond the socket buffers, as many pipelined answers (or
    one with many neighbours) add up to, without the cost of scoring them."""
    return Response(b"x" * int(request.query_params["n"]))


def large_answers() -> Starlette:
    """An app that answers only `GET /bytes?n=N`."""
    return Starlette(routes=[Route("/bytes", n_bytes)])


def asking(where, answers: int, answer_bytes: int) -> socket.socket:
    """A connection that has sent `answers` pipelined requests for `answer_bytes` each and reads through a small receive buffer."""
    connection = socket.socket()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connecting: the window stays small
    connection.settimeout(10)
    connection.connect((where.hostname, where.port))
    connection.sendall(f"GET /bytes?n={answer_bytes} HTTP/1.1\r\nHost: service\r\n\r\n".encode() * answers)
    return connection


def bytes_until_closed(connection: socket.socket) -> int:
    """What the connection still gives before the server's close ends it (a timeout when the server never closes)."""
    read = 0
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(1 << 20):
            read += len(chunk)
    return read


def statuses_at_once(where, connections: int) -> list[int]:
    """The statuses of small requests on `connections` connections all open before any asks: each 200 only
    where as many places are free."""
    opened = [http.client.HTTPConnection(where.hostname, where.port, timeout=10) for _ in range(connections)]
    try:
        for connection in opened:
            connection.connect()
        statuses = []
        for connection in opened:
            connection.request("GET", "/bytes?n=10")
            statuses.append(connection.getresponse().status)
        return statuses
    finally:
        for connection in opened:
            connection.close()


def test_connections_whose_client_never_reads_its_answers_are_closed_and_free_their_place() -> None:
    """A client that sends requests and never reads its answers held its connection for ever once the
    socket buffers were full (uvicorn sets no write timeout, and its close waits for its buffer to
    drain), so `max_connections` such clients locked every other client out (503): here one asking for
    a large answer and one pipelining a hundred smaller ones. Each is closed once it has taken none of
    its answers for `write_timeout_s`, its answers cut short, and clients are answered again: both places
    free at once (waiting for one let the test read the other's answers before its timeout on a busy machine)."""
    with running(large_answers(), max_connections=2, write_timeout_s=1) as url:
        where = urlsplit(url)
        large, pipelining = asking(where, 1, LARGE_ANSWER), asking(where, 100, LARGE_ANSWER // 100)
        try:
            statuses, deadline = [], time.monotonic() + 30
            while statuses[-1:] != [[200, 200]] and time.monotonic() < deadline:
                time.sleep(0.5)
                statuses.append(statuses_at_once(where, 2))
            assert statuses[-1] == [200, 200], f"still refused after 30 s: {statuses}"
            assert [bytes_until_closed(s) < LARGE_ANSWER for s in (large, pipelining)] == [True, True]
        finally:
            for s in (large, pipelining):
                s.close()


def test_a_client_that_reads_slowly_but_steadily_gets_its_whole_answer() -> None:
    """The write timeout is on a client that takes nothing, not on an answer's time to leave: reading
    128 KiB every 0.05 s, a 16 MB answer takes seconds, most of them with the server's writing paused."""
    with running(large_answers(), write_timeout_s=1) as url:
        where = urlsplit(url)
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        try:
            connection.request("GET", f"/bytes?n={LARGE_ANSWER}")
            response, read = connection.getresponse(), 0
            while chunk := response.read(128 * 1024):  # an answer cut short ends early (no exception)
                read += len(chunk)
                time.sleep(0.05)
        finally:
            connection.close()
    assert response.status == 200 and read == LARGE_ANSWER


@contextlib.contextmanager
def uvicorn_log() -> Iterator[list[str]]:
    """The messages uvicorn logs meanwhile: its loggers do not reach pytest's handler."""
    lines: list[str] = []
    keep = logging.Handler()
    keep.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(keep)
    try:
        yield lines
    finally:
        logging.getLogger("uvicorn.error").removeHandler(keep)


def test_health_counts_the_connections_each_timeout_closed_and_the_log_names_their_clients(settings) -> None:
    """A connection closed for its head or its answers was neither counted nor, for its head, logged:
    `/health` could not tell an operator that clients were being cut off. After one of each, it says
    1 and 1, and the log has a line naming each client and its timeout."""
    closed = ClosedConnections()
    app = create_app(Champions(settings), settings.serve, closed)
    app.router.routes.append(Route("/bytes", n_bytes))
    with running(app, head_timeout_s=1, write_timeout_s=1, closed=closed) as url, uvicorn_log() as lines:
        where = urlsplit(url)
        idle, large = socket.create_connection((where.hostname, where.port), timeout=10), asking(where, 1, LARGE_ANSWER)
        idle_client, large_client = (":".join(map(str, s.getsockname())) for s in (idle, large))
        try:
            assert closed_by_the_server(idle)
            deadline, counts = time.monotonic() + 20, {}
            while counts != {"head_timeout": 1, "write_timeout": 1, "max_connections": 0, "max_connections_at_accept": 0} and time.monotonic() < deadline:  # large's abort, without reading it
                time.sleep(0.2)
                counts = health(where)["closed_connections"]
            assert counts == {"head_timeout": 1, "write_timeout": 1, "max_connections": 0, "max_connections_at_accept": 0}
            assert bytes_until_closed(large) < LARGE_ANSWER
        finally:
            for s in (idle, large):
                s.close()
    assert sorted(lines) == sorted([f"Closed the connection of {idle_client}: it sent no whole request head within 1s.",
                                    f"Closed the connection of {large_client}: it took none of its answers for 1s."])


def get_health(where) -> tuple[str, int, dict[str, str], bytes]:
    """`GET /health` on a connection of its own: the client's address, and the answer's status, headers (its date left out) and body."""
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        connection.connect()
        client = ":".join(map(str, connection.sock.getsockname()))
        connection.request("GET", "/health")
        response = connection.getresponse()
        return client, response.status, {k.lower(): v for k, v in response.getheaders() if k.lower() != "date"}, response.read()
    finally:
        connection.close()


def test_health_counts_the_connections_refused_at_max_connections_and_the_log_names_their_clients(settings) -> None:
    """uvicorn's own 503 once `max_connections` were open was not counted, and its log line named no
    client: `/health` could not tell an operator that clients were turned away. With the one
    connection allowed held, two clients get uvicorn's 503 as before (as their connections open), and
    afterwards `/health` counts 2 and the log has one line naming each client."""
    closed = ClosedConnections()
    with running(create_app(Champions(settings), settings.serve, closed), max_connections=1, closed=closed) as url, uvicorn_log() as lines:
        where = urlsplit(url)
        held = socket.create_connection((where.hostname, where.port), timeout=10)  # open, nothing sent yet
        try:
            answers, deadline = [], time.monotonic() + 10
            while sum(status == 503 for _, status, _, _ in answers) < 2 and time.monotonic() < deadline:  # once the server has taken it
                answers.append(get_health(where))
        finally:
            held.close()
            answers.append(get_health(where))
            while answers[-1][1] != 200 and time.monotonic() < deadline:  # once the server has seen it closed
                answers.append(get_health(where))
    refused = [(client, headers, body) for client, status, headers, body in answers if status == 503]
    assert len(refused) >= 2 and answers[-1][1] == 200
    assert {(json.dumps(headers, sort_keys=True), body) for _, headers, body in refused} == {
        (json.dumps({"connection": "close", "content-length": "19", "content-type": "text/plain; charset=utf-8", "server": "uvicorn"}, sort_keys=True),
         b"Service Unavailable")}
    assert json.loads(answers[-1][3])["closed_connections"] == {"head_timeout": 0, "write_timeout": 0, "max_connections": 0,
                                                               "max_connections_at_accept": len(refused)}
    assert sorted(line for line in lines if "503" in line or "concurrency" in line) == sorted(
        f"Refused the connection of {client} with 503: max_connections (1) reached." for client, _, _ in refused)


def test_a_connection_beyond_the_limit_that_sends_nothing_is_answered_503_at_once_and_counted() -> None:
    """A connection made while `max_connections` were open was accepted and, sending nothing, held until
    `head_timeout_s`, then counted as a head timeout, never as refused: under a flood of idle sockets an
    operator saw the slots taken and nothing in `/health` that said why. It gets uvicorn's 503 as it
    opens, counted under `max_connections_at_accept` and logged with its client, and holds no place:
    once the connection allowed closes the next client is served. One that sent its request at once
    gets the 503 too: what it sent is read and dropped (a socket closed with it unread reset the
    connection, and the client lost its 503)."""
    closed = ClosedConnections()
    with running(large_answers(), max_connections=1, head_timeout_s=30, closed=closed) as url, uvicorn_log() as lines:
        where = urlsplit(url)
        held = socket.create_connection((where.hostname, where.port), timeout=5)  # accepted first, nothing sent
        flood = socket.create_connection((where.hostname, where.port), timeout=5)  # nothing sent either
        asking = socket.create_connection((where.hostname, where.port), timeout=5)
        asking.sendall(b"GET /bytes?n=1 HTTP/1.1\r\nHost: service\r\n\r\n")
        flood_client = ":".join(map(str, flood.getsockname()))
        try:
            time.sleep(0.5)  # the server has refused both by now, asking's request in its buffer
            answers = [b"", b""]
            for i, s in enumerate((flood, asking)):
                while chunk := s.recv(65536):  # a timeout when it is held instead
                    answers[i] += chunk
            held.close()
            statuses, deadline = [], time.monotonic() + 10
            while statuses[-1:] != [200] and time.monotonic() < deadline:  # once the server has seen it closed; flood and asking are still open
                connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
                connection.request("GET", "/bytes?n=2")
                statuses.append(connection.getresponse().status)
                connection.close()
        finally:
            for s in (held, flood, asking):
                s.close()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and answer.endswith(b"\r\n\r\nService Unavailable")
        assert b"connection: close\r\n" in answer
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}
    assert closed == ClosedConnections(max_connections_at_accept=2 + len(statuses) - 1)  # flood's, asking's and the 503s before the 200
    assert f"Refused the connection of {flood_client} with 503: max_connections (1) reached." in lines


def held_requests(release: threading.Event, gone: threading.Semaphore, ended: threading.Semaphore) -> Route:
    """`GET /held`: a request that runs on after its client has gone, as one the service is still answering does,
    until `release` is set; `gone` is released once the server has seen its client go, `ended` once it no longer counts the request under way."""
    async def held(request: Request) -> Response:
        asyncio.current_task().add_done_callback(lambda _: ended.release())  # after uvicorn's own, which takes the request off those under way
        while (await request.receive())["type"] != "http.disconnect":  # the request, then the disconnect: its connection is no longer counted
            pass
        gone.release()
        await asyncio.to_thread(release.wait, 30)
        return Response(b"too late")
    return Route("/held", held)


def test_a_request_while_more_than_max_connections_requests_are_under_way_is_answered_503_counted_and_holds_no_place(settings) -> None:
    """A request that arrives while more than `max_connections` requests are under way (their clients gone,
    their requests still running) gets uvicorn's 503 (`Connection: close`) on a connection accepted while
    there were not that many, counted under `max_connections` in `/health` and logged with its client;
    once the requests under way end, as many connections as the limit are answered at once."""
    closed = ClosedConnections()
    app = create_app(Champions(settings), settings.serve, closed)
    release, gone, ended = threading.Event(), threading.Semaphore(0), threading.Semaphore(0)
    app.router.routes.append(held_requests(release, gone, ended))
    with running(app, max_connections=2, head_timeout_s=30, closed=closed) as url, uvicorn_log() as lines:
        where = urlsplit(url)
        asking = socket.create_connection((where.hostname, where.port), timeout=10)  # accepted first, nothing sent yet
        asking_client = ":".join(map(str, asking.getsockname()))
        try:
            for _ in range(3):  # one more request under way than the limit, never more than asking and one other connection open
                with socket.create_connection((where.hostname, where.port), timeout=10) as leaving:
                    leaving.sendall(b"GET /held HTTP/1.1\r\nHost: service\r\n\r\n")
                assert gone.acquire(timeout=10), "the held request did not see its client go"
            asking.sendall(b"GET /health HTTP/1.1\r\nHost: service\r\n\r\n")
            answer = b"".join(iter(lambda: asking.recv(65536), b""))  # until the server closes
            release.set()
            assert all(ended.acquire(timeout=10) for _ in range(3)), "a held request did not end"
            after = [http.client.HTTPConnection(where.hostname, where.port, timeout=10) for _ in range(2)]
            for connection in after:  # both open before either asks
                connection.connect()
            answers = []
            for connection in after:
                connection.request("GET", "/health")
                response = connection.getresponse()
                answers.append((response.status, json.loads(response.read())))
        finally:
            release.set()
            asking.close()
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and answer.endswith(b"\r\n\r\nService Unavailable"), answer
    assert b"connection: close\r\n" in answer
    assert [status for status, _ in answers] == [200, 200]
    assert answers[-1][1]["closed_connections"] == {"head_timeout": 0, "write_timeout": 0, "max_connections": 1, "max_connections_at_accept": 0}
    assert [line for line in lines if "503" in line or "concurrency" in line] == [
        f"Refused the request of {asking_client} with 503: max_connections (2) reached."]


def test_concurrent_requests_share_a_model_batch(service) -> None:
    where, _ = service
    before = health(where)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: post(where, item(jpeg_bytes(i), title=f"item {i}"))[0], range(8)))
    after = health(where)
    items, batches = after["items"] - before["items"], after["batches"] - before["batches"]
    assert statuses == [200] * 8 and items == 8 and batches < items


def test_the_champion_alias_moving_reloads_the_service(service, settings) -> None:
    where, champions = service
    before = health(where)
    registry = Registry(settings.registry_uri)
    current = registry.resolve("text_safety", "champion")
    new = registry.register("text_safety", "code:test-another-build", dict(current.params))
    registry.promote("text_safety", new.version)
    deadline = time.monotonic() + 30
    while health(where)["signals"]["text_safety"] != new.version:
        assert time.monotonic() < deadline, health(where)
        time.sleep(0.1)
    after = health(where)
    assert after["reloads"] == before["reloads"] + 1 and after["signals"]["image_quality"] == before["signals"]["image_quality"]
    status, body = post(where, item(title="after the reload"))
    assert body["labels"]["text_safety"]["model_version"] == new.version != current.version and status == 422  # no image: image_quality's error


def test_a_client_gone_mid_body_is_refused_not_an_error() -> None:
    """A client that disconnects while its body is read: a 400 in the access log, not an ASGI traceback."""
    messages = iter([{"type": "http.request", "body": b'{"title": ', "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> dict:
        return next(messages)

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(Refused) as refused:
        asyncio.run(read_body(request, MB, 5))
    assert refused.value.status == 400 and "went away" in refused.value.reason and "10 bytes came" in refused.value.reason


def test_a_reload_keeps_the_models_of_backing_embedders(tmp_path, empty_registry_db) -> None:
    """image_topics runs on the image embedder's model, cached under that embedder's key: a reload
    (here of text_safety) must keep it, or every later reload loads it from disk again."""
    shutil.copytree(empty_registry_db.parent, tmp_path / "_registry")
    enabled = load_settings("local").enabled_signals
    settings = load_settings("local", [f"lakehouse={tmp_path}", *(f"signals.{n}.enabled={'true' if n in ('text_safety', 'image_topics') else 'false'}"
                                                                   for n in enabled)])
    champions = Champions(settings)
    backbone = champions.current.signals["image_topics"].backbones()[0].cache_key
    loads = model_cache.load_count(backbone)
    registry = Registry(settings.registry_uri)
    for build in range(2):
        current = registry.resolve("text_safety", "champion")
        registry.promote("text_safety", registry.register("text_safety", f"code:test-build-{build}", dict(current.params)).version)
        assert champions.check()
    assert model_cache.load_count(backbone) == loads


def test_a_reload_that_fails_halfway_leaves_none_of_its_models_in_the_cache(settings, monkeypatch) -> None:
    """A promote moves text_safety and image_quality's weights do not load: the reload loads the
    new text_safety model, then fails, and the service serves the loaded scorer on. Once the
    promote is rolled back no reload is due any more: the model only the failed reload loaded must
    then leave the cache, or it stays in memory for the life of the process."""
    from signals.labels.quality import ImageQualityLabeler

    champions = Champions(settings)
    served = {name: s.config.model.version for name, s in champions.current.signals.items()}
    registry = Registry(settings.registry_uri)
    current = registry.resolve("text_safety", "champion")
    registry.promote("text_safety", registry.register("text_safety", "code:test-build-halfway", dict(current.params)).version)
    loaded: list = []
    real = model_cache.get_or_load
    monkeypatch.setattr(model_cache, "get_or_load", lambda key, load: (loaded.append(key), real(key, load))[1])

    def unreadable(self, gpu_addresses=()):
        raise OSError("the weights could not be read")

    monkeypatch.setattr(ImageQualityLabeler, "load", unreadable)
    assert not champions.check() and "the weights could not be read" in champions.last_error
    monkeypatch.undo()
    kept = {key for s in champions.current.signals.values() for key in (s.cache_key, *(b.cache_key for b in s.backbones()))}
    only_failed = [key for key in loaded if key not in kept]
    assert only_failed  # the new text_safety model was loaded before image_quality failed
    registry.rollback("text_safety")
    assert not champions.check() and champions.last_error is None  # the loaded champions are the registry's again
    assert {name: s.config.model.version for name, s in champions.current.signals.items()} == served
    for key in only_failed:  # loaded again on asking: it had left the cache
        assert model_cache.get_or_load(key, lambda: "loaded again") == "loaded again"


def test_the_batcher_bounds_batches_and_its_queue_and_drops_what_timed_out() -> None:
    import asyncio

    from serving.batcher import Busy, MicroBatcher

    batches: list[list[int]] = []

    def score(items: list[int]) -> list[int]:
        batches.append(items)
        time.sleep(0.2)  # a model pass: what arrives meanwhile waits for the next batch
        return [i * 10 for i in items]

    async def scenario() -> tuple[list[int], bool, bool]:
        batcher = MicroBatcher(score, max_batch=3, max_wait_s=0.05, max_queue=4)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.1)  # 0 is being scored alone (nothing came within 50 ms)
        late = asyncio.ensure_future(asyncio.wait_for(batcher.submit(99), 0.05))  # gives up before the next batch begins
        await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 4)]
        await asyncio.sleep(0.01)
        try:
            await batcher.submit(5)  # the queue holds 4: 99 and 1..3
            busy = False
        except Busy:
            busy = True
        timed_out = False
        try:
            await late
        except TimeoutError:
            timed_out = True
        results = [await first, *[await w for w in waiting]]
        await batcher.stop()
        return results, busy, timed_out

    results, busy, timed_out = asyncio.run(scenario())
    assert results == [0, 10, 20, 30] and busy and timed_out
    assert batches == [[0], [1, 2, 3]]  # at most 3 a batch; 99 gave up and was never scored


def test_serve_refuses_a_port_that_is_no_port(tmp_path) -> None:
    from jobs.cli import main

    assert main(["serve", "--port", "70000", "--set", f"lakehouse={tmp_path}"]) == 2


@pytest.mark.subprocess
def test_ctrl_c_stops_the_service_cleanly_without_a_traceback(tmp_path, empty_registry_db) -> None:
    """`content-signals serve` is stopped with Ctrl-C: uvicorn shuts down, then raises the SIGINT it
    caught again, and the command ended in a KeyboardInterrupt traceback after its clean shutdown
    (exit by SIGINT), where uvicorn's own command line exits 0."""
    shutil.copytree(empty_registry_db.parent, tmp_path / "_registry")
    off = [arg for n in load_settings("local").enabled_signals if n != "text_safety" for arg in ("--set", f"signals.{n}.enabled=false")]
    command = [sys.executable, "-m", "jobs.cli", "serve", "--port", "0", "--set", f"lakehouse={tmp_path}", *off]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in process.stdout:  # uvicorn says where it listens once the champions are loaded
            lines.append(line)
            if "Uvicorn running on" in line:
                break
        url = urlsplit(lines[-1].split("running on ")[1].split()[0])
        assert post(url, item(title="fine text"))[0] == 200
        process.send_signal(signal.SIGINT)
        out = "".join(lines) + process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Application shutdown complete" in out and "Traceback" not in out, out
