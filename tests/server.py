"""Start the real service (``video-refresher serve``) as a child process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# The benchmark starts its server the same way; free_port is re-exported for the tests.
from bench.service import free_port, spawn_server, wait_healthy

__all__ = ["PASSWORD", "ROOT", "ServerProcess", "free_port", "wait_for", "wait_job"]

PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerProcess:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
        env.update({"VR_PASSWORD": PASSWORD, "VR_STOP_GRACE": "3s"})
        env.update(self.env)
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        self.proc = spawn_server(self.data_dir, self.port, env, self.log_path)
        # 503: up, but reporting a problem (FFmpeg or the data folder): some tests want that.
        wait_healthy(self.proc, self.url, self.log_path, timeout, healthy=(200, 503))
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Send ``sig`` and wait; returns seconds it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return time.monotonic() - t0

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def token(self) -> str:
        r = httpx.post(self.url + "/api/auth", json={"password": PASSWORD}, timeout=10)
        r.raise_for_status()
        return r.json()["token"]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.token()}"})


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def wait_job(client: httpx.Client, job_id: str, statuses=("completed", "failed", "cancelled"),
             timeout: float = 120.0) -> dict:
    def done():
        job = client.get(f"/api/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return wait_for(done, timeout)
