"""Faults against the real server process: kill -9 mid-upload and mid-download, a full disk.

After each fault the server restarts on the same data dir and must be consistent: no partial
upload left, jobs intact and downloadable, clear errors (507) instead of corrupt state.

The full disk is real: a small tmpfs mounted for the test (needs root; skipped with the reason
when mounting is not permitted).
"""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.clips import make_clip, make_damaged_clip
from tests.server import ROOT, ServerProcess, free_port, wait_for, wait_job


def rows(data_dir: Path) -> tuple[int, int]:
    with sqlite3.connect(data_dir / "refresher.db") as db:
        return (db.execute("SELECT count(*) FROM jobs").fetchone()[0],
                db.execute("SELECT count(*) FROM videos").fetchone()[0])


def upload_entries(data_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(data_dir)) for p in (data_dir / "uploads").rglob("*"))


def open_fds_under(pid: int, folder: Path) -> list[str]:
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            out.append(target)
    return out


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        return {n: zf.read(n) for n in zf.namelist()}


# -- kill -9 ----------------------------------------------------------------------------------


def test_kill_9_during_upload_leaves_no_partial_upload_after_restart(make_server, clips):
    srv = make_server()
    token = srv.token()
    head = (b'--B\r\nContent-Disposition: form-data; name="videos"; filename="a.mp4"\r\n'
            b"Content-Type: video/mp4\r\n\r\n")
    request = (f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {20_000_000}\r\n\r\n"
               ).encode()
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        # More than one parser batch (1 MB), so part of the file is on disk.
        s.sendall(request + head + clips["a"].read_bytes() + b"\0" * 3_000_000)
        wait_for(lambda: any((srv.data_dir / "uploads").rglob("*.upload")), timeout=10)
        srv.kill9()
    assert upload_entries(srv.data_dir), "the kill left the partial upload behind (as expected)"

    again = ServerProcess(srv.data_dir).start()
    try:
        assert upload_entries(srv.data_dir) == []
        assert rows(srv.data_dir) == (0, 0)
        assert '"removed interrupted upload"' in again.log()
        with again.client() as c:
            assert c.get("/api/jobs").json() == {"jobs": []}
            r = c.post("/api/jobs", files=[("videos", ("a.mp4", clips["a"].read_bytes(), "video/mp4"))],
                       data={"variations": "1"})
            assert r.status_code == 202
            assert wait_job(c, r.json()["jobId"])["status"] == "completed"
    finally:
        again.stop()


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory):
    # Outputs larger than the socket buffers, so the download is really mid-stream.
    return make_clip(tmp_path_factory.mktemp("bigclip"), "big.mp4", seconds=4.0, size="640x360", fps=25)


