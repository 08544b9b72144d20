"""Fetching an image's bytes by URI (file://, s3://, http(s)://), within an allowlist and limits.

A corpus URI comes from data, so it is treated like any other user input: only URIs inside the
allowlist of the configuration's `fetch:` section (`FetchPolicy`, travelling to the workers in
`SignalConfig.fetch`, never from data or the registry) are opened at all: file roots (resolved,
so neither `..` nor a symlink leaves them), S3 buckets or prefixes, HTTP hosts. An HTTP host is
resolved once, every address it resolves to is checked (loopback, link-local such as the cloud
metadata endpoint 169.254.169.254, private and other non-global addresses are refused unless
their network is listed in `allowed_networks`, and so is an IPv6 address reaching a non-global
IPv4 one through NAT64, 6to4 or the IPv4-compatible form), and the connection goes to the checked
address, so a DNS answer that changes between the check and the connection (rebinding) cannot reach
anything else. Redirects are followed by hand, each hop checked like the first; interim (1xx)
responses are passed over to the final one (`_FinalResponse`), whose status must be 2xx.

Each fetch has connect and read timeouts and a deadline, which no receive of an HTTP attempt waits
past (`_DeadlineReader`: a server trickling its headers, or sending interim responses or trailer
lines without end, which the HTTP client reads inside one call, stops there too), nor the
lookup of its host, its connect, TLS handshake or wait for a pooled connection, reads at most
`max_bytes` (counted while streaming: a Content-Length is never trusted, an endless body stops
at the cap), and retries with exponential backoff only what may pass (timeouts, refused or reset connections, 5xx, 429).
A failure is a `FetchError`, an `InputError` whose message is the row's error reason: one of
REASONS, prefixed `transient: ` (signals.contracts.TRANSIENT_PREFIX) when a later refresh
should try again. A worker holds at most `max_bytes` (twice, while joining chunks) per fetch
running, and as many fetches run as the signal has prepare threads; connections per host are
capped at `pool_size`, and the pools kept per host at ADDRESSES_PER_HOST (the addresses it
resolved to most recently): a CDN that answers with a new address every few minutes would
otherwise leave a pool of idle connections behind for each one, for as long as the worker lives.
"""
from __future__ import annotations

import errno
import functools
import http.client
import io
import ipaddress
import os
import random
import re
import socket
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from signals.contracts import TRANSIENT_PREFIX
from signals.decode import DecodeLimits, InputError

NOT_FOUND = "not found"
FORBIDDEN = "forbidden"
TIMEOUT = "timeout"
TOO_LARGE = "too large"
NOT_ALLOWED = "not allowed"
REDIRECTED_OUT = "redirected out of bounds"
SERVER_ERROR = "server error"
CONNECTION_FAILED = "connection failed"
REASONS = (NOT_FOUND, FORBIDDEN, TIMEOUT, TOO_LARGE, NOT_ALLOWED, REDIRECTED_OUT, SERVER_ERROR, CONNECTION_FAILED)
TRANSIENT_REASONS = frozenset({TIMEOUT, SERVER_ERROR, CONNECTION_FAILED})
ADDRESSES_PER_HOST = 4  # connection pools kept per HTTP host, one per address it resolved to, most recent first

