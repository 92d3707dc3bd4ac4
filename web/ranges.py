"""Byte ranges (RFC 9110 §14) for what the API streams: the ZIP and single files.

One ``bytes`` range (``a-b``, ``a-``, ``-n``) gives 206 with ``Content-Range``; ``If-Range`` must
name our strong ``ETag`` exactly for the range to be kept; several ranges, other units or bad
syntax get the whole body (RFC 9110 allows ignoring ``Range``); a range that starts past the end
is 416 with ``Content-Range: bytes */<length>``. ``If-None-Match`` naming the ``ETag`` (a copy the
client already holds) is 304 without a body. Quart's own ``send_file(conditional=True)`` was
not used: a suffix range (``bytes=-50``, what players send for an MP4's tail) made it fail with a
500 (werkzeug's "Bad range provided" assertion).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio
from quart import Response, request

from .errors import APIError


class RangeNotSatisfiable(Exception):
    pass


_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE)
# Positions with more digits than this are past any archive: read as "very far".
_MAX_DIGITS = 18


def byte_range(header: str | None, length: int) -> tuple[int, int] | None:
    """``(start, stop)`` of a single ``bytes`` range (``a-b``, ``a-``, ``-n``) of ``length``
    bytes, the end clamped to it; None to send everything (no or another unit, several
    ranges, bad syntax). Raises ``RangeNotSatisfiable`` when it starts past the end or is
    an empty suffix (``-0``)."""
    m = _RANGE.fullmatch(header or "")
    if not m or not (m[1] or m[2]):
        return None
    first, last = (None if not g else int(g) if len(g) <= _MAX_DIGITS else 10 ** _MAX_DIGITS
                   for g in (m[1], m[2]))
    if first is None:  # the last ``last`` bytes
        if last == 0:
            raise RangeNotSatisfiable()
        return max(0, length - last), length
    if last is not None and last < first:
        return None  # invalid: ignored
    if first >= length:
        raise RangeNotSatisfiable()
    return first, length if last is None else min(last + 1, length)


def none_match(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (or is ``*``): the client's copy is current
    (RFC 9110 §13.1.2, the weak comparison: ``W/"x"`` matches ``"x"``)."""
    if header is None:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag.removeprefix("W/") in (t.removeprefix("W/") for t in tags)


def if_range_matches(header: str | None, etag: str) -> bool:
    """Whether a ``Range`` may be served: no ``If-Range``, or exactly our (strong) ETag."""
    return header is None or header.strip() == etag


def ranged_response(length: int, etag: str, mimetype: str,
                    body: Callable[[int, int], AsyncIterator[bytes]],
                    headers: dict[str, str] | None = None) -> Response:
    """The answer to a GET of ``length`` bytes: 200, or 206 for a range the request may have;
    ``body(start, stop)`` streams bytes ``[start, stop)``. 304 without a body (and without
    calling ``body``) when ``If-None-Match`` names ``etag``, which comes before any range.
    Raises ``APIError`` 416."""
    headers = {"Accept-Ranges": "bytes", "ETag": etag, **(headers or {})}
    if none_match(request.headers.get("If-None-Match"), etag):
        headers.pop("Content-Disposition", None)
        unchanged = Response(b"", status=304, headers=headers)
        # Neither "0" nor "text/html" (Quart's defaults) is the file's (RFC 9110 §8.6, §15.4.5).
        del unchanged.headers["Content-Length"]
        del unchanged.headers["Content-Type"]
        return unchanged
    try:
        span = None
        if if_range_matches(request.headers.get("If-Range"), etag):
            span = byte_range(request.headers.get("Range"), length)
    except RangeNotSatisfiable:
        # Not the file's caching headers: an error answer must not be kept as the file.
        raise APIError(416, "range_not_satisfiable",
                       f"The file is {length} bytes long: that range is past its end.",
                       {"Accept-Ranges": "bytes", "Content-Range": f"bytes */{length}"}) from None
    start, stop = span or (0, length)
    headers["Content-Length"] = str(stop - start)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{length}"
    return Response(body(start, stop), status=206 if span else 200, mimetype=mimetype,
                    headers=headers)


def file_etag(st: os.stat_result) -> str:
    """A strong tag for a file that is written once: its inode, size and modification time."""
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


async def read_file(path: Path, start: int, stop: int, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    """Bytes ``[start, stop)`` of ``path``, a chunk at a time, read in a worker thread."""
    async with await trio.open_file(path, "rb") as fh:
        await fh.seek(start)
        left = stop - start
        while left > 0:
            data = await fh.read(min(chunk, left))
            if not data:
                return
            left -= len(data)
            yield data
