"""Resumable uploads (tus 1.0.0) against the real server: every status the protocol names,
expiry, the storage cap, a kill -9 between chunks, and jobs made from finished uploads."""

from __future__ import annotations

import base64
import os
import threading
import time

import httpx
import pytest

from tests.clips import make_text_file_as_mp4
from tests.server import wait_for, wait_job
from web import tus

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


def _meta(name: str) -> str:
    return "filename " + base64.b64encode(name.encode()).decode()


def _create(c: httpx.Client, length: int, name: str = "clip.mp4",
            headers: dict | None = None) -> httpx.Response:
    return c.post("/api/uploads", headers={**TUS, "Upload-Length": str(length),
                                           "Upload-Metadata": _meta(name), **(headers or {})})


def _patch(c: httpx.Client, location: str, offset: int, data: bytes, **headers) -> httpx.Response:
    return c.patch(location, content=data, headers={**OCTETS, "Upload-Offset": str(offset),
                                                    **headers})


def _upload(c: httpx.Client, path, chunk: int = 64 * 1024, name: str | None = None) -> str:
    data = path.read_bytes()
    r = _create(c, len(data), name or path.name)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    for start in range(0, len(data), chunk):
        r = _patch(c, location, start, data[start:start + chunk])
        assert r.status_code == 204, r.text
    return location.rsplit("/", 1)[1]


# -- the protocol's headers (pure) --------------------------------------------------------------


def test_metadata_as_the_spec_writes_it():
    # The spec's example: "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential".
    assert tus.parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential") \
        == {"filename": "world_domination_plan.pdf", "is_confidential": ""}
    assert tus.parse_metadata(None) == {} and tus.parse_metadata("  ") == {}
    assert tus.parse_metadata("name w6l0w6kgMjAyNC5tcDQ=") == {"name": "été 2024.mp4"}


@pytest.mark.parametrize("header", ["filename !!!", "a b c", ",", "k v,k v", "bad key dg=="])
def test_malformed_metadata_is_400(header):
    with pytest.raises(tus.TusError) as err:
        tus.parse_metadata(header)
    assert err.value.status == 400


@pytest.mark.parametrize("value", [None, "", "-1", "1.5", "0x10", " 12a", "1" * 20])
def test_sizes_are_plain_whole_numbers(value):
    with pytest.raises(tus.TusError):
        tus.parse_size("Upload-Length", value)
    assert tus.parse_size("Upload-Offset", "0") == 0 and tus.parse_size("Upload-Length", "70") == 70


# -- against the server -------------------------------------------------------------------------


def test_discovery_create_patch_head_and_delete(server):
    r = httpx.options(server.url + "/api/uploads")  # discovery needs no login
    assert r.status_code == 204
    assert r.headers["tus-version"] == "1.0.0"
    assert set(r.headers["tus-extension"].split(",")) == {"creation", "termination", "expiration"}
    assert int(r.headers["tus-max-size"]) > 0
    with server.client() as c:
        r = _create(c, 100)
        assert r.status_code == 201 and r.headers["tus-resumable"] == "1.0.0"
        location = r.headers["location"]
        assert location.startswith("/api/uploads/u") and r.headers["upload-offset"] == "0"
        assert r.headers["upload-expires"].endswith("GMT")
        head = c.head(location, headers=TUS)
        assert head.status_code == 200 and head.headers["upload-offset"] == "0"
        assert head.headers["upload-length"] == "100" and head.headers["cache-control"] == "no-store"

        r = _patch(c, location, 0, b"x" * 60)
        assert r.status_code == 204 and r.headers["upload-offset"] == "60"
        r = _patch(c, location, 10, b"y" * 10)  # not where it stands
        assert r.status_code == 409 and r.json()["error"]["code"] == "wrong_offset"
        r = c.patch(location, content=b"y", headers={**TUS, "Upload-Offset": "60",
                                                     "Content-Type": "application/octet-stream"})
        assert r.status_code == 415
        r = c.patch(location, content=b"y", headers={"Upload-Offset": "60",
                                                     "Content-Type": tus.OFFSET_TYPE})
        assert r.status_code == 412 and r.headers["tus-version"] == "1.0.0"
        assert _patch(c, location, 60, b"z" * 41).status_code == 413  # past the length
        assert c.head(location, headers=TUS).headers["upload-offset"] == "60"
        r = _patch(c, location, 60, b"z" * 40)
        assert r.status_code == 204 and r.headers["upload-offset"] == "100"
        path = server.data_dir / "resumable" / f"{location.rsplit('/', 1)[1]}.bin"
        assert path.read_bytes() == b"x" * 60 + b"z" * 40

        assert c.delete(location, headers=TUS).status_code == 204
        assert not path.exists()
        assert c.head(location, headers=TUS).status_code == 404
        assert _patch(c, location, 100, b"").status_code == 404
        assert c.delete(location, headers=TUS).status_code == 404