CHUNK_BYTES = 256 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(InputError):
    """A URI that gave no bytes; the message (`transient: ` + reason, or the reason) is the row's error."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail
        self.transient = reason in TRANSIENT_REASONS
        super().__init__(f"{TRANSIENT_PREFIX if self.transient else ''}{reason}{f' ({detail})' if detail else ''}")


@dataclass(frozen=True)
class FetchPolicy:
    """Where images may be fetched from and the limits of one fetch (the configuration's
    `fetch:` section); an empty allowlist fetches nothing."""

    file_roots: tuple[str, ...] = ()
    s3_prefixes: tuple[str, ...] = ()  # "bucket" or "bucket/prefix"
    http_hosts: tuple[str, ...] = ()  # "host" (any port) or "host:port"
    allowed_networks: tuple[str, ...] = ()  # non-global addresses that may be fetched, e.g. "10.1.0.0/16"
    s3_endpoint_url: str | None = None  # an S3-compatible server; credentials come from the environment
    s3_region: str | None = None
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    deadline_s: float = 60.0  # one attempt, its redirects and its body: a server trickling under the read timeout stops here
    retries: int = 2  # attempts after the first, on transient failures only
    backoff_s: float = 0.25  # wait before the first retry; doubles each time
    max_bytes: int = DecodeLimits.max_bytes
    pool_size: int = 8  # connections per HTTP host (kept, and open at once)
    max_redirects: int = 5

    def __post_init__(self) -> None:
        """Fail at start-up on an entry that could never match (every row would be "not allowed", for good)."""
        for network in self.allowed_networks:
            ipaddress.ip_network(network, strict=False)
        for host in self.http_hosts:
            if not re.fullmatch(r"[a-z0-9._-]+(:[0-9]+)?|\[[0-9a-f:.]+\](:[0-9]+)?", host):
                raise ValueError(f"fetch.http_hosts {host!r}: a host in lower case, or host:port (no scheme, no path)")
        for prefix in self.s3_prefixes:
            if "://" in prefix or not prefix.strip("/"):
                raise ValueError(f"fetch.s3_prefixes {prefix!r}: a bucket, or bucket/prefix (no s3://)")

    @property
    def enabled(self) -> bool:
        """Whether any URI can be fetched at all."""
        return bool(self.file_roots or self.s3_prefixes or self.http_hosts)


def fetch(uri: str, policy: FetchPolicy) -> bytes:
    """The bytes at `uri`, or FetchError with the reason (retried first when transient)."""
    return fetcher(policy).fetch(uri)


_fetchers: dict[FetchPolicy, Fetcher] = {}
_fetchers_lock = threading.Lock()


def fetcher(policy: FetchPolicy) -> Fetcher:
    """This process's fetcher for `policy`: its connection pools are shared by every task and thread."""
    with _fetchers_lock:
        if policy not in _fetchers:
            _fetchers[policy] = Fetcher(policy)
        return _fetchers[policy]


