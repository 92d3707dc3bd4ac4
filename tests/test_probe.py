"""The probe's record (pipeline/media/probe.py ``MediaInfo``) as intake stores it for the runner."""

from __future__ import annotations

import json
import sqlite3

from pipeline.media.probe import MediaInfo, probe_source
from tests.server import wait_job


def test_the_stored_probe_is_the_one_the_runner_renders_from(server, clips):
    with server.client() as c:
        files = [("videos", ("a.mp4", clips["a"].read_bytes(), "video/mp4"))]
        job = c.post("/api/jobs", files=files, data={"variations": "1"}).json()
        assert wait_job(c, job["jobId"])["status"] == "completed"
    with sqlite3.connect(server.data_dir / "refresher.db") as db:
        (stored,) = db.execute("SELECT info_json FROM videos").fetchone()
    info = MediaInfo.from_dict(json.loads(stored))
    assert info is not None
    assert info == probe_source(clips["a"])


def test_a_record_of_another_shape_reads_as_none():
    # What rows written before this record kept: the runner probes the file again for them.
    old = {"width": 160, "height": 120, "rotation": 0, "displayWidth": 160, "displayHeight": 120,
           "fps": 15.0, "hasAudio": True, "videoCodec": "h264", "audioCodec": "aac", "duration": 1.0}
    assert MediaInfo.from_dict(old) is None
    assert MediaInfo.from_dict({}) is None
