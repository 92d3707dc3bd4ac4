"""The WebSocket ``/api/ws``: token check (4401), live job events in order, per-job
subscription, slow clients (never block others or the pipeline; closed 4408 when lagging).

Against the real server process, except the subscription and lagging tests, which run the same
app under Hypercorn inside the test so they can publish on the hub directly.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import time

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import ConnectionClosed, open_websocket_url

from pipeline.config import Settings
from pipeline.service import Service
from pipeline.state.events import Progress, VideoChanged
from pipeline.state.states import JobStatus, VideoStatus
from tests.server import ServerProcess, free_port, wait_job
from web.app import create_app
from web.auth import Auth


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("ws") / "data").start()
    yield server
    server.stop()


def _ws_url(srv, token: str | None) -> str:
    base = srv.url.replace("http://", "ws://") + "/api/ws"
    return base + (f"?token={token}" if token is not None else "")


async def _receive(ws, timeout: float = 30.0) -> dict:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


def _upload(srv, token: str, path, variations: int = 2) -> str:
    r = httpx.post(srv.url + "/api/jobs", headers={"Authorization": f"Bearer {token}"},
                   files=[("videos", (path.name, path.read_bytes(), "video/mp4"))],
                   data={"variations": str(variations)}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["jobId"]


@pytest.mark.parametrize("token", [None, "", "not.valid"])
async def test_without_a_valid_token_the_socket_closes_4401(srv, token):
    async with open_websocket_url(_ws_url(srv, token)) as ws:
        with pytest.raises(ConnectionClosed) as info:
            with trio.fail_after(10):
                await ws.get_message()
    assert info.value.reason.code == 4401


async def test_job_events_arrive_in_order(srv, clips):
    token = srv.token()
    async with open_websocket_url(_ws_url(srv, token)) as ws:
        hello = await _receive(ws)
        assert hello["type"] == "hello" and isinstance(hello["jobs"], list)
        job_id = await trio.to_thread.run_sync(_upload, srv, token, clips["a"])
        events = []
        while not (events and events[-1]["type"] == "job" and events[-1]["status"] == "completed"):
            events.append(await _receive(ws))
    assert all(e["jobId"] == job_id for e in events)
    steps = [(e["type"], e.get("status")) for e in events]
    assert steps[0] == ("job", "queued")
    assert steps.index(("video", "processing")) < steps.index(("video", "completed"))
    assert ("job", "processing") in steps
    progress = [e["progress"] for e in events if e["type"] == "progress"]
    assert progress and progress == sorted(progress) and all(0 <= p <= 100 for p in progress)
    first_tick = next(i for i, e in enumerate(events) if e["type"] == "progress")
    assert steps.index(("video", "processing")) < first_tick < steps.index(("video", "completed"))
    assert steps[-2:] == [("video", "completed"), ("job", "completed")]


def _stalled_client(srv, token: str) -> socket.socket:
    """A WebSocket client that completes the handshake request and then never reads."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /api/ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


async def test_a_stalled_client_blocks_neither_other_clients_nor_the_job(srv, clips):
    token = srv.token()
    stalled = [_stalled_client(srv, token) for _ in range(3)]
    try:
        t0 = time.monotonic()
        async with open_websocket_url(_ws_url(srv, token)) as ws:
            await _receive(ws)  # hello
            job_id = await trio.to_thread.run_sync(_upload, srv, token, clips["a"], 3)
            while True:
                e = await _receive(ws, timeout=20)
                if e["type"] == "job" and e["status"] in ("completed", "failed"):
                    break
        assert e["status"] == "completed" and e["jobId"] == job_id
        assert time.monotonic() - t0 < 20
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as c:
            assert wait_job(c, job_id)["status"] == "completed"
            assert c.get("/api/health").status_code == 200
    finally:
        for s in stalled:
            s.close()


# -- in-process: publish on the hub directly ---------------------------------------------------------


