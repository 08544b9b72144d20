"""Real servers on loopback for the fetch tests, the Spark tests and the benchmark: an HTTP image
server with injected faults, and moto's S3 in server mode, each logging every request it gets.

HTTP routes (`ImageServer`): /img/<name> the image; /slow/<name> headers, then a pause longer
than any test's read timeout, then the image; /flaky/<n>/<name> HTTP 500 for the first n
requests of that path, then the image; /busy/<name> always 503; /reset/<name> the connection
reset (RST) after the request is read; /missing/<name> 404; /forbidden/<name> 403; /huge a
Content-Length of 5 GB and a small body; /endless a body that never ends; /trickle/<name> the
image a byte every TRICKLE_S (each under a read timeout, the whole far over a deadline);
/trickle-headers its status line and an endless header a byte every TRICKLE_S; /continues
interim "100 Continue" responses without end; /hints/<name> an interim "103 Early Hints"
response, then the image; /endless-trailer a chunked body of three bytes
followed by trailer lines without end; /redirect?to=<url> a 302 to `url`.

S3 (`S3Server`): keys are stored as uploaded; a key under faults/slow/ answers after the same
pause, under faults/flaky-<n>/ answers 500 to the first n reads (HEAD or GET), under
faults/deny/ answers 403 to reads.
"""
from __future__ import annotations

import logging
import re
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from moto.server import ThreadedMotoServer

SLOW_S = 2.0  # the pause of slow routes: longer than the read timeouts the tests configure
TRICKLE_S = 0.2  # the pause between the bytes of /trickle: shorter than those read timeouts
HUGE_BYTES = 5 * 1024**3
PUT_TIMEOUT_S = 60.0  # how long S3Server.put waits for a request: the server is on loopback, slow only when the machine is busy


class RequestLog:
    """Paths a server was asked for, in order, shared by its handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: list[str] = []

    def add(self, path: str) -> None:
        with self._lock:
            self._paths.append(path)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths)

    def count(self, path: str) -> int:
        return sum(1 for p in self.paths if p == path)

    def counts(self) -> Counter:
        return Counter(self.paths)

    def clear(self) -> None:
        with self._lock:
            self._paths.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers on every kept-alive request, as no real server makes it
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Quiet: the request log is `server.log`."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.server.log.add(self.path)
        parts = urlsplit(self.path)
        route, _, rest = parts.path.lstrip("/").partition("/")
        if route == "img":
            self._image(rest)
        elif route == "slow":
            self._send_headers(200, len(self._lookup(rest) or b""))
            time.sleep(SLOW_S)
            self._write(self._lookup(rest) or b"")
        elif route == "flaky":
            failures, _, name = rest.partition("/")
            if self.server.count(self.path) <= int(failures):
                self._send(500, b"try again")
            else:
                self._image(name)
        elif route == "busy":
            self._send(503, b"busy")
        elif route == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # linger 0: the peer gets a RST
            self.close_connection = True
        elif route == "missing":
            self._send(404, b"no such image")
        elif route == "forbidden":
            self._send(403, b"forbidden")
        elif route == "huge":
            self._send_headers(200, HUGE_BYTES, close=True)
            self._write(b"\xff\xd8" + b"\0" * 1000)
        elif route == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            block = b"\0" * 65536
            for _ in range(HUGE_BYTES // len(block)):  # a client that never stops reading gets 5 GB
                if not self._write(block):
                    return
        elif route == "trickle":
            image = self._lookup(rest) or b""
            self._send_headers(200, len(image), close=True)
            for i in range(len(image)):
                if not self._write(image[i : i + 1]):  # the handler's writes are unbuffered: each byte goes at once
                    return
                time.sleep(TRICKLE_S)
        elif route == "trickle-headers":
            self.close_connection = True
            for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 60_000:
                if not self._write(bytes([byte])):
                    return
                time.sleep(TRICKLE_S)
        elif route in ("continues", "endless-trailer"):
            self.close_connection = True
            if route == "endless-trailer" and not self._write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"):
                return
            block = (b"HTTP/1.1 100 Continue\r\n\r\n" if route == "continues" else b"X-Trailer: " + b"y" * 100 + b"\r\n") * 1000
            for _ in range(HUGE_BYTES // len(block)):  # a client that never stops reading gets 5 GB
                if not self._write(block):
                    return
        elif route == "hints":
            if self._write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"):
                self._image(rest)
        elif route == "redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"no such route")

    def _lookup(self, name: str) -> bytes | None:
        return self.server.images.get(name)

    def _image(self, name: str) -> None:
        data = self._lookup(name)
        if data is None:
            self._send(404, b"no such image")
        else:
            self._send(200, data)

    def _send_headers(self, status: int, length: int, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(length))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _send(self, status: int, body: bytes) -> None:
        self._send_headers(status, len(body))
        self._write(body)

    def _write(self, data: bytes) -> bool:
        """Write to the client; False once it has gone (a client that stopped reading)."""
        try:
            self.wfile.write(data)
            return True
        except OSError:
            self.close_connection = True
            return False

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the connection was reset on purpose, or the client left


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    images: dict[str, bytes]
    log: RequestLog

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._lock = threading.Lock()
        self._requests: Counter = Counter()  # per path, for the flaky routes: not cleared with the log

    def count(self, path: str) -> int:
        """Count a request of `path`; the requests of it so far, this one included."""
        with self._lock:
            self._requests[path] += 1
            return self._requests[path]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: faults are the point of this server."""


