"""The real service as a child process, driven over HTTP, and watched through ``/proc``.

``Server`` starts ``video-refresher serve`` on 127.0.0.1 with its own data folder. The client
side streams multipart bodies from disk in 1 MiB pieces (no whole file in memory, an exact
``Content-Length``), waits for jobs (``GET /api/jobs/{id}?wait=``), and streams downloads;
``RssSampler`` follows the server's resident memory while that happens.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .machine import Stalled, StallWatch

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1 << 20
# `wait_job`: the server's longest ``?wait=`` (web.jobs.MAX_WAIT), and how often a stall is
# looked for.
MAX_WAIT = 60.0
CHECK_EVERY = 2.0
# Environment the benchmark lets through to the server (what is being measured); every other
# VR_* variable of the caller is dropped so the defaults are measured.
PASS_THROUGH = ("VR_QUALITY", "VR_PRESET", "VR_WORKERS", "VR_FFMPEG", "VR_PDQ_MATCH",
                "VR_VERIFY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_server(data_dir: Path, port: int, env: dict[str, str], log_path: Path
                 ) -> subprocess.Popen:
    """Start ``video-refresher serve`` on 127.0.0.1:``port`` with ``env`` as its whole
    environment, stdout and stderr appended to ``log_path``. See `wait_healthy`.

    The test suite's server (``tests/server.py``) starts the same way.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve", "--port", str(port),
             "--data-dir", str(data_dir)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )


def wait_healthy(proc: subprocess.Popen, url: str, log_path: Path, timeout: float,
                 healthy: tuple[int, ...] = (200,)) -> None:
    """Wait until ``GET {url}/api/health`` answers one of ``healthy``. Raises ``RuntimeError``
    with the server's log when it exits first or does not answer within ``timeout`` seconds
    (it is left running then: the caller stops it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early ({log_path}):\n{_read(log_path)}")
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code in healthy:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not start in {timeout:.0f} s ({log_path}):\n"
                       f"{_read(log_path)}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class Server:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Server:
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("VR_") or k in PASS_THROUGH}
        env.update({"VR_PASSWORD": self.password, "VR_STORAGE_CAP": "1000TB",
                    "VR_JANITOR_INTERVAL": "24h"})
        env.update(self.env)
        log_path = self.data_dir.parent / f"server-{self.port}.log"
        self.proc = spawn_server(self.data_dir, self.port, env, log_path)
        wait_healthy(self.proc, self.url, log_path, timeout)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self) -> httpx.Client:
        r = httpx.post(self.url + "/api/auth", json={"password": self.password}, timeout=10)
        r.raise_for_status()
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(600, connect=10),
                            headers={"Authorization": f"Bearer {r.json()['token']}"})


# -- /proc ------------------------------------------------------------------------------------------


def status_kb(pid: int, key: str) -> int | None:
    """A ``kB`` value of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (``clear_refs`` 5, Linux ≥ 4.0); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid`` plus that of its children it has waited for (FFmpeg runs)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # utime, stime, cutime, cstime are fields 14-17 of stat(5); `fields` starts at field 3.
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples the RSS of ``pid`` every ``interval`` seconds in a thread, for a ``with`` block.

    ``peak_mb`` is the larger of the sampled maximum and the kernel's ``VmHWM`` (reset when the
    block starts, so it covers the block only); ``samples`` keeps (seconds, MB) pairs.
    """

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.start_mb = 0.0
        self.hwm_reset = False
        self.hwm_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self.hwm_reset = reset_peak(self.pid)
        self.start_mb = (status_kb(self.pid, "VmRSS") or 0) / 1024
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        hwm = status_kb(self.pid, "VmHWM")
        if hwm is not None and self.hwm_reset:
            self.hwm_mb = hwm / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            kb = status_kb(self.pid, "VmRSS")
            if kb is not None:
                self.samples.append((time.monotonic() - self._t0, kb / 1024))
            self._stop.wait(self.interval)

    @property
    def peak_mb(self) -> float:
        sampled = max((mb for _, mb in self.samples), default=0.0)
        return max(sampled, self.hwm_mb or 0.0)

    def at_fraction(self, frac: float) -> float | None:
        """The sampled RSS at ``frac`` (0..1) of the block's duration."""
        if not self.samples:
            return None
        t_end = self.samples[-1][0]
        return next((mb for t, mb in self.samples if t >= frac * t_end), self.samples[-1][1])


# -- HTTP -------------------------------------------------------------------------------------------


def multipart(fields: dict[str, str], files: list[tuple[str, Path]]
              ) -> tuple[str, int, Iterator[bytes]]:
    """A ``multipart/form-data`` body streamed from disk: (content type, length, chunks)."""
    boundary = "vrbench" + secrets.token_hex(12)
    head: list[bytes] = []
    for name, value in fields.items():
        head.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                    f"{value}\r\n".encode())
    parts = [(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
              f'filename="{path.name}"\r\nContent-Type: video/mp4\r\n\r\n').encode()
             for name, path in files]
    tail = f"--{boundary}--\r\n".encode()
    length = (sum(map(len, head)) + sum(map(len, parts)) + len(tail)
              + sum(p.stat().st_size + 2 for _, p in files))

    def chunks() -> Iterator[bytes]:
        yield b"".join(head)
        for part, (_, path) in zip(parts, files, strict=True):
            yield part
            with open(path, "rb") as fh:
                while data := fh.read(CHUNK):
                    yield data
            yield b"\r\n"
        yield tail

    return f"multipart/form-data; boundary={boundary}", length, chunks()


def upload(client: httpx.Client, files: list[tuple[str, Path]], fields: dict[str, str]
           ) -> tuple[httpx.Response, int]:
    """POST /api/jobs with the files streamed from disk; returns the response and body size."""
    ctype, length, body = multipart(fields, files)
    r = client.post("/api/jobs", content=body,
                    headers={"Content-Type": ctype, "Content-Length": str(length)})
    return r, length


def wait_job(client: httpx.Client, job_id: str, timeout: float, *,
             watch: StallWatch | None = None) -> dict:
    """Wait until the job is finished, the way a script would: ``GET /api/jobs/{id}?wait=``,
    which the server answers at the job's end (no polling, no polling delay). With ``watch``
    (on the server's pid), each wait is at most ``CHECK_EVERY`` seconds, after which `Stalled`
    is raised when the server and its FFmpeg have used no CPU for the watch's time."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        wait = max(0.0, min(left, CHECK_EVERY if watch is not None else MAX_WAIT))
        job = client.get(f"/api/jobs/{job_id}", params={"wait": f"{wait:.3f}"},
                         timeout=wait + 30).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:.0f} s")
        if watch is not None and watch.stalled():
            raise Stalled(f"job {job_id}: the server's FFmpeg used no CPU for "
                          f"{watch.seconds:.0f} s (deadlocked)")


def download(client: httpx.Client, job_id: str, out: Path | None) -> int:
    """Stream the job's ZIP into ``out`` (or nowhere); returns its size."""
    total = 0
    with client.stream("GET", f"/api/jobs/{job_id}/download") as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"download answered {r.status_code}: {r.text[:300]}")
        expected = int(r.headers["Content-Length"])
        fh = open(out, "wb") if out is not None else None  # noqa: SIM115
        try:
            for chunk in r.iter_raw(CHUNK):
                total += len(chunk)
                if fh is not None:
                    fh.write(chunk)
        finally:
            if fh is not None:
                fh.close()
    if total != expected:
        raise RuntimeError(f"download ended after {total} of {expected} bytes")
    return total