@pytest.fixture
async def app_server(tmp_path, nursery):
    """The app under Hypercorn in this test's trio run, with its service (actors not started)."""
    settings = Settings(data_dir=tmp_path / "data")
    service = Service(settings)
    auth = Auth("pw", b"test-secret", 3600.0, time.time)
    config = Config()
    port = free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    await nursery.start(serve, create_app(service, auth), config)
    yield service, f"ws://127.0.0.1:{port}/api/ws?token={auth.issue()[0]}"
    nursery.cancel_scope.cancel()
    service.close()


def _video_event(job_id: str, n: int) -> VideoChanged:
    return VideoChanged(job_id, f"v{n}", VideoStatus.PROCESSING, JobStatus.PROCESSING)


def _video_messages(job_id: str, n: int) -> list[dict]:
    """What the client receives for ``_video_event``: the video's change, then its job's."""
    return [{"type": "video", "jobId": job_id, "videoId": f"v{n}", "status": "processing"},
            {"type": "job", "jobId": job_id, "status": "processing"}]


async def test_subscribe_narrows_events_to_one_job(app_server):
    service, url = app_server
    async with open_websocket_url(url) as ws:
        assert (await _receive(ws))["type"] == "hello"
        await ws.send_message(json.dumps({"subscribe": "jA"}))
        assert await _receive(ws) == {"type": "subscribed", "jobId": "jA", "job": None}
        service.hub.publish(_video_event("jB", 1))
        service.hub.publish(_video_event("jA", 2))
        service.hub.publish_progress(Progress("jB", "v1", 10.0))
        service.hub.publish_progress(Progress("jA", "v2", 20.0))
        assert [await _receive(ws), await _receive(ws)] == _video_messages("jA", 2)
        assert await _receive(ws) == {"type": "progress", "jobId": "jA", "videoId": "v2",
                                      "progress": 20.0}
        await ws.send_message(json.dumps({"subscribe": None}))
        assert (await _receive(ws))["type"] == "subscribed"
        service.hub.publish(_video_event("jB", 3))
        assert [await _receive(ws), await _receive(ws)] == _video_messages("jB", 3)
    # A client that leaves is unsubscribed.
    with trio.fail_after(5):
        while service.hub.statistics().subscribers:
            await trio.sleep(0.01)


async def test_a_socket_opened_for_one_job_starts_with_its_snapshot_only(app_server):
    """``?job=<id>``: no history ``hello`` (which can list 200 jobs), the job's snapshot first,
    then only that job's events."""
    service, url = app_server
    async with open_websocket_url(f"{url}&job=jA") as ws:
        assert await _receive(ws) == {"type": "subscribed", "jobId": "jA", "job": None}
        service.hub.publish(_video_event("jB", 1))
        service.hub.publish(_video_event("jA", 2))
        assert [await _receive(ws), await _receive(ws)] == _video_messages("jA", 2)


async def test_a_client_that_falls_behind_is_closed_4408(app_server):
    service, url = app_server
    async with open_websocket_url(url) as ws:
        assert (await _receive(ws))["type"] == "hello"
        # More state events than a client may have pending, published without a checkpoint:
        # publishing never waits, so the pipeline would not notice this client at all.
        for n in range(400):
            service.hub.publish(_video_event("jA", n))
        got = 0
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await _receive(ws, timeout=10)
                got += 1
    assert info.value.reason.code == 4408
    assert got == 2 * 256  # 256 events queued, each a video and a job message
    assert service.hub.statistics().subscribers == 0


async def test_a_stopping_server_closes_sockets_as_going_away(tmp_path):
    """SIGTERM: open sockets are closed with 1001 and a reason within the grace period, not
    cut (1006) when it ends."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        async with open_websocket_url(_ws_url(server, server.token())) as ws:
            assert (await _receive(ws))["type"] == "hello"
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1001, closed.value.reason
            assert "stopping" in closed.value.reason.reason
            assert time.monotonic() - started < 2.5
    finally:
        server.stop()