class ImageServer:
    """The fault-injecting HTTP image server on `host` (a loopback address), on a free port."""

    def __init__(self, images: dict[str, bytes], host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.images = self.images = images  # live: a test may add images
        self._server.log = self.log = RequestLog()
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"image-server-{self.port}", daemon=True)

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.netloc}/{path.lstrip('/')}"

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Faults:
    """WSGI middleware in front of moto: logs every request, injects faults by key."""

    def __init__(self, app: Any, log: RequestLog) -> None:
        self.app, self.log = app, log
        self._lock = threading.Lock()
        self._reads: Counter = Counter()  # reads (HEAD or GET) per path

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        self.log.add(f"{method} {path}")
        if method not in ("GET", "HEAD"):  # uploads are never faulty
            return self.app(environ, start_response)
        if "/faults/slow/" in path:
            time.sleep(SLOW_S)
        flaky = re.search(r"/faults/flaky-(\d+)/", path)
        with self._lock:
            self._reads[path] += 1
            reads = self._reads[path]
        if flaky and reads <= int(flaky.group(1)):
            start_response("500 Internal Server Error", [("Content-Type", "application/xml")])
            return [b"<Error><Code>InternalError</Code><Message>try again</Message></Error>"]
        if "/faults/deny/" in path:
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"]
        return self.app(environ, start_response)


class S3Server(ThreadedMotoServer):
    """moto's S3 in server mode on 127.0.0.1 (a free port), behind `_Faults`; credentials for it
    are `CREDENTIALS` (moto accepts any)."""

    CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 0, verbose=False)
        self.log = RequestLog()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    def _server_entry(self) -> None:
        """ThreadedMotoServer's server with moto's S3 application alone, wrapped in `_Faults`: moto's
        dispatcher between its services lists its modules on disk for every request, under a lock."""
        from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = _Faults(create_backend_app("s3"), self.log)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def endpoint_url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def put(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Create `bucket` (if need be) holding `objects` (key -> bytes), through the S3 API. The
        client waits as long as a loaded machine needs (the SDK's default gives up on a request after
        3 s, and moto's first request sets up its S3 backend)."""
        from pyarrow import fs

        client = fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                                 endpoint_override=self.endpoint_url.split("://", 1)[1], allow_bucket_creation=True,
                                 connect_timeout=PUT_TIMEOUT_S, request_timeout=PUT_TIMEOUT_S)
        client.create_dir(bucket)
        for key, data in objects.items():
            with client.open_output_stream(f"{bucket}/{key}") as out:
                out.write(data)

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
