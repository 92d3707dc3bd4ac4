"""The HTTP API foundation against the real server process: health, auth, upload, job API."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import time

import httpx
import pytest

from tests.clips import make_clip, make_text_file_as_mp4
from tests.server import PASSWORD, ServerProcess, wait_for


def _files(*paths, names=None):
    names = names or [p.name for p in paths]
    return [("videos", (n, p.read_bytes(), "video/mp4")) for p, n in zip(paths, names, strict=True)]


def _leftovers(srv: ServerProcess) -> tuple[list, int]:
    uploads = sorted(p.name for p in (srv.data_dir / "uploads").rglob("*"))
    with sqlite3.connect(srv.data_dir / "refresher.db") as db:
        rows = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        rows += db.execute("SELECT count(*) FROM videos").fetchone()[0]
    return uploads, rows


def test_health_reports_version_and_ffmpeg(server):
    r = httpx.get(server.url + "/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"]
    assert body["ffmpeg"].startswith(("n", "7", "8", "9", "5", "6"))
    assert "ffmpeg" in body["ffmpegPath"]
    effects = {e["name"]: e for e in body["effects"]}
    assert list(effects) == ["zoom", "rotation", "color", "hue", "noise", "speed", "mirror", "audio",
                             "pitch"]
    assert [n for n, e in effects.items() if not e["default"]] == ["rotation", "hue", "pitch"]
    assert [n for n, e in effects.items() if e["geometric"]] == ["zoom", "rotation"]


def test_health_is_503_when_data_dir_unusable(server):
    shutil.rmtree(server.data_dir)
    r = httpx.get(server.url + "/api/health")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"


def test_login_gives_a_signed_expiring_token(server):
    r = httpx.post(server.url + "/api/auth", json={"password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["token"] and body["expiresAt"].endswith("Z")
    ok = httpx.get(server.url + "/api/jobs", headers={"Authorization": f"Bearer {body['token']}"})
    assert ok.status_code == 200 and ok.json() == {"jobs": []}


def test_wrong_password_is_401_then_429_after_ten_failures(server):
    for _ in range(10):
        r = httpx.post(server.url + "/api/auth", json={"password": "nope"})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "wrong_password"
    r = httpx.post(server.url + "/api/auth", json={"password": PASSWORD})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "too_many_attempts"
    assert int(r.headers["Retry-After"]) > 0


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Basic abc"},
])
def test_api_needs_a_valid_token(server, headers):
    for method, path in [("GET", "/api/jobs"), ("GET", "/api/jobs/jx"), ("POST", "/api/jobs")]:
        r = httpx.request(method, server.url + path, headers=headers)
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] in ("auth_required", "invalid_token")


def test_tampered_token_is_rejected(server):
    token = server.token()
    payload, sig = token.split(".")
    forged = json.dumps({"exp": time.time() + 10**6}).encode()
    import base64

    forged_payload = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    for bad in (f"{forged_payload}.{sig}", f"{payload}.{sig[:-2]}xx", token + "x"):
        r = httpx.get(server.url + "/api/jobs", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401


def test_expired_token_is_rejected(make_server):
    srv = make_server({"VR_TOKEN_TTL": "1s"})
    token = srv.token()
    h = {"Authorization": f"Bearer {token}"}
    assert httpx.get(srv.url + "/api/jobs", headers=h).status_code == 200
    time.sleep(1.2)
    r = httpx.get(srv.url + "/api/jobs", headers=h)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "token_expired"


def test_logout_ends_the_session_everywhere_and_across_a_restart(server, clips):
    """Logging out only forgot the token in the browser: it kept working for 24 hours, in the
    API and in every ``?token=`` link made with it."""
    token, other = server.token(), server.token()
    h = {"Authorization": f"Bearer {token}"}
    with server.client() as c:
        job_id = c.post("/api/jobs", files=_files(clips["a"]), data={"variations": "1"}
                        ).json()["jobId"]
    # Logging out needs the token it ends.
    assert httpx.delete(server.url + "/api/auth").status_code == 401
    r = httpx.delete(server.url + "/api/auth", headers=h)
    assert r.status_code == 204 and r.content == b""
    for call in (lambda: httpx.get(server.url + "/api/jobs", headers=h),
                 lambda: httpx.get(f"{server.url}/api/jobs/{job_id}/download",
                                   params={"token": token}),
                 lambda: httpx.delete(server.url + "/api/auth", headers=h)):
        r = call()
        assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked", r.text
        assert r.json()["error"]["message"] == "This session was logged out. Log in again."
    # Another session goes on; the logged-out one stays out after a restart.
    oh = {"Authorization": f"Bearer {other}"}
    assert httpx.get(server.url + "/api/jobs", headers=oh).status_code == 200
    server.stop()
    server.start()
    assert httpx.get(server.url + "/api/jobs", headers=h).status_code == 401
    assert httpx.get(server.url + "/api/jobs", headers=oh).status_code == 200
    # An API key is not a session: it is revoked as a key.
    key = httpx.post(server.url + "/api/keys", headers=oh, json={"name": "ci"}).json()["key"]
    r = httpx.delete(server.url + "/api/auth", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "not_a_session"
    # The 204 went out cleanly (an empty Response() made Quart fail after the headers).
    assert "Error in ASGI Framework" not in server.log()


def test_multi_file_upload_creates_a_queued_job(server, clips):
    with server.client() as c:
        r = c.post("/api/jobs", files=_files(clips["a"], clips["b"]), data={"variations": "3"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "queued" and body["variationsPerVideo"] == 3
        assert [v["name"] for v in body["videos"]] == ["a.mp4", "b.mov"]
        assert [v["size"] for v in body["videos"]] == [clips["a"].stat().st_size,
                                                       clips["b"].stat().st_size]
        job = c.get(body["statusUrl"]).json()
        assert job["id"] == body["jobId"]
        assert [v["id"] for v in job["videos"]] == [v["id"] for v in body["videos"]]
        for v in job["videos"]:
            assert v["status"] in ("queued", "processing", "completed")
            assert 0 <= v["progress"] <= 100
        # The upload went to the data dir under a generated name, byte for byte.
        stored = list((server.data_dir / "uploads" / body["jobId"]).glob("*.upload"))
        done = c.get(body["statusUrl"]).json()["videos"]
        assert len(stored) + sum(v["status"] == "completed" for v in done) >= 2


def test_jobs_are_listed_newest_first(server, clips):
    with server.client() as c:
        ids = []
        for _ in range(3):
            r = c.post("/api/jobs", files=_files(clips["a"]), data={"variations": "1"})
            assert r.status_code == 202
            ids.append(r.json()["jobId"])
        listed = [j["id"] for j in c.get("/api/jobs").json()["jobs"]]
        assert listed == ids[::-1]
        assert c.get("/api/jobs/jdoesnotexist").status_code == 404


def test_first_job_is_queued_at_zero_while_worker_busy(make_server, tmp_path):
    srv = make_server({"VR_WORKERS": "1"})
    long = make_clip(tmp_path, "long.mp4", seconds=6, size="640x360", fps=30)
    short = make_clip(tmp_path, "short.mp4")
    with srv.client() as c:
        first = c.post("/api/jobs", files=_files(long), data={"variations": "4"}).json()
        second = c.post("/api/jobs", files=_files(short), data={"variations": "2"}).json()
        job = c.get(second["statusUrl"]).json()
        assert job["status"] == "queued"
        assert [(v["status"], v["progress"]) for v in job["videos"]] == [("queued", 0)]
        c.post(f"/api/jobs/{first['jobId']}/cancel")


@pytest.mark.parametrize("case,status,code", [
    ("no_files", 400, "no_files"),
    ("text_as_mp4", 415, "not_a_video"),
    ("one_good_one_text", 415, "not_a_video"),
    ("variations_zero", 400, "bad_variations"),
    ("variations_21", 400, "bad_variations"),
    ("variations_text", 400, "bad_variations"),
    ("bad_effects", 400, "bad_effects"),
    ("not_multipart", 400, "expected_multipart"),
    # JSON asks for a job from resumable uploads, and says what that needs.
    ("json_without_uploads", 400, "no_uploads"),
])
def test_bad_uploads_leave_nothing_behind(server, clips, tmp_path, case, status, code):
    text = make_text_file_as_mp4(tmp_path)
    kwargs = {
        "no_files": {"data": {"variations": "3"}, "files": [("other", ("x.txt", b"x", "text/plain"))]},
        "text_as_mp4": {"files": _files(text)},
        "one_good_one_text": {"files": _files(clips["a"], text)},
        "variations_zero": {"files": _files(clips["a"]), "data": {"variations": "0"}},
        "variations_21": {"files": _files(clips["a"]), "data": {"variations": "21"}},
        "variations_text": {"files": _files(clips["a"]), "data": {"variations": "many"}},
        "bad_effects": {"files": _files(clips["a"]), "data": {"effects": "-sparkles"}},
        "not_multipart": {"content": b"videos", "headers": {"Content-Type": "text/plain"}},
        "json_without_uploads": {"json": {"videos": []}},
    }[case]
    with server.client() as c:
        r = c.post("/api/jobs", **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and len(err["message"]) > 10
    assert _leftovers(server) == ([], 0)


def test_too_many_files_and_too_large_are_413(make_server, clips):
    srv = make_server({"VR_MAX_FILES": "2", "VR_MAX_UPLOAD": "200KB"})
    with srv.client() as c:
        r = c.post("/api/jobs", files=_files(clips["a"], clips["a"], clips["a"],
                                             names=["1.mp4", "2.mp4", "3.mp4"]))
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_files"
        big = b"\0" * 250_000
        r = c.post("/api/jobs", files=[("videos", ("big.mp4", big, "video/mp4"))])
        assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    assert _leftovers(srv) == ([], 0)


def test_too_large_chunked_upload_is_413(make_server):
    srv = make_server({"VR_MAX_UPLOAD": "100KB"})

    def body():
        yield b"--B\r\nContent-Disposition: form-data; name=\"videos\"; filename=\"x.mp4\"\r\n\r\n"
        for _ in range(50):
            yield b"\0" * 10_000

    with srv.client() as c:
        r = c.post("/api/jobs", content=body(),
                   headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert r.status_code == 413
    assert _leftovers(srv) == ([], 0)


def test_path_traversal_name_is_display_text_only(server, clips):
    with server.client() as c:
        r = c.post("/api/jobs", files=_files(clips["a"], names=["../../etc/passwd.mp4"]))
        assert r.status_code == 202
        assert r.json()["videos"][0]["name"] == "passwd.mp4"
    stored = [p for p in server.data_dir.rglob("*") if p.is_file()]
    assert all(server.data_dir in p.parents for p in stored)
    assert not any("passwd" in p.name for p in stored)


def test_client_disconnect_mid_upload_removes_partial_files(server, clips):
    token = server.token()
    head = (b"--B\r\nContent-Disposition: form-data; name=\"videos\"; filename=\"a.mp4\"\r\n"
            b"Content-Type: video/mp4\r\n\r\n")
    payload = clips["a"].read_bytes()
    request = (
        f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {10_000_000}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(request + head + payload + b"\0" * 2_000_000)
        wait_for(lambda: any((server.data_dir / "uploads").rglob("*.upload")), timeout=10)
    wait_for(lambda: _leftovers(server) == ([], 0), timeout=10)


def test_restart_keeps_jobs_and_uses_wal(server, clips):
    with server.client() as c:
        job_id = c.post("/api/jobs", files=_files(clips["a"]), data={"variations": "1"}).json()["jobId"]
    took = server.stop()
    assert took < 10
    assert server.proc.returncode == 0
    with sqlite3.connect(server.data_dir / "refresher.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
    server.start()
    with server.client() as c:
        assert [j["id"] for j in c.get("/api/jobs").json()["jobs"]] == [job_id]


def test_generated_password_is_printed_once(tmp_path):
    import os
    import subprocess
    import sys

    from tests.server import ROOT, free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    outs = []
    for _ in range(2):
        port = free_port()
        p = subprocess.Popen([sys.executable, "-m", "web.cli", "serve", "--port", str(port),
                              "--data-dir", str(tmp_path / "d")], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        wait_for(lambda port=port: _up(port), timeout=30)
        p.terminate()
        outs.append(p.communicate(timeout=15)[0])
    password = (tmp_path / "d" / "password.txt").read_text().strip()
    assert password in outs[0]
    assert password not in outs[1]


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_bad_config_stops_startup_with_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from tests.server import ROOT

    env = {**os.environ, "VR_STORAGE_CAP": "three gigs"}
    done = subprocess.run([sys.executable, "-m", "web.cli", "serve", "--data-dir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "VR_STORAGE_CAP" in done.stderr


# -- client address behind a proxy --------------------------------------------------------------

# (VR_TRUSTED_PROXY, client A's headers, client B's headers) as the trusted proxies pass them on.
_PROXIES = {
    "fly": ({"Fly-Client-IP": "203.0.113.7"}, {"Fly-Client-IP": "203.0.113.8"}),
    "1": ({"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "2001:db8::8"}),
    "2": ({"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}, {"X-Forwarded-For": "203.0.113.8, 10.0.0.1"}),
}
# What client A adds to get out of its lock-out: entries the proxies would pass on untouched.
_FORGED = {
    "fly": {"X-Forwarded-For": "198.51.100.1"},
    "1": {"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "Fly-Client-IP": "198.51.100.1"},
    "2": {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.0.0.1", "Fly-Client-IP": "198.51.100.1"},
}


def _login(srv: ServerProcess, password: str, headers: dict) -> httpx.Response:
    return httpx.post(srv.url + "/api/auth", json={"password": password}, headers=headers)


def _lock_out(srv: ServerProcess, headers: dict) -> None:
    for _ in range(10):
        assert _login(srv, "nope", headers).status_code == 401
    assert _login(srv, PASSWORD, headers).status_code == 429


@pytest.mark.parametrize("trusted", sorted(_PROXIES))
def test_behind_a_trusted_proxy_one_clients_lock_out_does_not_block_another(make_server, trusted):
    srv = make_server({"VR_TRUSTED_PROXY": trusted})
    a, b = _PROXIES[trusted]
    _lock_out(srv, a)
    assert _login(srv, PASSWORD, b).status_code == 200
    # Headers the trusted proxies would pass on as the client sent them do not help A out.
    forged = {**a, **_FORGED[trusted]}
    assert _login(srv, PASSWORD, forged).status_code == 429
    assert _login(srv, PASSWORD, {**b, "X-Forwarded-For": "junk"}).status_code < 500


def test_without_a_trusted_proxy_forged_headers_do_not_escape_a_lock_out(server):
    _lock_out(server, {})
    for headers in [{"X-Forwarded-For": "198.51.100.1"}, {"Fly-Client-IP": "198.51.100.2"},
                    {"X-Forwarded-For": "198.51.100.3, 198.51.100.4", "Forwarded": "for=1.2.3.4"}]:
        r = _login(server, PASSWORD, headers)
        assert r.status_code == 429, headers


@pytest.mark.parametrize("raw,value", [("", None), ("0", None), ("fly", "fly"), (" FLY ", "fly"),
                                       ("1", 1), ("3", 3)])
def test_trusted_proxy_setting(raw, value):
    from pipeline.config import load_settings

    assert load_settings({"VR_TRUSTED_PROXY": raw}).trusted_proxy == value


@pytest.mark.parametrize("raw", ["cloudflare", "-1", "1.5", "１", "2 hops"])
def test_bad_trusted_proxy_setting_is_one_line(raw):
    from pipeline.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="^VR_TRUSTED_PROXY: "):
        load_settings({"VR_TRUSTED_PROXY": raw})


# Python's int() takes all of these; a count is ASCII digits only.
_NOT_A_COUNT = ["1_0", "+3", "-3", " 3", "3 ", "\t3", "３", "٣", "۳", "३", "3.0", "3e0", "0x3", "",
                "\u00a03", "3\u200b", "²", "Ⅲ"]


def test_variations_are_ascii_digits_only(server, clips):
    with server.client() as c:
        for value in _NOT_A_COUNT:
            r = c.post("/api/jobs", files=_files(clips["a"]), data={"variations": value})
            if value == "":
                assert r.status_code == 202, r.text  # an empty field means the default
                c.post(f"/api/jobs/{r.json()['jobId']}/cancel")
                continue
            assert r.status_code == 400, (ascii(value), r.text)
            assert r.json()["error"]["code"] == "bad_variations"
        for value, n in [("3", 3), ("03", 3), ("20", 20)]:
            r = c.post("/api/jobs", files=_files(clips["a"]), data={"variations": value})
            assert r.status_code == 202 and r.json()["variationsPerVideo"] == n, r.text
            c.post(f"/api/jobs/{r.json()['jobId']}/cancel")


@pytest.mark.parametrize("effects", ["-zoom", "-zoom,-color,-noise,-mirror",
                                     "-zoom,-rotation,-color,-hue,-noise,-speed,-mirror,-audio"])
def test_effects_that_leave_the_picture_alone_are_refused(server, clips, effects):
    with server.client() as c:
        r = c.post("/api/jobs", files=_files(clips["a"]), data={"effects": effects})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "bad_effects" and "zoom" in err["message"] and "+rotation" in err["message"]
    assert _leftovers(server) == ([], 0)
