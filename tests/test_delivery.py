"""Delivery and lifecycle over HTTP against the real server: ZIP download, cancel, retry, delete,
expiry (410) and the storage cap (507). Real FFmpeg on tiny clips."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest

from pipeline.actors.janitor import expected_output_bytes
from tests.clips import make_clip, make_damaged_clip
from tests.server import ServerProcess, wait_for, wait_job
from web.delivery import content_disposition


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """One server for the tests that need no special settings (one worker: renders in order)."""
    server = ServerProcess(tmp_path_factory.mktemp("delivery") / "data", env={"VR_WORKERS": "1"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(srv):
    with srv.client() as c:
        yield c


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """A clip that takes FFmpeg a few seconds, so a render can be caught mid-way."""
    return make_clip(tmp_path_factory.mktemp("long"), "long.mp4", seconds=10.0, size="640x360",
                     fps=30)


def _upload(client: httpx.Client, *paths: Path, names=None, variations: int = 2) -> str:
    names = names or [p.name for p in paths]
    files = [("videos", (n, p.read_bytes(), "video/mp4")) for p, n in zip(paths, names, strict=True)]
    r = client.post("/api/jobs", files=files, data={"variations": str(variations)})
    assert r.status_code == 202, r.text
    return r.json()["jobId"]


def _output_paths(srv: ServerProcess, job_id: str) -> dict[str, list[Path]]:
    """video name → its output files, from the database (the server's own record)."""
    with sqlite3.connect(srv.data_dir / "refresher.db") as db:
        rows = db.execute(
            "SELECT v.name, o.path FROM outputs o JOIN videos v ON v.id=o.video_id"
            " WHERE v.job_id=? ORDER BY v.idx, o.idx", (job_id,)
        ).fetchall()
    out: dict[str, list[Path]] = {}
    for name, path in rows:
        out.setdefault(name, []).append(Path(path))
    return out


def _ffmpeg_pids_for(job_id: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if "ffmpeg" in cmd and job_id in cmd:
            pids.append(int(proc.name))
    return pids


def _wait_rendering(client: httpx.Client, job_id: str, index: int = 0) -> None:
    """Until video ``index`` reports progress (FFmpeg is running and writing)."""
    def started():
        v = client.get(f"/api/jobs/{job_id}").json()["videos"][index]
        return v["status"] == "processing" and v["progress"] > 0

    wait_for(started, timeout=30, interval=0.05)


# -- download -------------------------------------------------------------------------------------


def test_download_is_an_exact_store_zip_with_manifest(srv, client, clips, tmp_path):
    a = clips["a"]
    # Two sources with the same stem: their folders must still be distinct.
    job_id = _upload(client, a, a, clips["b"], names=["promo.mp4", "promo.mov", "b.mov"])
    job = wait_job(client, job_id)
    assert job["status"] == "completed"

    r = client.get(f"/api/jobs/{job_id}/download")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.headers["content-disposition"] == 'attachment; filename="promo + 2-variations.zip"'

    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.namelist() == [
        "manifest.json",
        "promo/promo_v01.mp4", "promo/promo_v02.mp4",
        "promo_2/promo_2_v01.mp4", "promo_2/promo_2_v02.mp4",
        "b/b_v01.mp4", "b/b_v02.mp4",
    ]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert zf.testzip() is None
    # The API names each output as the ZIP does (the second promo's were promo_v01.mp4 too, and
    # a single-file download saved them under the first one's name).
    names = [o["name"] for v in job["videos"] for o in v["outputs"]]
    assert names == [n.split("/")[1] for n in zf.namelist()[1:]]
    # b.mov is silent: its files' effects name no gain (drawn, but it had no sound to change).
    assert not any(w.endswith(" dB") for o in job["videos"][2]["outputs"] for w in o["effects"])
    one = job["videos"][1]["outputs"][0]
    saved = client.get(one["url"], params={"download": "1"})
    assert saved.headers["content-disposition"] == 'attachment; filename="promo_2_v01.mp4"'

    # Each member is byte-identical to the stored output.
    stored = _output_paths(srv, job_id)
    expected = stored["promo.mp4"] + stored["promo.mov"] + stored["b.mov"]
    for name, path in zip(zf.namelist()[1:], expected, strict=True):
        assert zf.read(name) == path.read_bytes(), name

    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["jobId"] == job_id and manifest["seed"] == job["seed"]
    rows = manifest["variations"]
    assert [v["file"] for v in rows] == zf.namelist()[1:]
    assert [v["source"] for v in rows] == ["promo.mp4"] * 2 + ["promo.mov"] * 2 + ["b.mov"] * 2
    for v, path in zip(rows, expected, strict=True):
        assert v["size"] == path.stat().st_size
        assert v["seed"] and v["params"] and v["graph"]
        assert 0.9 < v["duration"] < 1.2
    assert str(srv.data_dir) not in zf.read("manifest.json").decode()

    out = tmp_path / "dl.zip"
    out.write_bytes(r.content)
    t = subprocess.run(["unzip", "-t", str(out)], capture_output=True, text=True)
    assert t.returncode == 0, t.stdout + t.stderr
    assert "No errors detected" in t.stdout


def test_download_link_with_token_query_and_single_source_name(srv, client, clips):
    job_id = _upload(client, clips["a"], names=["Summer sale.mp4"])
    wait_job(client, job_id)
    token = client.headers["Authorization"].split()[1]
    r = httpx.get(f"{srv.url}/api/jobs/{job_id}/download", params={"token": token})
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="Summer sale-variations.zip"'
    assert int(r.headers["content-length"]) == len(r.content)
    assert zipfile.ZipFile(io.BytesIO(r.content)).testzip() is None
    bad = httpx.get(f"{srv.url}/api/jobs/{job_id}/download", params={"token": "x.y"})
    assert bad.status_code == 401
    # ?token= is only for the download link.
    assert httpx.get(f"{srv.url}/api/jobs/{job_id}", params={"token": token}).status_code == 401


def _resume_points(whole: bytes) -> list[int]:
    """Where a broken download may resume: start, second byte, inside a local header, at and
    inside a file's data, inside the central directory, the last byte."""
    zf = zipfile.ZipFile(io.BytesIO(whole))
    second = zf.infolist()[1]
    data = second.header_offset + 30 + len(second.filename.encode()) + 9
    central = whole.rindex(b"PK\x01\x02")
    return sorted({0, 1, second.header_offset + 7, data, data + second.file_size // 2,
                   central + 3, len(whole) - 1})


def test_download_resumes_at_any_offset_with_range(srv, client, clips):
    job_id = _upload(client, clips["a"], clips["b"])
    wait_job(client, job_id)
    url = f"/api/jobs/{job_id}/download"
    full = client.get(url)
    whole, etag = full.content, full.headers["etag"]
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    assert etag.startswith('"') and full.headers["last-modified"].endswith("GMT")
    assert client.get(url).content == whole  # the same bytes every time

    points = _resume_points(whole)
    pieces = []
    for start, stop in zip(points, [*points[1:], len(whole)], strict=True):
        r = client.get(url, headers={"Range": f"bytes={start}-{stop - 1}", "If-Range": etag})
        assert r.status_code == 206, (start, r.text)
        assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(whole)}"
        assert int(r.headers["content-length"]) == len(r.content) == stop - start
        assert r.headers["etag"] == etag
        pieces.append(r.content)
    assert b"".join(pieces) == whole
    # Open-ended and suffix ranges, and a resume on the token link a browser uses.
    for start in points:
        r = client.get(url, headers={"Range": f"bytes={start}-"})
        assert r.status_code == 206 and r.content == whole[start:], start
    r = client.get(url, headers={"Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == whole[-100:]
    assert r.headers["content-range"] == f"bytes {len(whole) - 100}-{len(whole) - 1}/{len(whole)}"
    r = client.get(url, headers={"Range": f"bytes=10-{10 * len(whole)}"})
    assert r.status_code == 206 and r.content == whole[10:]
    token = client.headers["Authorization"].split()[1]
    r = httpx.get(f"{srv.url}{url}", params={"token": token}, headers={"Range": "bytes=5-9"})
    assert r.status_code == 206 and r.content == whole[5:10]


def test_download_ranges_past_the_end_or_not_matching_if_range(srv, client, clips):
    job_id = _upload(client, clips["a"], variations=1)
    wait_job(client, job_id)
    url = f"/api/jobs/{job_id}/download"
    full = client.get(url)
    whole, etag = full.content, full.headers["etag"]
    for rng in (f"bytes={len(whole)}-", f"bytes={len(whole) + 5}-{len(whole) + 9}", "bytes=-0",
                "bytes=99999999999999999999999-"):
        r = client.get(url, headers={"Range": rng})
        assert r.status_code == 416, rng
        assert r.headers["content-range"] == f"bytes */{len(whole)}"
        assert r.json()["error"]["code"] == "range_not_satisfiable"
    # Another version, a weak tag or a date: the whole archive, as if no Range was sent.
    for if_range in ('"0000"', f"W/{etag}", full.headers["last-modified"], etag[1:-1]):
        r = client.get(url, headers={"Range": "bytes=10-20", "If-Range": if_range})
        assert r.status_code == 200 and r.content == whole, if_range
        assert "content-range" not in r.headers
    # Several ranges, another unit, bad syntax: also the whole archive.
    for rng in ("bytes=0-1,5-6", "items=0-1", "bytes=9-3", "bytes=x-", "bytes=١-٢".encode()):
        r = client.get(url, headers={"Range": rng})
        assert r.status_code == 200 and r.content == whole, rng
    # A copy the client holds (If-None-Match names the tag, even weakly, or is *): 304, no
    # body, before any Range; another tag gets the archive.
    for none_match in (etag, f"W/{etag}", f'"0000", {etag}', "*"):
        r = client.get(url, headers={"If-None-Match": none_match, "Range": "bytes=0-3"})
        assert r.status_code == 304 and r.content == b"", none_match
        assert r.headers["etag"] == etag and "content-type" not in r.headers
        assert r.headers.get("content-length") in (None, str(len(whole))), r.headers
    r = client.get(url, headers={"If-None-Match": '"0000"'})
    assert r.status_code == 200 and r.content == whole
    # The archive still opens for the next request: nothing was left half-open.
    assert client.get(url, headers={"Range": "bytes=0-3"}).content == b"PK\x03\x04"


def test_unknown_ids_are_404(srv, client):
    for method, path in [
        ("GET", "/api/jobs/jnope/download"),
        ("POST", "/api/jobs/jnope/cancel"),
        ("POST", "/api/jobs/jnope/videos/vnope/retry"),
        ("DELETE", "/api/jobs/jnope"),
    ]:
        r = client.request(method, path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "job_not_found"


def test_content_disposition_keeps_unicode_names_safe():
    assert content_disposition("a.zip") == 'attachment; filename="a.zip"'
    header = content_disposition("Été \"x\".zip")
    assert header.startswith('attachment; filename="_t_ _x_.zip"; filename*=UTF-8\'\'')
    assert "%C3%89t%C3%A9" in header


# -- cancel, delete ---------------------------------------------------------------------------------


def test_cancel_mid_render_kills_ffmpeg_keeps_nothing_partial(srv, client, long_clip, clips):
    job_id = _upload(client, clips["a"], long_clip, clips["b"], variations=3)
    _wait_rendering(client, job_id, index=1)
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["videos"][0]["status"] == "completed"
    assert job["videos"][1]["status"] == "processing"
    assert _ffmpeg_pids_for(job_id)

    r = client.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 202
    job = r.json()
    assert [v["status"] for v in job["videos"]] == ["completed", "cancelled", "cancelled"]
    # A job with a finished video is delivered as completed (partial results).
    assert job["status"] == "completed"
    assert _ffmpeg_pids_for(job_id) == []
    out_dir = srv.data_dir / "outputs" / job_id
    assert list(out_dir.rglob("*.part")) == []
    assert len(list(out_dir.rglob("*.mp4"))) == 3  # the finished video's outputs are kept

    names = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job_id}/download").content)).namelist()
    assert names == ["manifest.json", "a/a_v01.mp4", "a/a_v02.mp4", "a/a_v03.mp4"]
    again = client.post(f"/api/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_running"


def test_download_is_409_until_a_video_finished_and_delete_stops_a_running_job(srv, client, long_clip):
    job_id = _upload(client, long_clip, variations=3)
    r = client.get(f"/api/jobs/{job_id}/download")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_ready"
    _wait_rendering(client, job_id)

    r = client.delete(f"/api/jobs/{job_id}")
    assert r.status_code == 204 and r.content == b""
    assert _ffmpeg_pids_for(job_id) == []
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert not (srv.data_dir / "outputs" / job_id).exists()
    assert not (srv.data_dir / "uploads" / job_id).exists()
    with sqlite3.connect(srv.data_dir / "refresher.db") as db:
        assert db.execute("SELECT count(*) FROM videos WHERE job_id=?", (job_id,)).fetchone()[0] == 0
    assert client.delete(f"/api/jobs/{job_id}").status_code == 404


def test_download_of_a_job_that_ended_with_nothing_says_nothing_will_come(srv, client, long_clip):
    """"Nothing to download yet" promised files that never come once the job has ended."""
    job_id = _upload(client, long_clip, variations=3)
    _wait_rendering(client, job_id)
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 202
    job = wait_job(client, job_id)
    assert job["status"] == "cancelled"
    # Its log says FFmpeg was stopped, not that it ended well ("exit code 0" after its "q").
    log = client.get(job["videos"][0]["logUrl"]).text
    assert "stopped before it finished at" in log and "exit code" not in log, log
    r = client.get(f"/api/jobs/{job_id}/download")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_ready"
    assert r.json()["error"]["message"] == (
        "Nothing to download: the job is cancelled and none of its videos finished. "
        "Retry its videos to render them.")


# -- retry ----------------------------------------------------------------------------------------


def test_retry_after_the_cause_is_fixed(srv, client, clips, tmp_path):
    bad = make_damaged_clip(tmp_path, "cut.mp4")
    job_id = _upload(client, bad, clips["a"])
    job = wait_job(client, job_id)
    failed, done = job["videos"]
    assert failed["status"] == "failed" and failed["retryable"] and failed["error"]
    assert done["status"] == "completed"

    r = client.post(f"/api/jobs/{job_id}/videos/{done['id']}/retry")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_retryable"
    assert client.post(f"/api/jobs/{job_id}/videos/vnope/retry").status_code == 404

    # The cause: a damaged upload. Put the intact file in its place, then retry.
    upload = next((srv.data_dir / "uploads" / job_id).glob(f"{failed['id']}*"))
    shutil.copyfile(clips["a"], upload)
    r = client.post(f"/api/jobs/{job_id}/videos/{failed['id']}/retry")
    assert r.status_code == 202
    assert r.json()["videos"][0]["status"] in ("queued", "processing", "completed")
    job = wait_job(client, job_id)
    assert [v["status"] for v in job["videos"]] == ["completed", "completed"]
    assert job["videos"][0]["attempts"] == 2
    names = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job_id}/download").content)).namelist()
    assert names[1:] == ["cut/cut_v01.mp4", "cut/cut_v02.mp4", "a/a_v01.mp4", "a/a_v02.mp4"]


def test_retry_refused_when_the_upload_is_gone(srv, client, tmp_path):
    bad = make_damaged_clip(tmp_path, "cut.mp4")
    job_id = _upload(client, bad)
    video = wait_job(client, job_id)["videos"][0]
    assert video["status"] == "failed"
    shutil.rmtree(srv.data_dir / "uploads" / job_id)
    r = client.post(f"/api/jobs/{job_id}/videos/{video['id']}/retry")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "upload_gone"


# -- expiry and storage cap -------------------------------------------------------------------------


def test_expired_job_is_410_and_its_files_are_gone(make_server, clips):
    srv = make_server({"VR_JOB_TTL": "1s", "VR_JANITOR_INTERVAL": "0.3s"})
    with srv.client() as client:
        job_id = _upload(client, clips["a"])
        job = wait_job(client, job_id, statuses=("completed", "failed", "expired"))
        assert job["status"] in ("completed", "expired")
        job = wait_job(client, job_id, statuses=("expired",), timeout=10)
        r = client.get(f"/api/jobs/{job_id}/download")
        assert r.status_code == 410 and r.json()["error"]["code"] == "job_expired"
        assert not (srv.data_dir / "outputs" / job_id).exists()
        # Still listed for a while, so the user sees what happened.
        assert [j["status"] for j in client.get("/api/jobs").json()["jobs"]] == ["expired"]


def test_storage_cap_evicts_finished_jobs_for_an_upload_else_507(make_server, clips):
    size = clips["a"].stat().st_size
    # Room for one upload with the room its two variations reserve, not for that plus a
    # finished job's outputs.
    one = size + expected_output_bytes(size, 2)
    srv = make_server({"VR_STORAGE_CAP": str(one * 6 // 5), "VR_WORKERS": "1"})
    with srv.client() as client:
        first = _upload(client, clips["a"])
        assert wait_job(client, first)["status"] == "completed"

        second = _upload(client, clips["a"])  # fits only once the first job is evicted
        assert client.get(f"/api/jobs/{first}").json()["status"] == "expired"
        assert not (srv.data_dir / "outputs" / first).exists()
        assert client.get(f"/api/jobs/{first}/download").status_code == 410

        # Two files cannot fit even with every finished job gone (the second is still running
        # or just finished; running jobs are never evicted).
        files = [("videos", (n, clips["a"].read_bytes(), "video/mp4")) for n in ("x.mp4", "y.mp4")]
        r = client.post("/api/jobs", files=files)
        assert r.status_code == 507
        assert r.json()["error"]["code"] == "storage_full"
        assert "storage" in r.json()["error"]["message"]
        uploads = srv.data_dir / "uploads"
        assert sorted(p.name for p in uploads.iterdir()) in ([], [second])
        assert [j["id"] for j in client.get("/api/jobs").json()["jobs"]] == [second, first]
        wait_job(client, second)
