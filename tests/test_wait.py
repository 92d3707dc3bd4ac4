"""``GET /api/jobs/{id}?wait=S``: the job answered at its end (or after S seconds, or when the
server stops) instead of at once, on the real server with real renders."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest


def _upload(c: httpx.Client, clip, variations: int = 1) -> str:
    r = c.post("/api/jobs", files=[("videos", (clip.name, clip.read_bytes(), "video/mp4"))],
               data={"variations": str(variations)})
    assert r.status_code == 202, r.text
    return r.json()["jobId"]


class _Waiting(threading.Thread):
    """One ``?wait=`` request on its own thread (the test goes on meanwhile)."""

    def __init__(self, c: httpx.Client, job_id: str, seconds: float):
        super().__init__(daemon=True)
        self.c, self.job_id, self.seconds = c, job_id, seconds
        self.response: httpx.Response | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        t0 = time.monotonic()
        self.response = self.c.get(f"/api/jobs/{self.job_id}", params={"wait": self.seconds})
        self.elapsed = time.monotonic() - t0

    def answer(self, timeout: float = 30.0) -> httpx.Response:
        self.join(timeout)
        assert self.response is not None, "the waiting request did not come back"
        return self.response


def _waiting_on_a_queued_job(c: httpx.Client, clip) -> tuple[str, _Waiting]:
    """A job held in the paused queue, and a ``?wait=60`` request on it, waiting by now."""
    c.post("/api/queue/pause")
    job_id = _upload(c, clip)
    waiting = _Waiting(c, job_id, 60)
    waiting.start()
    time.sleep(0.5)
    assert waiting.response is None
    return job_id, waiting


def test_the_answer_comes_when_the_job_ends(server, clips):
    with server.client() as c:
        job_id = _upload(c, clips["a"], variations=2)
        t0 = time.monotonic()
        r = c.get(f"/api/jobs/{job_id}", params={"wait": "60"})
        elapsed = time.monotonic() - t0
        assert r.status_code == 200
        job = r.json()
        # Without the wait the first answer would be queued or processing.
        assert job["status"] == "completed", job
        assert all(len(v["outputs"]) == 2 for v in job["videos"])
        assert elapsed < 60
        # An ended job is answered at once, whatever the wait.
        t0 = time.monotonic()
        again = c.get(f"/api/jobs/{job_id}", params={"wait": "60"})
        assert again.json()["status"] == "completed"
        assert time.monotonic() - t0 < 5


def test_the_wait_runs_out_with_the_job_as_it_is(server, clips):
    with server.client() as c:
        c.post("/api/queue/pause")
        job_id = _upload(c, clips["a"])
        t0 = time.monotonic()
        r = c.get(f"/api/jobs/{job_id}", params={"wait": "1.5"})
        elapsed = time.monotonic() - t0
        assert r.status_code == 200
        assert r.json()["status"] == "queued"
        assert 1.4 <= elapsed < 15
        # No wait, zero or empty: at once.
        for params in ({}, {"wait": "0"}, {"wait": ""}):
            t0 = time.monotonic()
            assert c.get(f"/api/jobs/{job_id}", params=params).json()["status"] == "queued"
            assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("end", ["cancel", "delete"])
def test_cancelling_or_deleting_the_job_ends_the_wait(server, clips, end):
    with server.client() as c:
        job_id, waiting = _waiting_on_a_queued_job(c, clips["a"])
        if end == "cancel":
            assert c.post(f"/api/jobs/{job_id}/cancel").status_code == 202
        else:
            assert c.delete(f"/api/jobs/{job_id}").status_code == 204
        r = waiting.answer()
        assert waiting.elapsed < 30
        if end == "delete" and r.status_code == 404:
            assert r.json()["error"]["code"] == "job_not_found"
        else:
            # Deleting a queued job cancels its videos first: the wait may answer that end.
            assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


@pytest.mark.parametrize("value", ["-1", "60.5", "61", "abc", "nan", "inf", "-inf", "1e999",
                                   "0x10", "1,5"])
def test_a_wait_that_is_not_0_to_60_seconds_is_a_400(server, clips, value):
    with server.client() as c:
        c.post("/api/queue/pause")
        job_id = _upload(c, clips["a"])
        r = c.get(f"/api/jobs/{job_id}", params={"wait": value})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "bad_wait"
        assert "0 to 60" in r.json()["error"]["message"]


def test_an_unknown_job_is_a_404_at_once(server):
    with server.client() as c:
        t0 = time.monotonic()
        r = c.get("/api/jobs/nope", params={"wait": "30"})
        assert r.status_code == 404
        assert time.monotonic() - t0 < 5


def test_a_stopping_server_answers_the_waiting_requests(server, clips):
    with server.client() as c:
        job_id, waiting = _waiting_on_a_queued_job(c, clips["a"])
        took = server.stop(signal.SIGTERM)
        r = waiting.answer()
        assert r.status_code == 200 and r.json()["status"] == "queued", r.text
        # Answered as the shutdown began, not cut off at the end of its grace period.
        assert took < 3.0
