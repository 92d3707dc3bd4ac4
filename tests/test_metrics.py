"""``GET /metrics`` against the real server: public, Prometheus text, aggregate figures only,
and the figures move when a job is uploaded, rendered and downloaded."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from tests.server import ServerProcess, wait_for, wait_job


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("metrics") / "data").start()
    yield server
    server.stop()


def scrape(srv) -> dict[str, float]:
    """Samples by name (labels folded into the name as ``name{k=v}``)."""
    r = httpx.get(srv.url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_metrics_are_public_and_start_at_zero(srv):
    m = scrape(srv)
    for name in ["vr_upload_bytes_total", "vr_download_bytes_total", "vr_ffmpeg_seconds_total",
                 "vr_queue_depth", "vr_renders_running", "vr_websocket_subscribers"]:
        assert m[name] == 0, name
    assert {f"vr_jobs{{state={s}}}" for s in ("queued", "processing", "completed", "failed")} <= set(m)
    assert m["vr_workers"] >= 1


async def test_figures_follow_a_job_and_name_nothing(srv, clips):
    before = scrape(srv)
    token = srv.token()
    ws_url = srv.url.replace("http://", "ws://") + f"/api/ws?token={token}"
    async with open_websocket_url(ws_url) as ws:
        await ws.get_message()  # hello: the subscription is registered
        assert scrape(srv)["vr_websocket_subscribers"] == before["vr_websocket_subscribers"] + 1

    with srv.client() as c:
        payload = clips["a"].read_bytes()
        r = c.post("/api/jobs", files=[("videos", ("secret-name.mp4", payload, "video/mp4"))],
                   data={"variations": "1"})
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        await trio.to_thread.run_sync(lambda: wait_job(c, job_id, timeout=120))
        # A plain link, token in the query: the access log must not keep it.
        zip_bytes = httpx.get(srv.url + f"/api/jobs/{job_id}/download?token={token}").content

    def settled():
        m = scrape(srv)
        return m if m["vr_download_bytes_total"] >= len(zip_bytes) else None

    m = await trio.to_thread.run_sync(lambda: wait_for(settled, timeout=10))
    assert m["vr_upload_bytes_total"] - before["vr_upload_bytes_total"] > len(payload)
    assert m["vr_download_bytes_total"] - before["vr_download_bytes_total"] == len(zip_bytes)
    assert m["vr_jobs{state=completed}"] == before["vr_jobs{state=completed}"] + 1
    assert m["vr_ffmpeg_processes_total"] >= before["vr_ffmpeg_processes_total"] + 1
    assert m["vr_ffmpeg_seconds_total"] > before["vr_ffmpeg_seconds_total"]
    assert m["vr_stored_bytes"] > 0
    assert m["vr_queue_depth"] == 0 and m["vr_renders_running"] == 0
    assert m["vr_websocket_subscribers"] == before["vr_websocket_subscribers"]

    text = httpx.get(srv.url + "/metrics").text
    assert job_id not in text and "secret-name" not in text and str(srv.data_dir) not in text

    # The same run, seen in the logs: one JSON object per line, with the ids.
    lines = [json.loads(ln) for ln in srv.log().splitlines() if ln.startswith("{")]
    assert not [ln for ln in srv.log().splitlines() if ln.startswith("[")], "Hypercorn's own format"
    assert sum("Running on" in ln["msg"] for ln in lines) == 1, "Hypercorn's lines printed twice"
    mine = [ln for ln in lines if ln.get("jobId") == job_id]
    assert [ln["msg"] for ln in mine if ln["msg"].startswith(("job", "video"))] == [
        "job created", "video processing", "video completed"]
    access = [ln["msg"] for ln in lines if ln["logger"] == "hypercorn.access"]
    assert any("/download" in a for a in access) and not any("token=" in a for a in access)