@pytest.mark.parametrize(("headers", "status"), [
    ({"Upload-Length": "abc"}, 400), ({"Upload-Length": "0"}, 400),
    ({"Upload-Defer-Length": "1"}, 400), ({}, 400),
    ({"Upload-Length": "10", "Upload-Metadata": "filename ***"}, 400),
    ({"Upload-Length": str(10**15)}, 413),
])
def test_bad_creations_are_refused_and_leave_nothing(server, headers, status):
    with server.client() as c:
        r = c.post("/api/uploads", headers={**TUS, **headers})
        assert r.status_code == status, r.text
        assert r.headers["tus-resumable"] == "1.0.0"
    assert not any((server.data_dir / "resumable").iterdir())


def test_uploads_need_a_login(server):
    for method in ("POST", "HEAD", "PATCH", "DELETE"):
        path = "/api/uploads" if method == "POST" else "/api/uploads/u0"
        r = httpx.request(method, server.url + path, headers=TUS)
        assert r.status_code == 401 and r.headers["tus-resumable"] == "1.0.0"


def test_a_browser_on_an_allowed_origin_may_speak_tus(make_server):
    origin = "https://team.example"
    srv = make_server({"VR_CORS_ORIGINS": origin})
    r = httpx.options(srv.url + "/api/uploads/u1", headers={
        "Origin": origin, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, tus-resumable, upload-offset, content-type"})
    assert r.status_code in (200, 204)
    assert "PATCH" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in ("tus-resumable", "upload-offset", "upload-length"))
    with srv.client() as c:
        created = _create(c, 10, headers={"Origin": origin})
    exposed = created.headers["access-control-expose-headers"].lower()
    assert "location" in exposed and "upload-offset" in exposed


def test_an_upload_whose_file_vanished_is_404_not_500(server):
    with server.client() as c:
        r = _create(c, 3)
        location = r.headers["location"]
        assert _patch(c, location, 0, b"abc").status_code == 204
        upload_id = location.rsplit("/", 1)[1]
        (server.data_dir / "resumable" / f"{upload_id}.bin").unlink()
        r = c.post("/api/jobs", json={"uploads": [upload_id]})
        assert r.status_code == 404 and r.json()["error"]["code"] == "upload_not_found"


def test_a_long_patch_saves_its_offset_on_the_way(make_server):
    """kill -9 in the middle of one long PATCH: what was fsynced (every 64 MiB) is kept."""
    srv = make_server()
    size = 80 << 20
    with srv.client() as c:
        location = _create(c, size).headers["location"]
    path = srv.data_dir / "resumable" / f"{location.rsplit('/', 1)[1]}.bin"
    started = threading.Event()

    def body():
        block = b"\1" * (1 << 20)
        for _ in range(70):
            yield block
        started.set()
        time.sleep(60)  # the server dies meanwhile
        yield block

    def send():
        with srv.client() as c:
            try:
                c.patch(location, content=body(), headers={**OCTETS, "Upload-Offset": "0"})
            except httpx.HTTPError:
                pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert started.wait(60)
    # Past the first save point (the last MiB or so may still wait in the server's batch).
    wait_for(lambda: path.stat().st_size >= 66 << 20, timeout=30)
    time.sleep(0.5)
    srv.kill9()
    srv.start()
    with srv.client() as c:
        offset = int(c.head(location, headers=TUS).headers["upload-offset"])
    # Saved on the way (batches follow the network's chunks, so not on a MiB boundary), never
    # past what was sent, and what it counts is on disk.
    assert 64 << 20 <= offset <= 70 << 20
    with open(path, "rb") as fh:
        assert fh.read(offset) == b"\1" * offset


def test_an_unfinished_upload_expires_and_counts_against_the_cap(make_server):
    srv = make_server({"VR_UPLOAD_TTL": "2s", "VR_JANITOR_INTERVAL": "1s",
                       "VR_STORAGE_CAP": "1MB"})
    with srv.client() as c:
        r = _create(c, 600_000)
        assert r.status_code == 201
        location = r.headers["location"]
        # Its whole announced length is held for it: a second one does not fit.
        r = _create(c, 600_000)
        assert r.status_code == 507 and r.json()["error"]["code"] == "storage_full"
        assert _patch(c, location, 0, b"a" * 1000).status_code == 204
        path = srv.data_dir / "resumable" / f"{location.rsplit('/', 1)[1]}.bin"
        assert path.stat().st_size == 1000
        wait_for(lambda: c.head(location, headers=TUS).status_code in (404, 410), timeout=10)
        wait_for(lambda: not path.exists(), timeout=10)
        assert _create(c, 600_000).status_code == 201  # its room is free again


def test_kill_9_between_chunks_then_resume_and_make_a_job(make_server, clips):
    data = clips["a"].read_bytes()
    half = len(data) // 2
    srv = make_server()
    with srv.client() as c:
        r = _create(c, len(data), "résumé.mp4")
        location = r.headers["location"]
        assert _patch(c, location, 0, data[:half]).status_code == 204
    srv.kill9()
    srv.start()
    with srv.client() as c:
        head = c.head(location, headers=TUS)
        assert head.status_code == 200 and head.headers["upload-offset"] == str(half)
        assert _patch(c, location, half, data[half:]).status_code == 204
        upload_id = location.rsplit("/", 1)[1]
        r = c.post("/api/jobs", json={"uploads": [upload_id], "variations": 2, "name": "Resumed"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["name"] == "Resumed" and [v["name"] for v in body["videos"]] == ["résumé.mp4"]
        job = wait_job(c, body["jobId"])
        assert job["status"] == "completed" and len(job["videos"][0]["outputs"]) == 2
        # Used: the upload is gone, and cannot be used twice.
        assert c.head(location, headers=TUS).status_code == 404
        again = c.post("/api/jobs", json={"uploads": [upload_id]})
        assert again.status_code == 404 and again.json()["error"]["upload"] == upload_id
    assert not any((srv.data_dir / "resumable").iterdir())


def test_a_bad_file_is_named_and_the_others_stay_for_the_next_try(server, clips, tmp_path):
    text = make_text_file_as_mp4(tmp_path)
    with server.client() as c:
        good = _upload(c, clips["a"])
        bad = _upload(c, text)
        r = _create(c, 1000, "half.mp4")
        half = r.headers["location"].rsplit("/", 1)[1]
        assert _patch(c, r.headers["location"], 0, b"\0" * 10).status_code == 204

        r = c.post("/api/jobs", json={"uploads": [good, half]})
        assert r.status_code == 409 and r.json()["error"]["upload"] == half
        assert "half.mp4" in r.json()["error"]["message"]
        r = c.post("/api/jobs", json={"uploads": [good, bad], "variations": 1})
        assert r.status_code == 415 and r.json()["error"]["upload"] == bad
        assert "notes.mp4" in r.json()["error"]["message"]
        # Nothing was used up: both are still there, whole, and the good one makes a job.
        for upload_id in (good, bad):
            head = c.head(f"/api/uploads/{upload_id}", headers=TUS)
            assert head.status_code == 200
            assert head.headers["upload-offset"] == head.headers["upload-length"]
        assert c.get("/api/jobs").json()["jobs"] == []
        assert not any((server.data_dir / "uploads").iterdir())
        r = c.post("/api/jobs", json={"uploads": [good], "variations": 1})
        assert r.status_code == 202
        assert wait_job(c, r.json()["jobId"])["status"] == "completed"


@pytest.mark.parametrize(("body", "code"), [
    ({}, "no_uploads"), ({"uploads": []}, "no_uploads"), ({"uploads": "u1"}, "no_uploads"),
    ({"uploads": [1]}, "no_uploads"), ({"uploads": ["u1", "u1"]}, "duplicate_upload"),
    ({"uploads": ["u1"], "variations": 2.5}, "bad_variations"),
    ({"uploads": ["u1"], "variations": True}, "bad_variations"),
    ({"uploads": ["u1"], "variations": 99}, "bad_variations"),
    ({"uploads": ["unknown"]}, "upload_not_found"),
    ({"uploads": ["u1"], "formats": 3}, "bad_formats"),
    ({"uploads": ["u1"], "formats": ["9:16", 3]}, "bad_formats"),
    ({"uploads": ["u1"], "formats": ["3:2"]}, "bad_formats"),
    ({"uploads": ["u1"], "fit": "stretch"}, "bad_fit"),
    ({"uploads": ["u1"], "loudness": "loud"}, "bad_loudness"),
    ({"uploads": ["u1"], "loudness": True}, "bad_loudness"),
    ({"uploads": ["u1"], "preset": "vine"}, "bad_preset"),
])
def test_bad_job_requests_from_uploads_are_4xx(server, body, code):
    with server.client() as c:
        r = c.post("/api/jobs", json=body)
        assert 400 <= r.status_code < 500 and r.json()["error"]["code"] == code, r.text


def test_placement_fields_in_the_json_body(server, clips):
    """``formats`` as a JSON list and ``loudness`` as a number, as a script would send them."""
    with server.client() as c:
        upload = _upload(c, clips["a"])
        r = c.post("/api/jobs", json={"uploads": [upload], "variations": 1,
                                      "formats": ["9:16", "1:1"], "loudness": -16.5})
        assert r.status_code == 202, r.text
        done = wait_job(c, r.json()["jobId"])
    assert done["placement"] == {"formats": ["9:16", "1:1"], "fit": "crop", "focus": "center",
                                 "loudness": -16.5}
    assert [o["format"] for o in done["videos"][0]["outputs"]] == ["9:16", "1:1"]


def test_a_stalled_patch_keeps_what_arrived(make_server):
    srv = make_server({"VR_UPLOAD_IDLE_TIMEOUT": "1s"})
    with srv.client() as c:
        r = _create(c, 10_000)
        location = r.headers["location"]

        def body():
            yield b"a" * 4000
            time.sleep(3)
            yield b"b" * 6000

        r = c.patch(location, content=body(), headers={**OCTETS, "Upload-Offset": "0"})
        assert r.status_code == 408
        assert c.head(location, headers=TUS).headers["upload-offset"] == "4000"


def test_no_upload_is_left_in_tmp(server, clips):
    before = set(os.listdir("/tmp"))
    with server.client() as c:
        _upload(c, clips["a"])
    assert not {n for n in set(os.listdir("/tmp")) - before if n.endswith(".bin")}
