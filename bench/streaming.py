"""The benchmark's streaming part: the disk's own speed (dd, cat), then a 2 GB upload and a
multi-GB ZIP download through the real server, with its peak memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import media
from .machine import StallWatch, log
from .report import (
    ROW_CAT_COLD,
    ROW_CAT_WARM,
    ROW_DD,
    ROW_DOWNLOAD,
    ROW_TUS,
    ROW_UPLOAD,
    Transfer,
)
from .service import RssSampler, Server, status_kb, wait_job
from .service import download as http_download
from .service import upload as http_upload

if TYPE_CHECKING:
    from .run import Bench

GB = 1000**3
DOWNLOAD_VARIATIONS = 20


def disk_reference(b: Bench) -> Path:
    """dd 2 GB with fdatasync (write), then cat it cold and warm (read); returns the file."""
    r = b.results
    f = b.work / "dd.bin"
    log("disk: dd 2 GB, conv=fdatasync")
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={f}", "bs=1MB", "count=2000", "conv=fdatasync"],
                   check=True, capture_output=True)
    nbytes = f.stat().st_size
    r.io[ROW_DD] = Transfer(nbytes, time.monotonic() - t0)
    fd = os.open(f, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # this file only out of the cache
    finally:
        os.close(fd)
    for row, note in ((ROW_CAT_COLD, "this file's pages dropped from the cache first"),
                      (ROW_CAT_WARM, "right after, from the page cache")):
        log(f"disk: cat 2 GB ({'cold' if row == ROW_CAT_COLD else 'warm'})")
        t0 = time.monotonic()
        subprocess.run(["cat", str(f)], check=True, stdout=subprocess.DEVNULL)
        r.io[row] = Transfer(nbytes, time.monotonic() - t0, note=note)
    f.unlink()
    return f


def streaming_io(b: Bench) -> None:
    a, r = b.args, b.results
    disk_reference(b)
    zeros = b.work / "zeros.mp4"
    size = 2 * GB
    if shutil.which("fallocate"):
        subprocess.run(["fallocate", "-l", str(size), str(zeros)], check=True)
    else:
        with open(zeros, "wb") as fh:
            fh.truncate(size)
    # Re-rolls off: this server measures streaming, not distinctness (no extra render passes).
    with Server(b.work / "io-data", env={"VR_PDQ_MATCH": "-1"}) as srv, srv.client() as client:
        idle = (status_kb(srv.pid, "VmRSS") or 0) / 1024
        log("upload: 2 GB of zeros through POST /api/jobs")
        with RssSampler(srv.pid) as rss:
            t0 = time.monotonic()
            resp, nbytes = http_upload(client, [("videos", zeros)], {"variations": "1"})
            seconds = time.monotonic() - t0
        r.io[ROW_UPLOAD] = Transfer(
            nbytes, seconds, rss.peak_mb,
            f"answered {resp.status_code} ({_code(resp)}) after streaming it to disk, as expected; "
            f"server RSS idle {idle:.0f} MB; client and server share the {os.cpu_count()} cores")
        log("upload: the same 2 GB as a resumable (tus) upload, one PATCH")
        with RssSampler(srv.pid) as rss:
            t0 = time.monotonic()
            status, nbytes = tus_upload(client, zeros)
            seconds = time.monotonic() - t0
        zeros.unlink()
        r.io[ROW_TUS] = Transfer(nbytes, seconds, rss.peak_mb,
                                 f"PATCH answered {status}; the file is then deleted (DELETE)")

        secs = max(0.5, a.download_gb * GB / (DOWNLOAD_VARIATIONS * media.GRAIN_OUTPUT_BYTES_PER_SECOND))
        src = b.work / "grain.mp4"
        log(f"download job: {secs:.1f} s heavy-grain 1080p source, N={DOWNLOAD_VARIATIONS} "
            f"(target ZIP ≈ {a.download_gb:g} GB)")
        media.run(media.grain_clip_command(b.project, src, seconds=round(secs, 2)))
        t0 = time.monotonic()
        resp, _ = http_upload(client, [("videos", src)],
                              {"variations": str(DOWNLOAD_VARIATIONS), "seed": a.seed})
        if resp.status_code != 202:
            raise RuntimeError(f"upload answered {resp.status_code}: {resp.text[:300]}")
        job_id = resp.json()["jobId"]
        job = wait_job(client, job_id, timeout=7200,
                       watch=StallWatch(srv.pid, media.STALL_SECONDS, children_only=True))
        render_s = time.monotonic() - t0
        src.unlink()
        if job["status"] != "completed":
            raise RuntimeError(f"download job {job['status']}")
        log("download: streaming the ZIP")
        with RssSampler(srv.pid) as rss:
            t0 = time.monotonic()
            nbytes = http_download(client, job_id, None)
            seconds = time.monotonic() - t0
        profile = ", ".join(f"{_pct(rss.at_fraction(x))}" for x in (0.0, 0.25, 0.5, 0.75, 1.0))
        r.io[ROW_DOWNLOAD] = Transfer(
            nbytes, seconds, rss.peak_mb,
            f"{DOWNLOAD_VARIATIONS} real outputs of a {secs:.1f} s heavy-grain 1080p source "
            f"(job took {render_s:.0f} s); RSS at 0/25/50/75/100 %: {profile} MB; "
            "client discards the bytes")
        client.delete(f"/api/jobs/{job_id}")
    r.notes.append(
        "Server peak RSS: the kernel's VmHWM of the server process, reset to the current RSS "
        "(`/proc/<pid>/clear_refs` 5) when the transfer starts"
        + ("" if rss.hwm_reset else " (the reset was refused here, so only the samples count)")
        + ", and VmRSS sampled every 20 ms, whichever is higher. The server imports everything "
        f"at start: {idle:.0f} MB before the first request.")


def tus_upload(client, path: Path, chunk: int = 8 << 20) -> tuple[int, int]:
    """Create a tus upload of ``path`` and send it in one streamed PATCH; returns the PATCH's
    status and the bytes sent. The upload is deleted afterwards."""
    size = path.stat().st_size
    tus = {"Tus-Resumable": "1.0.0"}
    created = client.post("/api/uploads", headers={**tus, "Upload-Length": str(size)})
    if created.status_code != 201:
        raise RuntimeError(f"tus create answered {created.status_code}: {created.text[:300]}")
    location = created.headers["location"]

    def body():
        with open(path, "rb") as fh:
            while data := fh.read(chunk):
                yield data

    r = client.patch(location, content=body(), headers={
        **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(size)})
    client.delete(location, headers=tus)
    return r.status_code, size


def _pct(mb: float | None) -> str:
    return "?" if mb is None else f"{mb:.0f}"


def _code(resp) -> str:
    try:
        return resp.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "?"
