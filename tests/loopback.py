"""Servers on loopback that tests start as child processes: a free port, and a wait until one answers."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
    """Return once `url` answers 200; fail if the server exits first or does not answer in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.poll() is None, f"the server at {url} exited with {server.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"no answer from {url} in {timeout_s:.0f}s"
        time.sleep(0.2)