def test_kill_9_during_zip_streaming_keeps_the_job_downloadable(make_server, big_clip):
    srv = make_server()
    with srv.client() as c:
        r = c.post("/api/jobs", files=[("videos", ("big.mp4", big_clip.read_bytes(), "video/mp4"))],
                   data={"variations": "6"})
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        job = wait_job(c, job_id, timeout=180)
        assert job["status"] == "completed", job
        whole = c.get(f"/api/jobs/{job_id}/download")
        assert whole.status_code == 200
    expected = members(whole.content)
    assert len(whole.content) > 4_000_000, "outputs too small to outlast the socket buffers"

    token = srv.token()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(f"GET /api/jobs/{job_id}/download?token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        # The archive holds its member files open until the stream ends: it is mid-stream.
        wait_for(lambda: open_fds_under(srv.proc.pid, srv.data_dir / "outputs"), timeout=10)
        srv.kill9()

    again = ServerProcess(srv.data_dir).start()
    try:
        with again.client() as c:
            job = c.get(f"/api/jobs/{job_id}").json()
            assert job["status"] == "completed"
            assert [len(v["outputs"]) for v in job["videos"]] == [6]
            after = c.get(f"/api/jobs/{job_id}/download")
            assert after.status_code == 200
            assert int(after.headers["content-length"]) == len(after.content) == len(whole.content)
            assert members(after.content) == expected
    finally:
        again.stop()


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs, unmounted at the end (lazily, after the server has stopped)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(mnt)],
                              capture_output=True, text=True)
        problem = done.stderr.strip() if done.returncode != 0 else None
    except OSError as exc:  # no mount(8) here
        problem = str(exc)
    if problem is not None:
        pytest.skip(f"cannot mount a small tmpfs (needs root) to fill a disk for real: {problem}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill the file system until only about ``leave`` bytes are free; returns the filler."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / "filler.bin"  # beside uploads/ and outputs/, which the janitor owns
    with open(filler, "ab") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


def free_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def test_full_disk_answers_507_leaves_nothing_and_recovers(small_disk, make_server, clips):
    data_dir = small_disk  # the server's log goes next to it, off the small disk
    srv = make_server(data_dir=data_dir)
    filler = fill(small_disk, leave=600_000)
    junk = os.urandom(2_000_000)  # bigger than what is left; its bytes never get probed
    with srv.client() as c:
        # Announced size larger than the free space: refused before a byte is written.
        r = c.post("/api/jobs", files=[("videos", ("big.mp4", junk, "video/mp4"))])
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "storage_full"

        # Chunked (no size announced): the disk fills while writing.
        def body():
            yield b'--B\r\nContent-Disposition: form-data; name="videos"; filename="big.mp4"\r\n\r\n'
            for i in range(0, len(junk), 100_000):
                yield junk[i:i + 100_000]
            yield b"\r\n--B--\r\n"

        r = c.post("/api/jobs", content=body(), headers={"Content-Type": "multipart/form-data; boundary=B"})
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "storage_full"
        assert upload_entries(data_dir) == [] and rows(data_dir) == (0, 0)
        assert free_bytes(small_disk) >= 500_000, "the failed upload's bytes were given back"
        assert c.get("/api/health").status_code == 200

        # Room again: the same server works.
        filler.unlink()
        r = c.post("/api/jobs", files=[("videos", ("a.mp4", clips["a"].read_bytes(), "video/mp4"))],
                   data={"variations": "1"})
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        assert wait_job(c, job_id)["status"] == "completed"

    # And after a restart.
    srv.stop()
    again = ServerProcess(data_dir).start()
    try:
        with again.client() as c:
            assert c.get(f"/api/jobs/{job_id}").json()["status"] == "completed"
            assert c.get(f"/api/jobs/{job_id}/download").status_code == 200
    finally:
        again.stop()


def test_disk_full_while_rendering_fails_the_video_cleanly_then_retry_works(small_disk, make_server, clips):
    data_dir = small_disk  # the server's log goes next to it, off the small disk
    srv = make_server(data_dir=data_dir)
    clip = clips["a"].read_bytes()
    with srv.client() as c:
        # Room for the upload and the rows, not for the rendered variations.
        filler = fill(small_disk, leave=len(clip) + 200_000)
        r = c.post("/api/jobs", files=[("videos", ("a.mp4", clip, "video/mp4"))],
                   data={"variations": "8"})
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        job = wait_job(c, job_id, timeout=120)
        assert job["status"] == "failed", job
        video = job["videos"][0]
        assert video["status"] == "failed" and video["retryable"], video
        assert "disk" in video["error"] or "space" in video["error"], video["error"]
        assert not list((data_dir / "outputs").rglob("*.part")), "partial outputs were removed"
        assert c.get(f"/api/jobs/{job_id}/download").status_code == 409

        filler.unlink()
        r = c.post(f"/api/jobs/{job_id}/videos/{video['id']}/retry")
        assert r.status_code == 202, r.text
        job = wait_job(c, job_id, timeout=120)
        assert job["status"] == "completed", job
        assert len(job["videos"][0]["outputs"]) == 8
        assert c.get(f"/api/jobs/{job_id}/download").status_code == 200


def _fill_up(disk: Path) -> Path:
    """Fill the file system to the last block; returns the filler."""
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_delete_and_retry_answer_on_a_100_percent_full_disk(small_disk, make_server, clips, tmp_path):
    data_dir = small_disk
    srv = make_server(data_dir=data_dir)
    with srv.client() as c:
        done = c.post("/api/jobs", files=[("videos", ("a.mp4", clips["a"].read_bytes(), "video/mp4"))],
                      data={"variations": "2"}).json()["jobId"]
        damaged = make_damaged_clip(tmp_path, "damaged.mp4")
        failed = c.post("/api/jobs", files=[("videos", ("d.mp4", damaged.read_bytes(), "video/mp4"))],
                        data={"variations": "1"}).json()["jobId"]
        assert wait_job(c, done)["status"] == "completed"
        video = wait_job(c, failed)["videos"][0]
        assert video["status"] == "failed" and video["retryable"]

        _fill_up(small_disk)
        assert free_bytes(small_disk) == 0
        # Retrying needs a write: refused with what to do, not a server error.
        r = c.post(f"/api/jobs/{failed}/videos/{video['id']}/retry")
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "storage_full"
        assert "Delete some jobs" in r.json()["error"]["message"]
        # Deleting is what the 507 asks for, so it works on the full disk.
        r = c.delete(f"/api/jobs/{done}")
        assert r.status_code == 204, r.text
        assert c.get(f"/api/jobs/{done}").status_code == 404
        assert not (data_dir / "outputs" / done).exists()
        assert rows(data_dir) == (1, 1)
        # With that room made, the retry goes through.
        r = c.post(f"/api/jobs/{failed}/videos/{video['id']}/retry")
        assert r.status_code == 202, r.text
    assert "unhandled error" not in srv.log()


# -- start-up that cannot go ahead ------------------------------------------------------------


def _serve(data_dir: Path, port: int, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """``video-refresher serve`` run to its end (it is expected to refuse to start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env["VR_PASSWORD"] = "correct horse battery staple"
    return subprocess.run(
        [sys.executable, "-m", "web.cli", "serve", "--port", str(port), "--data-dir",
         str(data_dir)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_second_service_on_the_same_data_folder_refuses_and_leaves_the_first_alone(
        make_server, tmp_path):
    """The second one took the first one's FFmpeg for a crash's leftover: it killed it, failed
    the video, and rendered it again beside the live service. Now it says who holds the folder
    and stops, before it reads or changes anything there."""
    srv = make_server()
    clip = make_clip(tmp_path, "long.mp4", seconds=6.0, size="640x360", fps=30)
    with srv.client() as c:
        job_id = c.post("/api/jobs", files=[("videos", ("long.mp4", clip.read_bytes(), "video/mp4"))],
                        data={"variations": "4"}).json()["jobId"]
        wait_for(lambda: c.get(f"/api/jobs/{job_id}").json()["videos"][0]["status"] == "processing",
                 timeout=30)
        second = _serve(srv.data_dir, free_port())
        assert second.returncode == 1, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"error: another Video Refresher (process {srv.proc.pid}) is using the data folder "
            f"{srv.data_dir}; stop it first, or give this one a folder of its own "
            "(VR_DATA_DIR or --data-dir)"]
        assert "Traceback" not in second.stdout + second.stderr
        job = wait_job(c, job_id, timeout=120)
        assert job["status"] == "completed", job
        assert job["videos"][0]["attempts"] == 1
    assert "killed leftover FFmpeg" not in srv.log()
    # Once the first has stopped (even by kill -9), the folder is free again.
    srv.kill9()
    again = ServerProcess(srv.data_dir).start()
    try:
        with again.client() as c:
            assert c.get(f"/api/jobs/{job_id}").json()["status"] == "completed"
    finally:
        again.stop()


def test_a_port_in_use_is_one_sentence_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve(tmp_path / "data", port)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (by another program, or another Video "
        "Refresher); choose another with VR_PORT or --port"]
    assert "listening" not in r.stdout + r.stderr
    assert not (tmp_path / "data" / "refresher.db").exists()
