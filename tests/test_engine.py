"""The processing engine through the real server: outputs, failure isolation, recovery, shutdown."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import httpx
import pytest

from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe
from tests.clips import make_clip, make_damaged_clip
from tests.server import ServerProcess, process_alive, wait_for, wait_job


def _files(*paths):
    return [("videos", (p.name, p.read_bytes(), "video/mp4")) for p in paths]


def _db(srv: ServerProcess, sql: str, args=()):
    with sqlite3.connect(srv.data_dir / "refresher.db") as db:
        return db.execute(sql, args).fetchall()


def _ffmpeg_pids_under(path) -> list[int]:
    """Live FFmpeg processes whose command line mentions ``path``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        args = raw.split(b"\0")
        if args and b"ffmpeg" in os.path.basename(args[0]) and str(path).encode() in raw:
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("long"), "long.mp4", seconds=8, size="640x360", fps=30)


def test_outputs_are_valid_with_and_without_audio_and_rotation(server, clips, tmp_path):
    rotated = make_clip(tmp_path, "phone.mp4", size="160x96", rotation=90)
    with server.client() as c:
        job = c.post("/api/jobs", files=_files(clips["a"], clips["b"], rotated),
                     data={"variations": "2"}).json()
        done = wait_job(c, job["jobId"])
    assert done["status"] == "completed"
    assert [v["status"] for v in done["videos"]] == ["completed"] * 3
    out_root = server.data_dir / "outputs" / job["jobId"]
    for video, has_audio, size in zip(done["videos"], (True, False, True),
                                      ((160, 120), (160, 120), (96, 160)), strict=True):
        assert video["progress"] == 100
        assert [o["name"] for o in video["outputs"]] == [
            f"{video['name'].rsplit('.', 1)[0]}_v01.mp4", f"{video['name'].rsplit('.', 1)[0]}_v02.mp4"]
        files = sorted((out_root / video["id"]).iterdir())
        # Each variation, and the contact strips of the source and of each variation.
        assert [f.name for f in files] == ["source.preview.jpg", "v01.mp4", "v01.preview.jpg",
                                           "v02.mp4", "v02.preview.jpg"]
        for f in files:
            if f.suffix != ".mp4":
                continue
            info = probe(f)
            assert info.has_audio is has_audio
            assert (info.display_width, info.display_height) == size
            assert info.rotation == 0
    # Sources are deleted once their video is finished; no partial files anywhere.
    assert not list((server.data_dir / "uploads").rglob("*.upload"))
    assert not list(server.data_dir.rglob("*.part"))


def test_damaged_video_fails_alone_and_job_completes(server, clips, tmp_path):
    corrupt = make_damaged_clip(tmp_path, "broken.mp4")
    with server.client() as c:
        r = c.post("/api/jobs", files=_files(clips["a"], corrupt), data={"variations": "2"})
        assert r.status_code == 202, r.text
        done = wait_job(c, r.json()["jobId"])
    good, bad = done["videos"]
    assert done["status"] == "completed"
    assert good["status"] == "completed" and len(good["outputs"]) == 2
    assert bad["status"] == "failed"
    assert "probably damaged" in bad["error"]
    assert bad["outputs"] == []
    assert not list(server.data_dir.rglob("*.part"))


def test_job_fails_when_every_video_fails(server, tmp_path):
    corrupt = make_damaged_clip(tmp_path, "broken.mp4")
    with server.client() as c:
        r = c.post("/api/jobs", files=_files(corrupt), data={"variations": "1"})
        done = wait_job(c, r.json()["jobId"])
    assert done["status"] == "failed"
    assert done["videos"][0]["retryable"] is True


def test_progress_advances_and_pid_is_recorded(make_server, long_clip):
    srv = make_server({"VR_WORKERS": "1"})
    with srv.client() as c:
        job_id = c.post("/api/jobs", files=_files(long_clip), data={"variations": "3"}).json()["jobId"]
        seen, pids = [], set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            v = c.get(f"/api/jobs/{job_id}").json()["videos"][0]
            seen.append(v["progress"])
            pids |= {p for (p,) in _db(srv, "SELECT pid FROM videos WHERE pid IS NOT NULL")}
            if v["status"] == "completed":
                break
            time.sleep(0.3)
    assert seen[-1] == 100
    middle = [p for p in seen if 0 < p < 100]
    assert middle, seen
    assert seen == sorted(seen)
    assert pids
    assert _db(srv, "SELECT pid FROM videos") == [(None,)]


def test_job_goes_on_after_client_disconnects(server, clips):
    client = server.client()
    job_id = client.post("/api/jobs", files=_files(clips["a"]), data={"variations": "2"}).json()["jobId"]
    client.close()
    with server.client() as c:
        assert wait_job(c, job_id)["status"] == "completed"