class Fetcher:
    """Fetches URIs under one policy, keeping connections (HTTP pools, one S3 client) between fetches."""

    def __init__(self, policy: FetchPolicy, sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, str, int], OrderedDict[str, Any]] = {}  # (scheme, host, port) -> address -> pool, oldest first
        self._s3: Any = None
        self._roots = tuple(Path(root).resolve() for root in policy.file_roots)
        self._written_roots = tuple(Path(os.path.normpath(os.path.abspath(root))) for root in policy.file_roots)
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in policy.allowed_networks)

    def fetch(self, uri: str) -> bytes:
        """The bytes at `uri`; transient failures retried with exponential backoff (and jitter)."""
        if not isinstance(uri, str) or not uri:
            raise FetchError(NOT_ALLOWED, "no URI")
        try:
            return self._fetch(uri)
        except FetchError:
            raise
        except ValueError as exc:  # urlsplit's "Invalid IPv6 URL", a NUL in a path: the row's error, never the task's
            raise FetchError(NOT_ALLOWED, f"malformed URI ({_unquoted(exc)})") from None

    def _fetch(self, uri: str) -> bytes:
        scheme = urlsplit(uri).scheme.lower()
        once = {"file": self._file, "s3": self._s3_object, "http": self._http, "https": self._http}.get(scheme)
        if once is None:
            raise FetchError(NOT_ALLOWED, f"scheme {scheme or 'none'!r}")
        for attempt in range(self.policy.retries + 1):
            try:
                return once(uri)
            except FetchError as exc:
                if not exc.transient:
                    raise
                if attempt == self.policy.retries:
                    raise FetchError(exc.reason, "; ".join(filter(None, [exc.detail, f"{attempt + 1} attempts"]))) from None
            self._sleep(self.policy.backoff_s * 2**attempt * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    # file://

    def _file(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise FetchError(NOT_ALLOWED, "a file URI names no host, query or fragment")
        self._check_file(Path(os.path.normpath(unquote(parts.path))), lexical=True)  # before the file system is asked anything
        try:
            path = Path(unquote(parts.path)).resolve(strict=True)
        except FileNotFoundError:
            try:
                path = Path(unquote(parts.path)).resolve()  # its existing part's links resolved: a link out of a root is still out
            except (OSError, RuntimeError) as exc:  # a symlink loop past the missing part
                raise FetchError(NOT_FOUND, type(exc).__name__) from None
            self._check_file(path)  # outside the roots is "not allowed", whether it exists or not
            raise FetchError(NOT_FOUND) from None
        except (OSError, RuntimeError) as exc:  # a symlink loop, a path component that is a file
            raise FetchError(NOT_FOUND, type(exc).__name__) from None
        self._check_file(path)
        try:
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:  # a FIFO's open would wait for a writer
                if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                    raise FetchError(NOT_FOUND, "not a regular file")
                data = file.read(self.policy.max_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise FetchError(NOT_FOUND) from None
        except PermissionError:
            raise FetchError(FORBIDDEN) from None
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENODEV):  # a socket or a device file: nothing to read
                raise FetchError(NOT_FOUND, "not a regular file") from None
            # a network file system that failed: may pass
            raise FetchError(CONNECTION_FAILED, type(exc).__name__) from None
        return self._capped(data)

    def _check_file(self, path: Path, lexical: bool = False) -> None:
        """NOT_ALLOWED unless `path` is in a file root: a resolved path in a resolved root, or (`lexical`,
        the URI's path as written) in a root as configured too, so no path outside is ever looked up."""
        roots = (*self._roots, *self._written_roots) if lexical else self._roots
        if not any(path.is_relative_to(root) for root in roots):
            raise FetchError(NOT_ALLOWED, "outside the file roots")

    # s3://

    def _s3_object(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        bucket, key = parts.netloc, parts.path.lstrip("/")
        # userinfo or a port is no bucket (and the reason would name it, a password with it); pyarrow's S3
        # client cuts a key at a NUL, and cut short it names another object
        odd = "@" in bucket or ":" in bucket or "\0" in key
        if odd or not bucket or not key or parts.query or parts.fragment or any(s in ("", ".", "..") for s in key.split("/")):
            raise FetchError(NOT_ALLOWED, "not a plain s3://bucket/key")
        if not any(_under(f"{bucket}/{key}", prefix) for prefix in self.policy.s3_prefixes):
            raise FetchError(NOT_ALLOWED, f"bucket {bucket!r} or its prefix is not in the allowlist")
        try:
            with self._s3_client().open_input_file(f"{bucket}/{key}") as file:
                size = file.size()
                if size > self.policy.max_bytes:
                    raise FetchError(TOO_LARGE, f"over {self.policy.max_bytes} bytes")
                return self._capped(file.read(size))
        except FileNotFoundError:
            raise FetchError(NOT_FOUND) from None
        except OSError as exc:
            raise FetchError(_s3_reason(str(exc))) from None

    def _s3_client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                from pyarrow import fs

                endpoint, scheme = self.policy.s3_endpoint_url, "https"
                if endpoint and "://" in endpoint:
                    scheme, endpoint = endpoint.split("://", 1)
                self._s3 = fs.S3FileSystem(
                    region=self.policy.s3_region, endpoint_override=endpoint, scheme=scheme,
                    connect_timeout=self.policy.connect_timeout_s, request_timeout=self.policy.read_timeout_s,
                    retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1),  # retried here, by the same rule as HTTP
                )
            return self._s3

    # http(s)://

    def _http(self, uri: str) -> bytes:
        url = uri
        _attempt.deadline = time.monotonic() + self.policy.deadline_s  # for every hop and the body
        for hop in range(self.policy.max_redirects + 1):
            try:
                response = self._request(url)
            except FetchError as exc:
                if hop and exc.reason == NOT_ALLOWED:
                    raise FetchError(REDIRECTED_OUT, exc.detail) from None
                raise
            try:
                if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    try:
                        url = urljoin(url, response.headers["Location"])
                    except ValueError as exc:  # the server's fault, not the row's URI
                        raise FetchError(REDIRECTED_OUT, f"malformed Location ({exc})") from None
                    continue
                return self._body(response)
            finally:
                response.close()
                response.release_conn()
        raise FetchError(REDIRECTED_OUT, f"more than {self.policy.max_redirects} redirects")

    def _request(self, url: str) -> Any:
        """The response to a GET of `url` (headers read, body not), once its host and every
        address it resolves to are allowed; the connection goes to the checked address."""
        import urllib3

        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
            raise FetchError(NOT_ALLOWED, f"{scheme or 'no'} scheme or host")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            raise FetchError(NOT_ALLOWED, "bad port") from None
        written = f"[{host}]" if ":" in host else host  # an IPv6 host as the allowlist (and a URI) writes it
        if written not in self.policy.http_hosts and f"{written}:{port}" not in self.policy.http_hosts:
            raise FetchError(NOT_ALLOWED, f"host {host}:{port} is not in the allowlist")
        address = self._checked_address(host, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}", "Accept": "image/*",
                   "Accept-Encoding": "identity", "User-Agent": "content-signals"}
        left = _attempt.deadline - time.monotonic()  # a wait for a connection, its connect and TLS handshake wait no longer
        if left <= 0:
            raise FetchError(TIMEOUT, self._late("not answered"))
        timeout = urllib3.Timeout(connect=min(self.policy.connect_timeout_s, left), read=self.policy.read_timeout_s)
        try:
            return self._pool(scheme, address, port, host).urlopen(
                "GET", path, headers=headers, redirect=False, retries=False, preload_content=False, decode_content=False,
                assert_same_host=False, timeout=timeout, pool_timeout=left)
        except urllib3.exceptions.NewConnectionError as exc:  # refused (urllib3 makes it a kind of timeout)
            raise FetchError(CONNECTION_FAILED, type(exc).__name__) from None
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.EmptyPoolError) as exc:
            raise FetchError(TIMEOUT, self._late("not answered") or type(exc).__name__) from None
        except urllib3.exceptions.HTTPError as exc:  # reset, TLS, protocol
            raise FetchError(CONNECTION_FAILED, type(exc).__name__) from None

    def _checked_address(self, host: str, port: int) -> str:
        """The address to connect to for `host`: every address it resolves to must be global or in
        `allowed_networks` (else NOT_ALLOWED), so a name cannot be half public, half internal."""
        try:
            infos = self._resolved(host, port)
        except socket.gaierror as exc:
            raise FetchError(NOT_FOUND if exc.errno == socket.EAI_NONAME else CONNECTION_FAILED, "host does not resolve") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if self._allowed(ip):
                continue
            if not ip.is_global or ip in _LOCAL_NAT64:
                raise FetchError(NOT_ALLOWED, f"host {host} resolves to the non-global address {ip}")
            inner = _embedded_ipv4(ip)
            if inner is not None and not inner.is_global and not self._allowed(inner):
                raise FetchError(NOT_ALLOWED, f"host {host} resolves to {ip}, which embeds the non-global address {inner}")
        return addresses[0]

    def _resolved(self, host: str, port: int) -> list[Any]:
        """getaddrinfo's answer for `host`, waited for no longer than the attempt's deadline (TIMEOUT):
        the resolver's own timeouts, per server and attempt, can add up to many times it. A lookup
        given up on runs on in the background until the resolver gives up too."""
        answer: list[Any] = []

        def resolve() -> None:
            try:
                answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except Exception as exc:  # noqa: BLE001 - raised below, in the fetch's thread
                answer.append(exc)
        lookup = threading.Thread(target=resolve, name=f"resolve {host}", daemon=True)
        lookup.start()
        lookup.join(max(0.0, _attempt.deadline - time.monotonic()))
        if not answer:
            raise FetchError(TIMEOUT, self._late("host not resolved"))
        if isinstance(answer[0], Exception):
            raise answer[0]
        return answer[0]

    def _allowed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether `allowed_networks` names `ip`."""
        return any(ip in network for network in self._networks)

    def _pool(self, scheme: str, address: str, port: int, host: str) -> Any:
        import urllib3

        with self._lock:
            pools = self._pools.setdefault((scheme, host, port), OrderedDict())
            if address not in pools:
                if scheme == "https":  # certificate and SNI for the name, connection to the checked address
                    pools[address] = urllib3.HTTPSConnectionPool(address, port, maxsize=self.policy.pool_size, block=True,
                                                                 server_hostname=host, assert_hostname=host)
                else:
                    pools[address] = urllib3.HTTPConnectionPool(address, port, maxsize=self.policy.pool_size, block=True)
                pools[address].ConnectionCls = _deadline_connection(pools[address].ConnectionCls)
                while len(pools) > ADDRESSES_PER_HOST:
                    pools.popitem(last=False)[1].close()  # idle connections close now, those in use when released
            pools.move_to_end(address)
            return pools[address]

    def _body(self, response: Any) -> bytes:
        """A 2xx response's body, read up to the cap and the deadline; other statuses as reasons."""
        import urllib3

        status = response.status
        if not 200 <= status < 300:  # a 101 too: the connection speaks something else now
            raise FetchError(*_status_reason(status))
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise FetchError(TOO_LARGE, f"declared {declared} bytes, over {self.policy.max_bytes}")
        chunks, held, deadline = [], 0, _attempt.deadline
        try:  # read1: whatever has arrived, so a body trickling in meets the deadline, not a full chunk's wait
            while chunk := response.read1(CHUNK_BYTES, decode_content=False):
                chunks.append(chunk)
                held += len(chunk)
                if held > self.policy.max_bytes:
                    raise FetchError(TOO_LARGE, f"over {self.policy.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(TIMEOUT, self._late("body not read"))
        except urllib3.exceptions.TimeoutError as exc:
            raise FetchError(TIMEOUT, self._late("body not read") or type(exc).__name__) from None
        except urllib3.exceptions.HTTPError as exc:  # reset or cut short mid-body
            raise FetchError(CONNECTION_FAILED, type(exc).__name__) from None
        return b"".join(chunks)

    def _late(self, what: str) -> str:
        """`what` within the deadline, where this thread's HTTP attempt is past it; else ""."""
        return f"{what} within {self.policy.deadline_s:g} s" if time.monotonic() >= _attempt.deadline else ""

    def _capped(self, data: bytes) -> bytes:
        if len(data) > self.policy.max_bytes:
            raise FetchError(TOO_LARGE, f"over {self.policy.max_bytes} bytes")
        return data


class _Attempt(threading.local):
    """When the HTTP attempt this thread runs must end (time.monotonic())."""

    deadline: float = float("inf")


_attempt = _Attempt()


class _DeadlineReader(io.RawIOBase):
    """A connection's socket as the HTTP client reads a response from it: every receive waits at
    most the read timeout and never past the attempt's deadline (then TimeoutError, which urllib3
    reports as a read timeout)."""

    def __init__(self, sock: socket.socket, file: io.BufferedReader) -> None:
        # the socket's own file holds it open after the connection lets go (a response read until the server closes)
        self._sock, self._file, self._read_timeout, self._deadline = sock, file, sock.gettimeout(), _attempt.deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the fetch's deadline passed")
        self._sock.settimeout(min(remaining, self._read_timeout or remaining))
        return self._file.raw.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


class _ReadsByDeadline:
    """A connection's socket, but for the file the HTTP client makes to read a response from it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._sock.makefile(mode, *args, **kwargs)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _FinalResponse(http.client.HTTPResponse):
    """http.client's response, passing over every interim (1xx) response before the final one, where
    http.client passes over `100 Continue` only: a `103 Early Hints` was taken for the answer (an
    empty image), and the answer after it was left on the kept-alive connection for the next
    request to read as its own."""

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()
            if not 101 < status < 200:  # 100: passed over by begin(); 101: no more HTTP, refused as a status
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim response's headers, then the next status line


@functools.cache
def _deadline_connection(base: type) -> type:
    """`base` (urllib3's HTTP or HTTPS connection) reading each response through `_DeadlineReader`,
    interim responses passed over (`_FinalResponse`)."""

    class DeadlineConnection(base):  # type: ignore[misc, valid-type]
        response_class = _FinalResponse

        def getresponse(self) -> Any:
            sock = self.sock
            self.sock = _ReadsByDeadline(sock)
            try:
                return super().getresponse()
            finally:
                if isinstance(self.sock, _ReadsByDeadline):  # None if the response closed the connection
                    self.sock = sock

    return DeadlineConnection


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through a translator or relay (NAT64, 6to4) or as the
    deprecated IPv4-compatible form, all `is_global` to Python 3.11 whatever the address inside.
    (Teredo, 2001::/32, and the mapped form, ::ffff:0:0/96, are not global themselves.)"""
    if ip.version == 4:
        return None
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in network for network in _LOW_32_BITS_IPV4):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


_LOW_32_BITS_IPV4 = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("64:ff9b::/96"))  # IPv4-compatible, NAT64
# not globally reachable (IANA), but `is_global` to Python 3.11: NAT64 for a network's own translators, whose
# prefix length (and so where the IPv4 address sits in it) only they know
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _under(path: str, prefix: str) -> bool:
    """Whether `path` (bucket/key) is at or under `prefix` (a bucket, or bucket/prefix) at a `/` boundary."""
    prefix = prefix.strip("/")
    return path == prefix or path.startswith(prefix + "/")


def _unquoted(exc: ValueError) -> str:
    """A URI's parse error without what it quotes of the URI: urlsplit quotes a netloc, whose userinfo may hold a password."""
    return re.sub(r"'.*'", "'...'", str(exc), flags=re.DOTALL)


def _status_reason(status: int) -> tuple[str, str]:
    detail = f"HTTP {status}"
    if status == 429 or status >= 500:
        return SERVER_ERROR, detail
    if status in (401, 403, 407, 451):
        return FORBIDDEN, detail
    return NOT_FOUND, detail  # 404, 410, any other status that gives no image


def _s3_reason(message: str) -> str:
    """The reason for a failed S3 call, from the AWS SDK's error text (pyarrow raises OSError)."""
    text = message.upper()
    if "ACCESS_DENIED" in text or "ACCESSDENIED" in text or "HTTP STATUS 403" in text or "FORBIDDEN" in text:
        return FORBIDDEN
    if "CURLCODE: 28" in text or "TIMEOUT" in text or "TIMED OUT" in text:
        return TIMEOUT
    if "NETWORK_CONNECTION" in text or "CURLCODE" in text:
        return CONNECTION_FAILED
    if "NO_SUCH" in text or "HTTP STATUS 404" in text:
        return NOT_FOUND
    return SERVER_ERROR  # throttling, 5xx, an unknown AWS error: may pass
