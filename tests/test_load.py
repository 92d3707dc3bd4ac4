"""A modest load test against the real server, sized for 2 cores: 20 concurrent two-file
uploads (one variation each), 200 WebSocket clients, and status polling while everything
renders. Every job must complete, no response may be a 5xx, every WebSocket client must see
every job complete; latencies are printed (run with ``-s``), not asserted tightly.
"""

from __future__ import annotations

import json
import statistics
import time

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.server import ServerProcess

UPLOADS = 20
WS_CLIENTS = 200
POLL_INTERVAL = 0.25
TIMEOUT = 240.0


@pytest.fixture
def srv(tmp_path):
    server = ServerProcess(tmp_path / "data", env={"VR_WORKERS": "2"}).start()
    yield server
    server.stop()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def test_concurrent_uploads_websockets_and_polling(srv, clips):
    token = srv.token()
    auth = {"Authorization": f"Bearer {token}"}
    files = [("videos", (p.name, p.read_bytes(), "video/mp4")) for p in (clips["a"], clips["b"])]
    ws_url = srv.url.replace("http://", "ws://") + f"/api/ws?token={token}"

    job_ids: list[str] = []
    statuses: list[int] = []  # every HTTP status seen
    upload_times: list[float] = []
    poll_times: list[float] = []
    finished: dict[str, str] = {}
    ws_seen: list[set[str]] = [set() for _ in range(WS_CLIENTS)]
    ws_ready = trio.Semaphore(0)
    ws_problems: list[str] = []
    all_done = trio.Event()

    async def ws_client(i: int) -> None:
        try:
            async with open_websocket_url(ws_url) as ws:
                hello = json.loads(await ws.get_message())
                assert hello["type"] == "hello"
                ws_ready.release()
                while True:
                    event = json.loads(await ws.get_message())
                    if event["type"] == "job" and event["status"] in ("completed", "failed"):
                        ws_seen[i].add(event["jobId"])
        except ConnectionClosed as exc:
            if not all_done.is_set():
                ws_problems.append(f"client {i} closed early: {exc.reason}")

    async def upload(client: httpx.AsyncClient) -> None:
        t0 = time.perf_counter()
        r = await client.post("/api/jobs", files=files, data={"variations": "1"})
        upload_times.append(time.perf_counter() - t0)
        statuses.append(r.status_code)
        assert r.status_code == 202, r.text
        job_ids.append(r.json()["jobId"])

    async def poll(client: httpx.AsyncClient) -> None:
        while len(finished) < UPLOADS:
            for job_id in list(job_ids):
                if job_id in finished:
                    continue
                t0 = time.perf_counter()
                r = await client.get(f"/api/jobs/{job_id}")
                poll_times.append(time.perf_counter() - t0)
                statuses.append(r.status_code)
                status = r.json()["status"]
                if status in ("completed", "failed", "cancelled"):
                    finished[job_id] = status
            await trio.sleep(POLL_INTERVAL)

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=srv.url, headers=auth, timeout=60, limits=limits) as client:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as ws_nursery:
                for i in range(WS_CLIENTS):
                    ws_nursery.start_soon(ws_client, i)
                for _ in range(WS_CLIENTS):
                    await ws_ready.acquire()
                ws_connected = time.perf_counter() - started

                async with trio.open_nursery() as work:
                    for _ in range(UPLOADS):
                        work.start_soon(upload, client)
                    for _ in range(3):
                        work.start_soon(poll, client)
                rendered = time.perf_counter() - started

                # The last job's events reach every client shortly after it finished.
                with trio.move_on_after(15):
                    while any(len(seen) < UPLOADS for seen in ws_seen):
                        await trio.sleep(0.1)
                all_done.set()
                ws_nursery.cancel_scope.cancel()

        metrics = (await client.get("/metrics")).text

    print(f"\nload: {UPLOADS} uploads x 2 files, {WS_CLIENTS} websockets; "
          f"websockets connected in {ws_connected:.1f}s, all jobs done in {rendered:.1f}s")
    print(f"upload latency: median {statistics.median(upload_times):.3f}s, "
          f"max {max(upload_times):.3f}s")
    print(f"status polls: {len(poll_times)}, median {statistics.median(poll_times) * 1000:.1f} ms, "
          f"p99 {percentile(poll_times, 99) * 1000:.1f} ms, max {max(poll_times) * 1000:.1f} ms")

    assert len(job_ids) == UPLOADS
    assert sorted(finished.values()) == ["completed"] * UPLOADS, finished
    assert not [s for s in statuses if s >= 500], statuses
    assert not ws_problems, ws_problems[:5]
    missing = [i for i, seen in enumerate(ws_seen) if seen != set(job_ids)]
    assert not missing, f"{len(missing)} WebSocket clients missed a job's completion"
    assert f'vr_jobs{{state="completed"}} {float(UPLOADS)}' in metrics
    # Loose: a status read stays fast while 2 FFmpeg processes use both cores.
    assert percentile(poll_times, 99) < 5.0
