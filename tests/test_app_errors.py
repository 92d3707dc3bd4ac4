"""The app's generic error handler: an unexpected exception in an HTTP view or a WebSocket
handler answers 500 JSON (HTTP) or refuses the socket, and is logged once with its path.

The app runs under Hypercorn inside the test, with two routes added that raise, so the shipped
handler is exercised the way a real bug would reach it.
"""

from __future__ import annotations

import logging
import time

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from pipeline.config import Settings
from pipeline.service import Service
from tests.server import free_port
from web.app import create_app
from web.auth import Auth


class Boom(Exception):
    pass


@pytest.fixture
async def crashing_app(tmp_path, nursery):
    service = Service(Settings(data_dir=tmp_path / "data"))
    auth = Auth("pw", b"test-secret", 3600.0, time.time)
    app = create_app(service, auth)

    @app.get("/api/boom")
    async def boom():
        raise Boom("a bug in a view")

    @app.websocket("/api/ws-boom")
    async def ws_boom():
        raise Boom("a bug in a socket handler")

    config = Config()
    port = free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    await nursery.start(serve, app, config)
    yield f"127.0.0.1:{port}", auth.issue()[0]
    nursery.cancel_scope.cancel()
    service.close()


def _crashes(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "unhandled error"]


async def test_a_crash_in_a_view_is_500_json_and_logged_with_its_path(crashing_app, caplog):
    host, token = crashing_app
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://{host}/api/boom", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    [record] = _crashes(caplog)
    assert record.path == "/api/boom" and record.exc_info[0] is Boom


async def test_a_crash_in_a_websocket_handler_is_logged_not_a_second_error(crashing_app, caplog):
    host, _ = crashing_app
    with pytest.raises((ConnectionRejected, ConnectionClosed)):
        with trio.fail_after(10):
            async with open_websocket_url(f"ws://{host}/api/ws-boom") as ws:
                await ws.get_message()
    with trio.fail_after(5):
        while not _crashes(caplog):
            await trio.sleep(0.01)
    [record] = _crashes(caplog)
    assert record.path == "/api/ws-boom" and record.exc_info[0] is Boom
    assert not any("request context" in r.getMessage() or
                   (r.exc_info and "request context" in str(r.exc_info[1]))
                   for r in caplog.records)