def test_sigterm_interrupts_then_resumes(make_server, long_clip):
    srv = make_server({"VR_WORKERS": "1"})
    with srv.client() as c:
        job_id = c.post("/api/jobs", files=_files(long_clip), data={"variations": "3"}).json()["jobId"]
        wait_for(lambda: c.get(f"/api/jobs/{job_id}").json()["videos"][0]["progress"] > 0, 60)
    uploads = srv.data_dir / "uploads" / job_id
    took = srv.stop(signal.SIGTERM)
    assert took < 10
    assert srv.proc.returncode == 0
    assert _db(srv, "SELECT status, pid FROM videos") == [("interrupted", None)]
    assert _ffmpeg_pids_under(uploads) == []
    assert not list(srv.data_dir.rglob("*.part"))
    srv.start()
    with srv.client() as c:
        done = wait_job(c, job_id)
    assert done["status"] == "completed"
    assert done["videos"][0]["attempts"] == 2
    assert len(done["videos"][0]["outputs"]) == 3


def test_kill9_mid_render_recovers(make_server, long_clip):
    srv = make_server({"VR_WORKERS": "1"})
    with srv.client() as c:
        job_id = c.post("/api/jobs", files=_files(long_clip), data={"variations": "3"}).json()["jobId"]
        wait_for(lambda: c.get(f"/api/jobs/{job_id}").json()["videos"][0]["progress"] > 0, 60)
    [(pid,)] = _db(srv, "SELECT pid FROM videos WHERE pid IS NOT NULL")
    assert process_alive(pid)
    srv.kill9()
    # The kernel takes FFmpeg down with the server: no render goes on writing on its own.
    wait_for(lambda: not process_alive(pid), 2)
    assert _db(srv, "SELECT status FROM videos") == [("processing",)]
    srv.start()
    with srv.client() as c:
        done = wait_job(c, job_id)
    assert done["status"] == "completed"
    assert len(done["videos"][0]["outputs"]) == 3
    assert not list(srv.data_dir.rglob("*.part"))
    for o in (srv.data_dir / "outputs" / job_id).rglob("*.mp4"):
        probe(o)


def test_recovery_kills_recorded_ffmpeg_orphan_but_not_other_processes(make_server, clips, tmp_path):
    srv = make_server()
    with srv.client() as c:
        job_id = c.post("/api/jobs", files=_files(clips["a"]), data={"variations": "1"}).json()["jobId"]
        wait_job(c, job_id)
    srv.stop()
    orphan = subprocess.Popen([find_ffmpeg(), "-nostdin", "-re", "-f", "lavfi", "-i",
                               "testsrc=size=64x64:rate=5", "-f", "null", "-"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        vid = _db(srv, "SELECT id FROM videos")[0][0]
        with sqlite3.connect(srv.data_dir / "refresher.db") as db:
            db.execute("UPDATE videos SET pid=? WHERE id=?", (orphan.pid, vid))
            db.execute(
                "INSERT INTO videos(id,job_id,idx,name,size,status,queued_at,updated_at,pid)"
                " VALUES ('vbystander',?,1,'x.mp4',1,'completed',0,0,?)", (job_id, bystander.pid))
        # A leftover partial output from a crash is removed on start too.
        stray = srv.data_dir / "outputs" / job_id / vid / "v09.mp4.part"
        stray.write_bytes(b"partial")
        srv.start()
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None
        assert not stray.exists()
        assert _db(srv, "SELECT count(*) FROM videos WHERE pid IS NOT NULL") == [(0,)]
    finally:
        for p in (orphan, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


def _job(c, job_id: str) -> dict:
    r = c.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def test_interrupted_video_without_upload_fails_not_retryable(make_server, long_clip):
    srv = make_server({"VR_WORKERS": "1"})
    with srv.client() as c:
        job_id = c.post("/api/jobs", files=_files(long_clip), data={"variations": "2"}).json()["jobId"]
        wait_for(lambda: _job(c, job_id)["videos"][0]["status"] == "processing", 60)
    srv.kill9()
    for f in (srv.data_dir / "uploads" / job_id).iterdir():
        f.unlink()
    srv.start()
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token()}"}) as c:
        done = wait_job(c, job_id)
    assert done["status"] == "failed"
    assert done["videos"][0]["retryable"] is False
    assert "gone" in done["videos"][0]["error"]


def test_stalled_ffmpeg_is_stopped_and_the_video_fails_retryable(make_server, long_clip):
    srv = make_server({"VR_WORKERS": "1", "VR_STALL_TIMEOUT": "3s"})
    with srv.client() as c:
        job_id = c.post("/api/jobs", files=_files(long_clip), data={"variations": "2"}).json()["jobId"]
        pid = wait_for(lambda: (_db(srv, "SELECT pid FROM videos") or [(None,)])[0][0], 60)
        os.kill(pid, signal.SIGSTOP)  # a real hang: FFmpeg stops making any progress
        done = wait_job(c, job_id, timeout=60)
    video = done["videos"][0]
    assert done["status"] == "failed"
    assert video["status"] == "failed" and video["retryable"] is True
    assert "no progress" in video["error"]
    assert not os.path.exists(f"/proc/{pid}") or _ffmpeg_pids_under(srv.data_dir) == []
    assert not list(srv.data_dir.rglob("*.part"))
