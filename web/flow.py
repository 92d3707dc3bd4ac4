"""Backpressure for request bodies.

Quart appends every body chunk Hypercorn delivers to an in-memory buffer as fast as the client
sends, whether or not the view has read the previous ones. Here the connection stops asking
Hypercorn for more while more than ``HIGH_WATER`` bytes wait unread; Hypercorn's bounded app
queue then fills and it stops reading the socket, so TCP slows the client down and a 2 GB
upload never sits in memory.

Every other body is small (JSON commands): ``limit_bodies`` caps those at ``SMALL_BODY``, so a
public endpoint such as ``/api/auth`` cannot be made to buffer a huge body (the app itself
sets no ``MAX_CONTENT_LENGTH``, for the streamed upload's sake).

``FlowControlledConnection`` also makes an answer given before the request body ended (a
refused upload) close the connection cleanly instead of leaving it hanging (see the class).
"""

from __future__ import annotations

import json

import trio
from quart import request
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

# 2 MiB: a 2 GB upload peaked at 104-109 MB server RSS (idle 93 MB) at 174-205 MB/s, against
# 105-145 MB at the same speed with 8 MiB (docs/benchmarks.md); the memory budget is 150 MB.
HIGH_WATER = 2 << 20
SMALL_BODY = 64 << 10
# Longest the last send of a response (and Hypercorn's close behind it) may take, shielded.
CLOSE_TIMEOUT = 10.0


class FlowControlledBody(TrioBody):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._drained = trio.Event()
        self._discarding = False

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._drained.set()
        return data

    def limit(self, max_bytes: int) -> None:
        """From now on, reading a body longer than ``max_bytes`` raises 413 (also if it already is)."""
        self._max_content_length = max_bytes
        if len(self._data) > max_bytes and self._must_raise is None:
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()

    def discard(self) -> None:
        """The response is done: drop what is buffered and whatever still arrives."""
        self._discarding = True
        self._data.clear()
        self._drained.set()

    def append(self, data: bytes) -> None:
        if not self._discarding:
            super().append(data)

    async def wait_writable(self) -> None:
        """Block while the unread buffer is above the high-water mark."""
        while len(self._data) > HIGH_WATER and self._must_raise is None and not self._discarding:
            self._drained = trio.Event()
            await self._drained.wait()


class FlowControlledRequest(TrioRequest):
    body_class = FlowControlledBody


class FlowControlledConnection(TrioASGIHTTPConnection):
    """Quart-Trio's HTTP connection with body backpressure, and two fixes for answers sent
    before the request ended (a refused upload: 401, 413, 507 …; or ``Connection: close``).

    In both cases Hypercorn closes the connection from within the app's last ``send``. Its
    close queues an ``http.disconnect`` first, on which ``handle_messages`` cancels the
    request's nursery, and that cancellation aborted the close half-way: the socket stayed
    open, so the client's next request on that keep-alive connection hung until it gave up.
    The last ``send`` therefore runs shielded (with its own deadline). And once the app has
    returned, Hypercorn may still be queueing body chunks for it, blocking when its small
    queue is full; ``_drain`` takes them until the connection is gone. Such an early answer
    says ``Connection: close``, so the client does not race the close with its next request.
    """

    _request_done = False

    def _body_unfinished(self) -> bool:
        # A request without a body is finished even if its (empty) message is not read yet.
        return not self._request_done and _expects_body(self.scope)

    async def __call__(self, receive, send) -> None:  # type: ignore[override]
        await super().__call__(receive, send)
        nursery = getattr(self.app, "nursery", None)  # QuartTrio's, set while serving
        if self._body_unfinished() and nursery is not None:
            nursery.start_soon(_drain, receive)

    async def handle_request(self, nursery: trio.Nursery, request, send) -> None:  # type: ignore[override]
        async def send_last_shielded(message) -> None:
            if message["type"] == "http.response.start" and self._body_unfinished():
                # Answered before the body ended: tell the client not to reuse the connection
                # (it is closed after this response) rather than let its next request race it.
                message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                request.body.discard()
                with trio.CancelScope(shield=True) as scope:
                    scope.relative_deadline = CLOSE_TIMEOUT
                    await send(message)
            else:
                await send(message)

        await super().handle_request(nursery, request, send_last_shielded)

    async def handle_messages(self, nursery: trio.Nursery, request, receive) -> None:  # type: ignore[override]
        while True:
            message = await receive()
            if message["type"] == "http.request":
                request.body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._request_done = True
                    request.body.set_complete()
                else:
                    await request.body.wait_writable()
            elif message["type"] == "http.disconnect":
                self._request_done = True
                break
        nursery.cancel_scope.cancel()


def _expects_body(scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


async def _drain(receive, timeout: float = 30.0) -> None:
    """Discard a finished request's remaining messages until the body ends or the client goes."""
    with trio.move_on_after(timeout):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return


def limit_bodies(app, *, streamed: set[str], max_bytes: int = SMALL_BODY) -> None:
    """Cap request bodies at ``max_bytes`` except for the ``streamed`` endpoints (413 beyond)."""

    @app.before_request
    async def _limit_body():
        if request.endpoint in streamed:
            return None
        if isinstance(request.body, FlowControlledBody):
            request.body.limit(max_bytes)
        if (request.content_length or 0) > max_bytes:
            raise RequestEntityTooLarge()
        return None


async def json_body() -> object | None:
    """The request's (small, `limit_bodies`) body read as JSON; None when it is not JSON a
    client could mean (see `loads_or_none`)."""
    return loads_or_none(await request.get_data())


def loads_or_none(raw: bytes | str) -> object | None:
    """``json.loads``, or None for text that is not JSON: malformed, not UTF-8 (``get_json``
    raised for that, a 500), or nested too deep for Python's parser (RecursionError: 60 KB of
    ``[`` is enough)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
