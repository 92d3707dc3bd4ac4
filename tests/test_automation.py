"""What a team that plans around the queue and automates it uses, against the real server:
named jobs, queue places and estimates, pause across a restart, the per-video log, API keys and
signed webhooks with retries (a receiver on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import sqlite3
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from pipeline.config import ConfigError, load_settings
from tests.server import free_port, wait_for, wait_job

SECRET = "webhook secret"


def _upload(client: httpx.Client, *paths, variations: int = 2, **fields) -> dict:
    files = [("videos", (p.name, p.read_bytes(), "video/mp4")) for p in paths]
    data = {"variations": str(variations), **fields}
    r = client.post("/api/jobs", files=files, data=data)
    assert r.status_code == 202, r.text
    return r.json()


# -- named jobs, times, the log -------------------------------------------------------------------


def test_a_named_job_keeps_its_name_in_history_and_in_the_zip(server, clips):
    with server.client() as c:
        named = _upload(c, clips["a"], name="  Summer   sale / EU  ")
        assert named["name"] == "Summer sale / EU"  # runs of spaces folded, ends trimmed
        plain = _upload(c, clips["a"], clips["b"])
        assert plain["name"] == "a.mp4 + 1"
        wait_job(c, named["jobId"])
        wait_job(c, plain["jobId"])
        history = {j["id"]: j["name"] for j in c.get("/api/jobs").json()["jobs"]}
        assert history == {named["jobId"]: "Summer sale / EU", plain["jobId"]: "a.mp4 + 1"}
        r = c.get(f"/api/jobs/{named['jobId']}/download")
        assert r.headers["content-disposition"] == 'attachment; filename="Summer sale _ EU.zip"'
        manifest = json.loads(_zip_member(r.content, "manifest.json"))
        assert manifest["name"] == "Summer sale / EU"
        r = c.get(f"/api/jobs/{plain['jobId']}/download")
        assert r.headers["content-disposition"] == 'attachment; filename="a + 1-variations.zip"'


@pytest.mark.parametrize("name", ["x" * 121, "bell\x07", "zero\u200bwidth", "rtl\u202eexe"])
def test_a_bad_name_is_400_and_leaves_nothing(server, clips, name):
    with server.client() as c:
        r = c.post("/api/jobs", files=[("videos", ("a.mp4", clips["a"].read_bytes(), "video/mp4"))],
                   data={"name": name})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_name"
        assert c.get("/api/jobs").json()["jobs"] == []
    assert not any((server.data_dir / "uploads").iterdir())


def test_videos_say_when_they_ran_and_their_log_has_every_ffmpeg_command(server, clips):
    with server.client() as c:
        job = wait_job(c, _upload(c, clips["a"])["jobId"])
        video = job["videos"][0]
        started, finished = video["startedAt"], video["finishedAt"]
        assert started and finished and started <= finished
        assert started >= job["createdAt"]
        r = c.get(video["logUrl"])
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        log = r.text
        assert "== attempt 1, started" in log and "exit code 0" in log
        command = next(line for line in log.splitlines() if line.startswith("$ "))
        assert "-filter_complex" in command and "v01.mp4.part" in command
        assert c.get(f"/api/jobs/{job['id']}/videos/nope/log").status_code == 404
        assert c.get(f"/api/jobs/jnope/videos/{video['id']}/log").status_code == 404
    assert httpx.get(server.url + video["logUrl"]).status_code == 401


def test_a_failed_attempt_and_its_retry_are_both_in_the_log(make_server, clips, tmp_path):
    # An FFmpeg that fails every render: the video fails with FFmpeg's own words in its log.
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Error: simulated encoder failure' >&2\nexit 1\n")
    fake.chmod(0o755)
    srv = make_server({"VR_FFMPEG": str(fake)})
    with srv.client() as c:
        job = wait_job(c, _upload(c, clips["a"])["jobId"])
        video = job["videos"][0]
        assert video["status"] == "failed"
        assert c.post(f"/api/jobs/{job['id']}/videos/{video['id']}/retry").status_code == 202
        wait_for(lambda: c.get(f"/api/jobs/{job['id']}").json()["status"] == "failed")
        log = c.get(video["logUrl"]).text
    assert log.count("Error: simulated encoder failure") == 2
    assert "== attempt 1," in log and "== attempt 2," in log and log.count("exit code 1") == 2


# -- the queue ------------------------------------------------------------------------------------


def test_pause_holds_the_queue_across_a_restart_with_places_in_line(make_server, clips, tmp_path):
    srv = make_server({"VR_WORKERS": "1"})
    with srv.client() as c:
        first = wait_job(c, _upload(c, clips["a"])["jobId"])  # one render measured
        assert first["status"] == "completed"
        assert first["etaSeconds"] is None and "queuePosition" not in first["videos"][0]
        r = c.post("/api/queue/pause")
        assert r.status_code == 200 and r.json()["paused"] is True
        a = _upload(c, clips["a"])["jobId"]
        b = _upload(c, clips["a"], clips["a"])["jobId"]
        queue = c.get("/api/queue").json()
        assert queue == {"paused": True, "queued": 3, "running": 0, "workers": 1,
                         "etaSeconds": None}
        job_b = c.get(f"/api/jobs/{b}").json()
        assert [v["queuePosition"] for v in job_b["videos"]] == [2, 3]
        assert all(v["etaSeconds"] is None for v in job_b["videos"])  # paused: no times
    srv.stop()
    srv.start()
    with srv.client() as c:
        assert c.get("/api/queue").json()["paused"] is True
        time.sleep(1.5)
        assert c.get(f"/api/jobs/{a}").json()["status"] == "queued"
        r = c.post("/api/queue/resume")
        assert r.status_code == 200 and r.json()["paused"] is False
        job_b = c.get(f"/api/jobs/{b}").json()
        # Measured on the first job: every queued video has a time, the later ones later.
        etas = [v["etaSeconds"] for v in job_b["videos"] if v["status"] == "queued"]
        assert etas and all(e is not None and e > 0 for e in etas) and etas == sorted(etas)
        assert job_b["etaSeconds"] == max(v["etaSeconds"] for v in job_b["videos"]
                                          if v.get("etaSeconds") is not None)
        for job_id in (a, b):
            assert wait_job(c, job_id)["status"] == "completed"
        assert c.get("/api/queue").json() == {"paused": False, "queued": 0, "running": 0,
                                              "workers": 1, "etaSeconds": None}
        metrics = httpx.get(srv.url + "/metrics").text
    assert "vr_queue_paused 0.0" in metrics


def test_one_video_is_cancelled_while_the_rest_of_its_job_goes_on(make_server, clips):
    srv = make_server({"VR_WORKERS": "1"})
    with srv.client() as c:
        c.post("/api/queue/pause")
        job_id = _upload(c, clips["a"], clips["b"])["jobId"]
        first, second = (v["id"] for v in c.get(f"/api/jobs/{job_id}").json()["videos"])
        r = c.post(f"/api/jobs/{job_id}/videos/{first}/cancel")
        assert r.status_code == 202
        assert [v["status"] for v in r.json()["videos"]] == ["cancelled", "queued"]
        assert r.json()["videos"][1]["queuePosition"] == 1
        c.post("/api/queue/resume")
        job = wait_job(c, job_id)
        assert job["status"] == "completed"
        assert [v["status"] for v in job["videos"]] == ["cancelled", "completed"]
        again = c.post(f"/api/jobs/{job_id}/videos/{second}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "not_running"
        assert c.post(f"/api/jobs/{job_id}/videos/nope/cancel").status_code == 404


def test_queue_routes_need_a_login(server):
    for method, path in [("GET", "/api/queue"), ("POST", "/api/queue/pause"),
                         ("POST", "/api/queue/resume")]:
        assert httpx.request(method, server.url + path).status_code == 401


# -- API keys -------------------------------------------------------------------------------------


def test_an_api_key_works_like_a_login_until_revoked(server, clips):
    with server.client() as login:
        r = login.post("/api/keys", json={"name": "nightly upload"})
        assert r.status_code == 201
        made = r.json()
        key = made["key"]
        assert key.startswith("vrk_") and len(key) > 40
        listed = login.get("/api/keys").json()["keys"]
        assert listed == [{"id": made["id"], "name": "nightly upload",
                           "createdAt": made["createdAt"], "lastUsedAt": None}]
        with httpx.Client(base_url=server.url, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as script:
            job = wait_job(script, _upload(script, clips["a"])["jobId"])
            assert job["status"] == "completed"
            r = script.get(f"/api/jobs/{job['id']}/download")
            assert r.status_code == 200 and r.content[:2] == b"PK"
            assert httpx.get(f"{server.url}/api/jobs/{job['id']}/download",
                             params={"token": key}).status_code == 200
            # A key cannot mint, list or revoke keys.
            for method, path in [("POST", "/api/keys"), ("GET", "/api/keys"),
                                 ("DELETE", f"/api/keys/{made['id']}")]:
                r = script.request(method, path, json={"name": "more"})
                assert r.status_code == 403 and r.json()["error"]["code"] == "login_required"
            assert login.get("/api/keys").json()["keys"][0]["lastUsedAt"] is not None
            assert login.delete(f"/api/keys/{made['id']}").status_code == 204
            r = script.get("/api/jobs")
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_key"
        assert login.get("/api/keys").json()["keys"] == []
        assert login.delete(f"/api/keys/{made['id']}").status_code == 404
    db = sqlite3.connect(server.data_dir / "refresher.db")
    assert key not in json.dumps(db.execute("SELECT * FROM api_keys").fetchall())


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": 5},
                                  {"name": "x" * 101}, {"name": "a\x00b"}, [], "name"])
def test_a_key_needs_a_printable_name(server, body):
    with server.client() as c:
        r = c.post("/api/keys", json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_name"
        assert c.get("/api/keys").json()["keys"] == []


@pytest.mark.parametrize("key", ["vrk_", "vrk_nope", "vrk_" + "A" * 43, "vrk_\u00e9\ud800"])
def test_unknown_keys_are_401(server, key):
    header = f"Bearer {key}".encode("utf-8", "surrogatepass")
    r = httpx.get(server.url + "/api/jobs", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_key"


async def test_a_websocket_opened_with_a_key_closes_when_it_is_revoked(server):
    login = server.client()
    made = login.post("/api/keys", json={"name": "dashboard"}).json()
    url = f"ws://127.0.0.1:{server.port}/api/ws?token={made['key']}"
    async with open_websocket_url(url) as ws:
        hello = json.loads(await ws.get_message())
        assert hello["type"] == "hello"
        await trio.to_thread.run_sync(lambda: login.delete(f"/api/keys/{made['id']}"))
        with trio.fail_after(15):
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
    assert closed.value.reason.code == 4401
    login.close()


async def test_a_websocket_opened_with_a_login_token_closes_when_it_logs_out(server):
    """Logging out refused new requests, but a socket already open kept receiving every job's
    events until the token would have expired."""
    token = server.token()
    url = f"ws://127.0.0.1:{server.port}/api/ws?token={token}"
    async with open_websocket_url(url) as ws:
        hello = json.loads(await ws.get_message())
        assert hello["type"] == "hello"
        r = await trio.to_thread.run_sync(lambda: httpx.delete(
            server.url + "/api/auth", headers={"Authorization": f"Bearer {token}"}))
        assert r.status_code == 204
        with trio.fail_after(15):
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
    assert closed.value.reason.code == 4401
    assert closed.value.reason.reason == "This session was logged out. Log in again."


# -- webhooks -------------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on 127.0.0.1 answering the statuses in ``answers``, then 200."""

    def __init__(self, answers: list[int] | None = None, port: int | None = None):
        self.answers = list(answers or [])
        self.got: list[tuple[float, dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append((time.monotonic(), dict(self.headers), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _metrics_with(srv, line: str) -> str | None:
    text = httpx.get(srv.url + "/metrics").text
    return text if line in text else None


def _signed(headers: dict, body: bytes) -> bool:
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Refresher-Signature"], want)


def test_a_finished_job_is_posted_signed_and_retried_after_a_503(make_server, clips):
    receiver = Receiver(answers=[503])
    srv = make_server({"VR_WEBHOOK_URL": receiver.url, "VR_WEBHOOK_SECRET": SECRET})
    try:
        with srv.client() as c:
            job_id = _upload(c, clips["a"], name="hooked")["jobId"]
            job = wait_job(c, job_id)
            wait_for(lambda: len(receiver.got) >= 2, timeout=30)
            metrics = wait_for(lambda: _metrics_with(srv, "vr_webhook_delivered_total 1.0"),
                               timeout=10)
            db = sqlite3.connect(srv.data_dir / "refresher.db")
            assert db.execute("SELECT tries, delivered_at IS NOT NULL, last_status FROM"
                              " webhook_deliveries").fetchall() == [(2, 1, 200)]
            # Deleting the job forgets the deliveries made for it.
            assert c.delete(f"/api/jobs/{job_id}").status_code == 204
            assert db.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (0,)
            db.close()
    finally:
        receiver.close()
    (t1, h1, b1), (t2, h2, b2) = receiver.got[:2]
    assert len(receiver.got) == 2  # delivered: not sent again
    assert b1 == b2 and _signed(h1, b1) and _signed(h2, b2)
    assert 3.0 <= t2 - t1 <= 10.0  # the first retry comes within about 5 s
    assert h1["Content-Type"] == "application/json" and h1["X-Refresher-Event"] == "job.completed"
    doc = json.loads(b1)
    assert doc["event"] == "job.completed"
    assert doc["job"]["id"] == job_id and doc["job"]["name"] == "hooked"
    assert doc["job"]["status"] == "completed" and doc["job"]["videos"] == job["videos"]
    assert "vr_webhook_failed_tries_total 1.0" in metrics
    assert "vr_webhook_given_up_total 0.0" in metrics
    log = srv.log()
    assert '"msg": "webhook failed"' in log and '"msg": "webhook delivered"' in log


def test_a_cancelled_job_is_posted_and_a_forged_signature_would_not_match(make_server, clips):
    receiver = Receiver()
    srv = make_server({"VR_WEBHOOK_URL": receiver.url, "VR_WEBHOOK_SECRET": SECRET,
                       "VR_WORKERS": "1"})
    try:
        with srv.client() as c:
            c.post("/api/queue/pause")
            job_id = _upload(c, clips["a"])["jobId"]
            assert c.post(f"/api/jobs/{job_id}/cancel").status_code == 202
            wait_for(lambda: receiver.got, timeout=15)
    finally:
        receiver.close()
    _, headers, body = receiver.got[0]
    assert json.loads(body)["event"] == "job.cancelled" and _signed(headers, body)
    assert not _signed(headers, body.replace(b"cancelled", b"completed"))


def test_an_owed_delivery_survives_a_restart(make_server, clips):
    port = free_port()  # nothing listens there yet: the first try is refused
    srv = make_server({"VR_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook",
                       "VR_WEBHOOK_SECRET": SECRET})
    with srv.client() as c:
        job_id = _upload(c, clips["a"])["jobId"]
        wait_job(c, job_id)
    wait_for(lambda: '"msg": "webhook failed"' in srv.log(), timeout=15)
    srv.stop()
    receiver = Receiver(port=port)
    try:
        srv.start()
        wait_for(lambda: receiver.got, timeout=30)
    finally:
        receiver.close()
    _, headers, body = receiver.got[0]
    assert json.loads(body)["job"]["id"] == job_id and _signed(headers, body)


@pytest.mark.parametrize(("env", "says"), [
    ({"VR_WEBHOOK_URL": "ftp://example.com/x", "VR_WEBHOOK_SECRET": "s"}, "VR_WEBHOOK_URL"),
    ({"VR_WEBHOOK_URL": "http://[::1/", "VR_WEBHOOK_SECRET": "s"}, "VR_WEBHOOK_URL"),
    ({"VR_WEBHOOK_URL": "http://localhost:99999/", "VR_WEBHOOK_SECRET": "s"}, "VR_WEBHOOK_URL"),
    ({"VR_WEBHOOK_URL": "http://127.0.0.1:9/hook"}, "VR_WEBHOOK_SECRET"),
])
def test_bad_webhook_settings_stop_startup_with_one_line(env, says):
    with pytest.raises(ConfigError, match=says):
        load_settings(env)


def _zip_member(data: bytes, name: str) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read(name)
