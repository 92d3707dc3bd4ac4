"""The storage cap holds for what uploads become, not only for the uploads: admission reserves
room for the variations (pipeline/actors/janitor.py ``expected_output_bytes``) until they land."""

from __future__ import annotations

from pathlib import Path

from pipeline.actors.janitor import expected_output_bytes
from tests.server import wait_job


def _stored(data_dir: Path) -> int:
    return sum(p.stat().st_size for root in ("uploads", "outputs")
               for p in (data_dir / root).rglob("*") if p.is_file())


def _post(client, clip: Path, variations: int, name: str = "a.mp4"):
    return client.post("/api/jobs", files=[("videos", (name, clip.read_bytes(), "video/mp4"))],
                       data={"variations": str(variations)})


def test_an_upload_whose_variations_would_overflow_the_cap_is_507(make_server, clips):
    size = clips["a"].stat().st_size
    cap = size + expected_output_bytes(size, 3) + size // 2  # room for 3 variations, not 20
    srv = make_server({"VR_STORAGE_CAP": str(cap), "VR_WORKERS": "1"})
    with srv.client() as c:
        r = _post(c, clips["a"], 20)
        assert r.status_code == 507, r.text
        error = r.json()["error"]
        assert error["code"] == "storage_full" and "20 variations of a.mp4 (about" in error["message"]
        assert list((srv.data_dir / "uploads").iterdir()) == []
        assert c.get("/api/jobs").json()["jobs"] == []

        # While one job's variations are still to come, their room is taken: a second job
        # that would fit on disk right now is refused too.
        first = _post(c, clips["a"], 3)
        assert first.status_code == 202, first.text
        second = _post(c, clips["a"], 3, "b.mp4")
        assert second.status_code == 507, second.text
        job = wait_job(c, first.json()["jobId"])
        assert job["status"] == "completed"
        assert _stored(srv.data_dir) <= cap

        # Once it landed, its reservation is released and only what it wrote counts: the next
        # job fits after the finished one is evicted, and the total stays under the cap.
        third = _post(c, clips["a"], 3, "c.mp4")
        assert third.status_code == 202, third.text
        assert wait_job(c, third.json()["jobId"])["status"] == "completed"
        assert _stored(srv.data_dir) <= cap
