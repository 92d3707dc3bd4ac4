"""One variation or preview at a time: the file with Range (a <video> element seeks in it), the
token in the query, a download name, and clear errors for what does not exist."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest
from PIL import Image

from tests.server import wait_job


@pytest.fixture(scope="module")
def done(tmp_path_factory, clips):
    from tests.server import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("files")).start()
    with srv.client() as c:
        files = [("videos", ("clip a.mp4", clips["a"].read_bytes(), "video/mp4"))]
        job = wait_job(c, c.post("/api/jobs", files=files, data={"variations": "2"}).json()["jobId"])
        archive = zipfile.ZipFile(io.BytesIO(c.get(f"/api/jobs/{job['id']}/download").content))
    yield srv, job, archive
    srv.stop()


def test_each_variation_is_its_own_file_with_ranges(done):
    srv, job, archive = done
    video = job["videos"][0]
    with srv.client() as c:
        for out, member in zip(video["outputs"], ["clip a/clip a_v01.mp4", "clip a/clip a_v02.mp4"],
                               strict=True):
            assert out["url"] == f"/api/jobs/{job['id']}/videos/{video['id']}/outputs/{out['index'] + 1}"
            whole = c.get(out["url"])
            assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
            assert whole.content == archive.read(member)
            assert whole.headers["accept-ranges"] == "bytes"
            assert "content-disposition" not in whole.headers  # inline: it plays in the page
            part = c.get(out["url"], headers={"Range": "bytes=100-199"})
            assert part.status_code == 206 and part.content == whole.content[100:200]
            assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
            tail = c.get(out["url"], headers={"Range": "bytes=-50"})
            assert tail.status_code == 206 and tail.content == whole.content[-50:]
            # A stale If-Range (the file changed) gets the whole file.
            stale = c.get(out["url"], headers={"Range": "bytes=0-9", "If-Range": '"other"'})
            assert stale.status_code == 200 and len(stale.content) == len(whole.content)
            # The copy a browser holds: 304 without the file.
            held = c.get(out["url"], headers={"If-None-Match": whole.headers["etag"]})
            assert held.status_code == 304 and held.content == b""
            assert held.headers["etag"] == whole.headers["etag"]
            saved = c.get(out["url"], params={"download": "1"})
            assert saved.headers["content-disposition"] == f'attachment; filename="{out["name"]}"'
            past = c.get(out["url"], headers={"Range": f"bytes={len(whole.content) + 10}-"})
            assert past.status_code == 416 and past.json()["error"]["code"]


def test_the_token_may_come_in_the_query_and_is_required(done):
    srv, job, _ = done
    url = job["videos"][0]["outputs"][0]["url"]
    assert httpx.get(srv.url + url).status_code == 401
    assert httpx.get(srv.url + url, params={"token": "forged"}).status_code == 401
    r = httpx.get(srv.url + url, params={"token": srv.token()})
    assert r.status_code == 200 and r.content[4:8] == b"ftyp"
    # The query token opens these GETs only, not the job list.
    assert httpx.get(srv.url + "/api/jobs", params={"token": srv.token()}).status_code == 401


@pytest.mark.parametrize("path, status, code", [
    ("/api/jobs/jnope/videos/v/outputs/1", 404, "job_not_found"),
    ("/api/jobs/{job}/videos/vnope/outputs/1", 404, "video_not_found"),
    ("/api/jobs/{job}/videos/{video}/outputs/0", 404, "output_not_found"),
    ("/api/jobs/{job}/videos/{video}/outputs/3", 404, "output_not_found"),
    ("/api/jobs/{job}/videos/{video}/outputs/99999999999999999999", 404, "output_not_found"),
    ("/api/jobs/{job}/videos/{video}/outputs/-1", 404, "not_found"),
    ("/api/jobs/{job}/videos/{video}/outputs/x/preview", 404, "not_found"),
])
def test_what_does_not_exist_is_a_json_404(done, path, status, code):
    srv, job, _ = done
    with srv.client() as c:
        r = c.get(path.format(job=job["id"], video=job["videos"][0]["id"]))
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_previews_are_contact_strips_of_the_source_and_each_variation(done):
    srv, job, _ = done
    video = job["videos"][0]
    with srv.client() as c:
        strips = [c.get(video["previewUrl"])] + [c.get(o["previewUrl"]) for o in video["outputs"]]
    for r in strips:
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(r.content))
        assert image.format == "JPEG" and image.width >= 320
    assert len({r.content for r in strips}) == 3  # the source and two different variations


def test_heads_missing_previews_and_refused_ranges(done):
    """HEAD works with the query token (download managers ask first); a strip that was never
    made is a 404, not "gone"; a refused range carries no caching headers of the file."""
    srv, job, _ = done
    video = job["videos"][0]
    out = video["outputs"][0]
    head = httpx.head(srv.url + out["url"], params={"token": srv.token()})
    assert head.status_code == 200 and int(head.headers["content-length"]) == out["size"]
    strip = srv.data_dir / "outputs" / job["id"] / video["id"] / "v02.preview.jpg"
    saved = strip.read_bytes()
    strip.unlink()
    try:
        with srv.client() as c:
            r = c.get(video["outputs"][1]["previewUrl"])
            assert r.status_code == 404 and r.json()["error"]["code"] == "preview_not_found"
            past = c.get(out["url"], headers={"Range": f"bytes={out['size'] + 1}-"})
    finally:
        strip.write_bytes(saved)
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{out['size']}"
    assert "etag" not in past.headers and past.headers["cache-control"] == "no-store"
