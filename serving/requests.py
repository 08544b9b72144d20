"""A scoring request's body, read within its limits and parsed into an Item.

The body is JSON: `{"image": base64 | null, "image_uri": str | null, "title": str | null,
"description": str | null}`, the corpus's columns. Its size is refused from Content-Length before
any of it is read, and counted while it is read (a chunked body has none); a body that does not
arrive in full within the time limit is refused too, so a slow client holds a connection for a
bounded time and never a model. What is in the item (a corrupt image, a URI outside the
allowlist, empty text) is not judged here: the signals do, as in the batch job.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import NoReturn

from starlette.requests import ClientDisconnect, Request

from serving.scorer import Item

FIELDS = ("image", "image_uri", "title", "description")
# '[' and '{' a body may hold: an item is one object of text fields, and each would cost a Python
# object while parsing (a 45 MB body of empty lists took 1.2 GB and seconds, found in review)
MAX_CONTAINERS = 10_000
# quotes not escaped a body may hold: an item's strings are its keys and values (at most eight, two
# quotes each), and a quote inside a string is escaped; a body of distinct keys took 30 s and 560 MB
# to parse and was named key by key in a 43 MB reason (found in review)
MAX_QUOTES = 64


class Refused(Exception):
    """A request refused before scoring: its HTTP status and the reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, or Refused: 413 past `max_bytes` (declared or counted), 408 when it is not
    received within `timeout_s`, 400 for a Content-Length that is not a number."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, f"Content-Length {declared[:40]!r} is not a number")
        if int(declared) > max_bytes:
            raise Refused(413, f"too large: the body is {declared} bytes, over the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise Refused(413, f"too large: the body is over the limit of {max_bytes} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise Refused(408, f"timeout: the body was not received within {timeout_s:g}s ({size} bytes came)") from None
    except ClientDisconnect:  # nobody reads the answer; logged as a 400, not as the server's error
        raise Refused(400, f"the client went away before its body was received ({size} bytes came)") from None
    return b"".join(chunks)


def parse_item(body: bytes) -> Item:
    """The item a JSON body describes; Refused (400) for anything but an object of FIELDS with
    string (or null) values and an `image` in base64."""
    if (containers := body.count(b"[") + body.count(b"{")) > MAX_CONTAINERS:
        raise Refused(400, f"the body holds {containers} '[' and '{{', over {MAX_CONTAINERS}: an item is one JSON object of text fields")
    if (quotes := body.count(b'"') - body.count(b'\\"')) > MAX_QUOTES:
        raise Refused(400, f"the body holds {quotes} JSON strings' quotes, over {MAX_QUOTES}: an item is one JSON object of text fields")
    try:  # an item holds no number: the first one met is refused, not every one made (45 MB of floats took 400 MB)
        data = json.loads(body, parse_int=_number, parse_float=_number, parse_constant=_number)
    except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than the parser goes
        raise Refused(400, f"the body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise Refused(400, f"the body is a JSON {type(data).__name__}, not an object with {', '.join(FIELDS)}")
    if unknown := sorted(set(data) - set(FIELDS)):
        raise Refused(400, f"unknown fields {', '.join(repr(name[:40]) for name in unknown[:5])}{' ...' * (len(unknown) > 5)}; "
                           f"an item has {', '.join(FIELDS)}")
    if wrong := sorted(name for name, value in data.items() if value is not None and not isinstance(value, str)):
        raise Refused(400, f"fields {wrong} must be strings or null")
    image = data.get("image")
    if image is not None:
        try:
            image = base64.b64decode("".join(image.split()), validate=True)  # line breaks, as `base64` and MIME wrap it, are fine
        except (binascii.Error, ValueError):
            raise Refused(400, "image is not base64") from None
    return Item(image, data.get("image_uri"), data.get("title"), data.get("description"))


def _number(text: str) -> NoReturn:
    """Refuses the body at its first number (json.loads calls it for each): an item's fields are strings or null."""
    raise Refused(400, f"the body holds a number ({text[:40]}): an item's fields must be strings or null")
