"""Backpressure for request bodies.

Quart appends every body chunk Hypercorn delivers to an in-memory buffer as fast as the client
sends, whether or not the view has read the previous ones. Here the connection stops asking
Hypercorn for more while more than ``HIGH_WATER`` bytes wait unread; Hypercorn's bounded app
queue then fills and it stops reading the socket, so TCP slows the client down and a 2 GB
upload never sits in memory.
"""

from __future__ import annotations

import trio
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody, TrioRequest

HIGH_WATER = 8 << 20


class FlowControlledBody(TrioBody):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._drained = trio.Event()

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._drained.set()
        return data

    async def wait_writable(self) -> None:
        """Block while the unread buffer is above the high-water mark."""
        while len(self._data) > HIGH_WATER and self._must_raise is None:
            self._drained = trio.Event()
            await self._drained.wait()


class FlowControlledRequest(TrioRequest):
    body_class = FlowControlledBody


class FlowControlledConnection(TrioASGIHTTPConnection):
    async def handle_messages(self, nursery: trio.Nursery, request, receive) -> None:  # type: ignore[override]
        while True:
            message = await receive()
            if message["type"] == "http.request":
                request.body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    request.body.set_complete()
                else:
                    await request.body.wait_writable()
            elif message["type"] == "http.disconnect":
                break
        nursery.cancel_scope.cancel()
