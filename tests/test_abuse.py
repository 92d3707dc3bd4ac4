"""Abuse against the real server: odd and hostile file names (stored safely, ZIP entries
zip-slip safe), oversized headers and bodies, a slow-loris upload, forged and expired tokens on
the WebSocket, CORS only for configured origins, and the browser app's security headers.

Token tampering and expiry over HTTP are in test_api.py; WebSocket without a token or with a
malformed one in test_ws.py.
"""

from __future__ import annotations

import io
import json
import posixpath
import socket
import sqlite3
import time
import unicodedata
import zipfile

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.server import ServerProcess, wait_for, wait_job
from web.auth import Auth

TEAM = "https://team.example"
IDLE = 2.0  # VR_UPLOAD_IDLE_TIMEOUT of the module's server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("abuse") / "data",
                           env={"VR_CORS_ORIGINS": f"{TEAM}, http://localhost:5173",
                                "VR_UPLOAD_IDLE_TIMEOUT": f"{IDLE}s"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(srv) -> str:
    return srv.token()


# -- helpers ----------------------------------------------------------------------------------


def multipart(files: list[tuple[bytes, bytes]], fields: dict[str, str] | None = None,
              boundary: bytes = b"XyZzY") -> bytes:
    """A multipart body with raw (unescaped) file names, as a hostile client may send them."""
    out = bytearray()
    for name, value in (fields or {}).items():
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode()
        out += b'"\r\n\r\n' + value.encode() + b"\r\n"
    for filename, data in files:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="videos"; filename="'
        out += filename + b'"\r\nContent-Type: video/mp4\r\n\r\n' + data + b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return bytes(out)


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int | None, dict, bytes]:
    """One HTTP/1.1 response read off ``sock``: (status, headers, body); status None if the
    server closed the connection without answering."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            return None, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw(srv, data: bytes, timeout: float = 10.0) -> tuple[int | None, dict, bytes]:
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server may refuse before reading everything; its answer still counts
        return read_response(s, timeout)


def is_control_free(text: str) -> bool:
    return not any(unicodedata.category(ch)[0] == "C" for ch in text)


def leftovers(srv, job_id: str | None = None) -> tuple[list[str], int]:
    uploads = sorted(str(p.relative_to(srv.data_dir)) for p in (srv.data_dir / "uploads").rglob("*")
                     if job_id is None or job_id in p.parts)
    with sqlite3.connect(srv.data_dir / "refresher.db") as db:
        rows = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    return uploads, rows


# -- file names -------------------------------------------------------------------------------

HOSTILE_NAMES = [
    b"..\\..\\windows\\system32\\evil.mp4",
    b"/etc/cron.d/absolute.mp4",
    "r\u202eevil\u202c4pm.mp4".encode(),  # right-to-left override
    b"tab\there\x07bell\x1b[31mred.mp4",  # control characters and an ANSI escape
    b"..",
    "𝔥é\u0301llo 東京 🎬.mp4".encode(),
    b"nul\x00byte.mp4",
]


def test_hostile_file_names_are_stored_safely_and_zip_entries_are_zip_slip_safe(srv, token, clips):
    body = multipart([(n, clips["a"].read_bytes()) for n in HOSTILE_NAMES], {"variations": "1"})
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "multipart/form-data; boundary=XyZzY"}
    r = httpx.post(srv.url + "/api/jobs", content=body, headers=headers, timeout=60)
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    names = [v["name"] for v in r.json()["videos"]]
    assert len(names) == len(HOSTILE_NAMES)
    for name in names:
        assert name and name not in (".", "..") and "/" not in name and "\\" not in name, name
        assert is_control_free(name), ascii(name)

    with srv.client() as c:
        job = wait_job(c, job_id, timeout=120)
        assert job["status"] == "completed", job
        z = c.get(f"/api/jobs/{job_id}/download")
    assert z.status_code == 200

    # On disk: only generated names, all inside the data dir.
    data_dir = srv.data_dir.resolve()
    for p in srv.data_dir.rglob("*"):
        assert data_dir in p.resolve().parents
        assert not any(w in str(p) for w in ("evil", "absolute", "cron", "windows", "東京", "bell"))

    # The archive: relative, forward-slash paths without "..", control characters or
    # duplicates, each staying inside the folder it is extracted to.
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        entries = zf.namelist()
        assert zf.testzip() is None
        manifest = json.loads(zf.read("manifest.json"))
    assert len(entries) == len(set(entries)) == len(HOSTILE_NAMES) + 1
    for entry in entries:
        assert not entry.startswith("/") and "\\" not in entry and ":" not in entry, entry
        parts = entry.split("/")
        assert all(part and part not in (".", "..") for part in parts), entry
        assert is_control_free(entry), ascii(entry)
        assert posixpath.normpath(posixpath.join("/x", entry)).startswith("/x/")
    folders = {e.split("/")[0] for e in entries if "/" in e}
    assert len(folders) == len(HOSTILE_NAMES)
    assert {v["source"] for v in manifest["variations"]} == set(names)


@pytest.mark.parametrize("filename", [b"\xff\xfe.mp4", b"line\rbreak.mp4"])
def test_undecodable_or_broken_names_are_400_and_leave_nothing(srv, token, clips, filename):
    before = leftovers(srv)
    body = multipart([(filename, clips["a"].read_bytes())])
    r = httpx.post(srv.url + "/api/jobs", content=body, timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=XyZzY"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_multipart"
    assert "codec" not in error["message"] and "_parser" not in error["message"], error
    assert leftovers(srv) == before


# -- sizes and pace ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    b"X-Big: " + b"a" * 256_000 + b"\r\n",
    b"".join(b"X-Header-%05d: some value\r\n" % i for i in range(12_000)),
])
def test_oversized_headers_are_refused_not_a_server_error(srv, headers):
    status, _, _ = raw(srv, b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status in (400, 431)
    assert httpx.get(srv.url + "/api/health").status_code == 200


def test_big_bodies_on_small_endpoints_are_413(srv):
    big = json.dumps({"password": "x" * 200_000})
    r = httpx.post(srv.url + "/api/auth", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunked():  # no Content-Length: the limit is enforced while reading
        for _ in range(100):
            yield b" " * 10_000

    r = httpx.post(srv.url + "/api/auth", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize("gap", [IDLE / 4, IDLE * 1.5], ids=["drip", "silent"])
def test_slow_loris_upload_is_dropped_and_leaves_nothing(srv, token, clips, gap):
    """A byte now and then, whether the gaps are shorter or longer than the idle timeout."""
    before = leftovers(srv)
    body = multipart([(b"slow.mp4", clips["a"].read_bytes())])
    head = (f"POST /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=XyZzY\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    status = resp = None
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(head + body[:2000])
        # The job's upload folder exists once the server started on the body.
        wait_for(lambda: any((srv.data_dir / "uploads").iterdir()), timeout=10)
        t0 = time.monotonic()
        for i in range(2000, 2000 + int(IDLE * 6 / gap)):
            s.settimeout(gap)
            try:
                status, _, resp = read_response(s, timeout=gap)
                break
            except TimeoutError:
                pass
            try:
                s.sendall(body[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
        dropped_after = time.monotonic() - t0
    assert status in (None, 408), status
    if status == 408:
        assert json.loads(resp)["error"]["code"] == "upload_timeout"
    assert dropped_after < IDLE * 3, dropped_after
    wait_for(lambda: leftovers(srv) == before, timeout=10)


def test_an_early_refusal_does_not_hang_the_next_request_on_the_connection(srv):
    # Refused before its body is read (no token): the connection is closed after the answer,
    # so the client's next request goes on a fresh one instead of waiting forever.
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        for _ in range(3):
            r = c.post("/api/jobs", content=b"\0" * 3_000_000,
                       headers={"Content-Type": "multipart/form-data; boundary=B"})
            assert r.status_code == 401
            assert r.headers.get("connection") == "close"
            assert c.get("/api/health").status_code == 200


def test_connection_close_is_honoured(srv):
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, _ = read_response(s, timeout=5)
        assert status == 200
        s.settimeout(5)
        assert s.recv(1) == b"", "the server should close the connection"


# -- paths and tokens -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ui/..%2f..%2fpyproject.toml", "/ui/%2e%2e/%2e%2e/pyproject.toml",
                                  "/ui/../data/refresher.db", "/ui//etc/passwd"])
def test_ui_paths_cannot_leave_the_ui_folder(srv, path):
    status, headers, body = raw(srv, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    # Werkzeug merges double slashes with a redirect that stays under /ui/.
    assert status == 404 or (status == 308 and "/ui/" in headers["location"]), (path, status)
    assert b"[project]" not in body and b"root:" not in body


async def _ws_close_code(srv, token: str) -> int:
    url = srv.url.replace("http://", "ws://") + f"/api/ws?token={token}"
    async with open_websocket_url(url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            with trio.fail_after(10):
                await ws.get_message()
    return info.value.reason.code


async def test_websocket_refuses_forged_and_expired_tokens(srv):
    forged, _ = Auth("pw", b"not-the-server-key", 3600, time.time).issue()
    assert await _ws_close_code(srv, forged) == 4401
    # Signed with the server's own key, but expired an hour ago.
    secret = (srv.data_dir / "secret.key").read_bytes().strip()
    expired, _ = Auth("pw", secret, 60, lambda: time.time() - 3600).issue()
    assert await _ws_close_code(srv, expired) == 4401
    # A payload edited to expire later (signature no longer matches).
    good, _ = Auth("pw", secret, 60, time.time).issue()
    payload, sig = good.split(".")
    assert await _ws_close_code(srv, payload[:-2] + "xx." + sig) == 4401


# -- CORS and headers -------------------------------------------------------------------------


def test_cors_answers_only_configured_origins(srv, token):
    ok = httpx.get(srv.url + "/api/health", headers={"Origin": TEAM})
    assert ok.headers["access-control-allow-origin"] == TEAM
    assert "Origin" in ok.headers["vary"]
    assert "access-control-allow-credentials" not in ok.headers

    other = httpx.get(srv.url + "/api/health", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers

    # Errors reach the allowed origin's script too (so it can show "log in again").
    denied = httpx.get(srv.url + "/api/jobs", headers={"Origin": TEAM})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == TEAM

    preflight = {"Origin": TEAM, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    p = httpx.options(srv.url + "/api/jobs", headers=preflight)
    assert p.status_code == 204
    assert p.headers["access-control-allow-origin"] == TEAM
    assert "POST" in p.headers["access-control-allow-methods"]
    assert "authorization" in p.headers["access-control-allow-headers"].lower()

    p = httpx.options(srv.url + "/api/jobs", headers={**preflight, "Origin": "https://evil.example"})
    assert p.status_code < 500 and "access-control-allow-origin" not in p.headers


def test_no_cors_without_configured_origins(server):
    r = httpx.get(server.url + "/api/health", headers={"Origin": TEAM})
    assert "access-control-allow-origin" not in r.headers
    p = httpx.options(server.url + "/api/jobs", headers={
        "Origin": TEAM, "Access-Control-Request-Method": "POST"})
    assert p.status_code < 500 and "access-control-allow-origin" not in p.headers


@pytest.mark.parametrize("path", ["/", "/ui/js/app.js", "/ui/css/app.css"])
def test_browser_app_has_security_headers(srv, path):
    r = httpx.get(srv.url + path)
    assert r.status_code == 200
    csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split(";") if d.strip()}
    scripts = csp.get("script-src", csp["default-src"])
    assert "'self'" in scripts
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_api_responses_are_not_cached_or_sniffed(srv, token):
    r = httpx.get(srv.url + "/api/jobs", headers={"Authorization": f"Bearer {token}"})
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"].startswith("application/json")


# -- odd tokens -------------------------------------------------------------------------------

# Whatever a client sends as a token: non-ASCII letters, emoji, combining marks, NUL and other
# control characters, several dots, a long one, a lone surrogate (invalid UTF-8 in a query).
ODD_TOKENS = ["é", "токен.подпись", "🎬.🎬", "ab.c\u0301", "a\x00b", "a.b.c", "\x01\x1f\x7f.\t",
              "x" * 8000, "é" * 2000 + "." + "x" * 43, ".", "..", "\ufeff.\u202e"]
# Raw query forms: bytes that are not UTF-8 at all.
ODD_QUERIES = ["%ff%fe.%c0%af", "%ed%a0%80.x", "%00", "a%2eb%2ec"]


def _query_forms() -> list[str]:
    from urllib.parse import quote

    return [quote(t, safe="") for t in ODD_TOKENS] + ODD_QUERIES


def _is_401_json(r: httpx.Response) -> bool:
    return r.status_code == 401 and r.json()["error"]["code"] in ("auth_required", "invalid_token")


def _short(value: str) -> str:
    return ascii(value)[1:21]


@pytest.mark.parametrize("token", ODD_TOKENS, ids=_short)
def test_any_bearer_token_is_401_never_a_server_error(srv, token):
    # A raw request: HTTP clients refuse to send some of these bytes in a header at all.
    status, _, body = raw(srv, b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + token.encode("utf-8") + b"\r\n\r\n")
    if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in token):
        # Control bytes are not legal in an HTTP header: refused before the app sees them.
        assert status in (400, 401), (status, body)
    else:
        assert status == 401, (status, body)
        assert json.loads(body)["error"]["code"] in ("auth_required", "invalid_token")


@pytest.mark.parametrize("query", _query_forms())
def test_any_query_token_on_the_download_is_401_never_a_server_error(srv, query):
    r = httpx.get(f"{srv.url}/api/jobs/jnope/download?token={query}")
    assert _is_401_json(r), (r.status_code, r.text)


async def test_any_websocket_token_closes_4401_never_a_server_error(srv):
    for query in _query_forms():
        assert await _ws_close_code(srv, query) == 4401, query
    assert "unhandled error" not in srv.log()


@pytest.mark.parametrize("password", ["\ud800", "é" * 100, "\x00", "🎬"], ids=_short)
def test_any_password_is_401_never_a_server_error(make_server, password):
    srv = make_server()
    body = json.dumps({"password": password})  # ASCII JSON: "\ud800" stays a lone surrogate
    r = httpx.post(srv.url + "/api/auth", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "wrong_password", r.text


# -- truncated multipart ----------------------------------------------------------------------


def _file_then_field(video: bytes) -> bytes:
    """A file part followed by a field part: a cut body loses the field without a trace."""
    return (b"--XyZzY\r\nContent-Disposition: form-data; name=\"videos\"; filename=\"cut.mp4\"\r\n"
            b"Content-Type: video/mp4\r\n\r\n" + video + b"\r\n"
            b"--XyZzY\r\nContent-Disposition: form-data; name=\"variations\"\r\n\r\n1\r\n"
            b"--XyZzY--\r\n")


def _cut_points(body: bytes, video: bytes) -> dict[str, int]:
    field = body.index(b"--XyZzY\r\nContent-Disposition: form-data; name=\"variations\"")
    end = body.rindex(b"\r\n--XyZzY--")
    return {
        "inside the first part's headers": 40,
        "inside the file": body.index(video) + len(video) // 2,
        "after the file's data": body.index(video) + len(video),
        "inside a delimiter": field + 4,
        "between parts": field + len(b"--XyZzY\r\n"),
        "inside the last part's headers": field + 30,
        "inside the last value": end - 1 - 0,
        "before the closing boundary": end,
        "inside the closing boundary": end + len(b"\r\n--XyZ"),
        "before the final --": end + len(b"\r\n--XyZzY"),
        "one dash short": end + len(b"\r\n--XyZzY-"),
    }


def test_a_body_cut_short_is_400_incomplete_upload_and_leaves_nothing(srv, token, clips):
    video = clips["a"].read_bytes()
    body = _file_then_field(video)
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "multipart/form-data; boundary=XyZzY"}
    before = leftovers(srv)
    for where, cut in _cut_points(body, video).items():
        r = httpx.post(srv.url + "/api/jobs", content=body[:cut], headers=headers, timeout=30)
        assert r.status_code == 400, (where, r.text)
        assert r.json()["error"]["code"] == "incomplete_upload", (where, r.text)
        assert leftovers(srv) == before, where


@pytest.mark.parametrize("ending", [b"", b"\r\n", b"\r\n\r\n", b"\r\nan epilogue\r\n"],
                         ids=["bare", "crlf", "two", "epilogue"])
def test_a_complete_body_is_accepted_with_every_field(srv, token, clips, ending):
    body = _file_then_field(clips["a"].read_bytes()).removesuffix(b"\r\n") + ending
    r = httpx.post(srv.url + "/api/jobs", content=body, timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=XyZzY"})
    assert r.status_code == 202, r.text
    assert r.json()["variationsPerVideo"] == 1
    httpx.post(f"{srv.url}/api/jobs/{r.json()['jobId']}/cancel",
               headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("ctype", ["multipart/form-data; boundary=", 'multipart/form-data; boundary=""',
                                   "multipart/form-data; boundary=a; boundary=b;;"])
def test_a_bad_boundary_parameter_is_400(srv, token, ctype):
    r = httpx.post(srv.url + "/api/jobs", content=b"--a--\r\n", timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Type": ctype})
    assert 400 <= r.status_code < 500, r.text


# -- full file names --------------------------------------------------------------------------

# (file name as the client puts it in the part header, the name the job shows)
SENT_NAMES = [
    (b"line%0Abreak.mp4", "line break.mp4"),  # browsers percent-encode LF, CR and quotes
    (b"say %22hi%22 %0D%0Anow.mp4", 'say "hi" now.mp4'),
    (b'say \\"hi\\".mp4', 'say "hi".mp4'),  # curl escapes quotes and backslashes
    (b"back\\\\slash.mp4", "back\\slash.mp4"),
    (b"line\nbreak.mp4", "line break.mp4"),  # raw: a bare LF ...
    (b'say "hi" twice.mp4', 'say "hi" twice.mp4'),  # ... and unescaped quotes
    (b'x"; name="seed.mp4', "x"),  # a quote then a parameter ends the value, as for the parser
    ("סרטון חדש 2.mp4".encode(), "סרטון חדש 2.mp4"),
    ("إعلان (نسخة 3).mp4".encode(), "إعلان (نسخة 3).mp4"),
    ("כָּתַב كَتَبَ.mp4".encode(), "כָּתַב كَتَبَ.mp4"),
    ("Sale עברית 2024 final.mp4".encode(), "Sale עברית 2024 final.mp4"),
    ("🎬 launch 🚀.mp4".encode(), "🎬 launch 🚀.mp4"),
    (b"x" * 250 + b".mp4", "x" * 196 + ".mp4"),
]


def test_file_names_arrive_whole_however_the_client_escapes_them(srv, token, clips):
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "multipart/form-data; boundary=XyZzY"}
    for batch in (SENT_NAMES[:7], SENT_NAMES[7:]):
        body = multipart([(n, clips["a"].read_bytes()) for n, _ in batch], {"variations": "1"})
        r = httpx.post(srv.url + "/api/jobs", content=body, timeout=60, headers=headers)
        assert r.status_code == 202, r.text
        assert [v["name"] for v in r.json()["videos"]] == [name for _, name in batch]
        httpx.post(f"{srv.url}/api/jobs/{r.json()['jobId']}/cancel", headers=headers)


def test_file_names_sent_by_an_http_client_arrive_whole(srv, token, clips):
    names = ['say "hi".mp4', "line\nbreak.mp4", "tab\there.mp4", "back\\slash.mp4",
             "שלום.mp4", "\u202eevil.mp4"]
    files = [("videos", (n, clips["a"].read_bytes(), "video/mp4")) for n in names]
    r = httpx.post(srv.url + "/api/jobs", files=files, data={"variations": "1"}, timeout=60,
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202, r.text
    assert [v["name"] for v in r.json()["videos"]] == [
        'say "hi".mp4', "line break.mp4", "tab here.mp4", "back\\slash.mp4", "שלום.mp4", "evil.mp4"]
    httpx.post(f"{srv.url}/api/jobs/{r.json()['jobId']}/cancel",
               headers={"Authorization": f"Bearer {token}"})


def _fields_body(fields: list[tuple[str, str]], video: bytes, boundary: bytes = b"XyZzY") -> bytes:
    out = bytearray()
    for name, value in fields:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode()
        out += b'"\r\n\r\n' + value.encode() + b"\r\n"
    return bytes(out) + multipart([(b"a.mp4", video)], boundary=boundary)


@pytest.mark.parametrize("fields, code", [
    ([("variations", "1"), ("variations", "2")], "duplicate_field"),  # read as 12 before
    ([("seed", "ab"), ("seed", "cd")], "duplicate_field"),
    ([("formats", "9:16"), ("formats", "1:1")], "duplicate_field"),
    ([("name", "x" * 1000)] * 20, "duplicate_field"),  # each piece under the limit
    ([("name", "x" * 1025)], "field_too_large"),
])
def test_a_form_field_sent_twice_or_too_long_is_400_and_leaves_nothing(srv, token, clips, fields,
                                                                        code):
    before = leftovers(srv)
    r = httpx.post(srv.url + "/api/jobs", content=_fields_body(fields, clips["a"].read_bytes()),
                   timeout=30, headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "multipart/form-data; boundary=XyZzY"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and f"'{fields[0][0]}'" in error["message"], error
    assert leftovers(srv) == before


NOT_UTF8 = b'{"password": "\xff", "name": "\xff"}'
TOO_DEEP = b"[" * 30_000 + b"]" * 30_000  # under the 64 KB body limit


@pytest.mark.parametrize("body", [NOT_UTF8, TOO_DEEP], ids=["not-utf8", "nested-too-deep"])
def test_json_a_parser_cannot_read_is_400_not_a_server_error(srv, token, body):
    """Bytes that are not UTF-8, or arrays nested deeper than Python's parser recurses, on
    every endpoint that reads a JSON body."""
    json_type = {"Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {token}", **json_type}
    for path, headers, code in (("/api/auth", json_type, "password_required"),
                                ("/api/keys", auth, "bad_name"),
                                ("/api/jobs", auth, "no_uploads")):
        r = httpx.post(srv.url + path, content=body, headers=headers, timeout=30)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert r.json()["error"]["code"] == code, (path, r.text)
    assert "Traceback" not in srv.log()


async def test_a_websocket_frame_nested_too_deep_is_ignored(srv, token):
    url = srv.url.replace("http://", "ws://") + f"/api/ws?token={token}"
    async with open_websocket_url(url) as ws:
        with trio.fail_after(30):
            assert json.loads(await ws.get_message())["type"] == "hello"
            await ws.send_message("[" * 5000 + "]" * 5000)
            await ws.send_message(json.dumps({"subscribe": None}))
            assert json.loads(await ws.get_message())["type"] == "subscribed"
    assert "RecursionError" not in srv.log()


@pytest.mark.parametrize("path", ["a" * 300, "a/" * 3000 + "x.js", "js/" + "b" * 256 + ".js"])
def test_a_browser_app_path_too_long_for_the_file_system_is_404(srv, path):
    missing = httpx.get(srv.url + "/ui/no-such-file.js", timeout=30)
    r = httpx.get(srv.url + "/ui/" + path, timeout=30)
    assert r.status_code == missing.status_code == 404, r.text
    assert r.headers["content-type"] == missing.headers["content-type"]


@pytest.mark.parametrize("ctype", ["MULTIPART/FORM-DATA; BOUNDARY=XyZzY",
                                   "multipart/form-data; Boundary=XyZzY"])
def test_multipart_type_and_parameter_names_in_any_case_are_accepted(srv, token, clips, ctype):
    r = httpx.post(srv.url + "/api/jobs", timeout=30,
                   content=_fields_body([("variations", "1")], clips["a"].read_bytes()),
                   headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
    assert r.status_code == 202, r.text
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as client:
        assert wait_job(client, r.json()["jobId"])["status"] == "completed"
