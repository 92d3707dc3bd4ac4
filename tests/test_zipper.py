"""Zipper: layout, manifest, exact length, byte equality, ``unzip -t``, ZIP64 with flat memory,
missing files. Plain files stand in for outputs (the zipper never looks inside them)."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import struct
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from pipeline.delivery import ziplayout
from pipeline.delivery.zipper import (
    MANIFEST,
    NothingToZip,
    archive_filename,
    archive_members,
    open_archive,
    stream_archive,
    write_zip,
)
from pipeline.state.rows import Job, Output, Video
from pipeline.state.states import JobStatus, VideoStatus


def row_video(vi: int, name: str, status: str, outputs: tuple[Output, ...]) -> Video:
    return Video(id=f"v{vi}", job_id="jtest", index=vi, name=name, upload_path=None, size=1,
                 duration=1.5, info={}, status=VideoStatus(status), progress=100.0,
                 attempts=1, pid=None, error=None, stderr_tail=None, retryable=False,
                 outputs=outputs)


def row_job(videos: tuple[Video, ...], job_id: str = "jtest", variations: int = 2,
            options: dict | None = None) -> Job:
    return Job(id=job_id, status=JobStatus.COMPLETED, created_at=0.0, started_at=0.0,
               completed_at=60.0, expires_at=None, variations=variations, seed="seed",
               options={"exclude": ["mirror"]} if options is None else options, error=None,
               videos=videos)


def make_job(tmp_path: Path, sources: list[tuple[str, str, list[int]]]) -> Job:
    """A job as ``Store.get_job`` gives it: (name, status, sizes of its outputs) per source."""
    videos = []
    for vi, (name, status, sizes) in enumerate(sources):
        outputs = []
        for oi, size in enumerate(sizes):
            path = tmp_path / f"v{vi}" / f"v{oi + 1:02d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(size))
            outputs.append(Output(index=oi, name=f"x_v{oi + 1:02d}.mp4", path=str(path),
                                  size=size, duration=1.5, seed=f"s:{vi}:{oi}",
                                  params={"zoom": 1.02 + oi / 100}, graph=f"[0:v]crop=w{oi}",
                                  distinctness={"video": {"sourceMatches": 10 + oi}},
                                  encoder_args=("-c:v", "libx264", "-crf", str(20 + oi))))
        videos.append(row_video(vi, name, status, tuple(outputs)))
    return row_job(tuple(videos))


def test_members_get_one_safe_unique_folder_per_source(tmp_path):
    job = make_job(tmp_path, [
        ("Promo.mp4", "completed", [10, 10]),
        ("promo.mov", "completed", [10]),
        ("../../etc/passwd", "completed", [10]),
        ("failed one.mp4", "failed", []),
        ("Été 2024.MOV", "completed", [10]),
    ])
    assert [m.arcname for m in archive_members(job)] == [
        "Promo/Promo_v01.mp4", "Promo/Promo_v02.mp4",
        "promo_2/promo_2_v01.mp4",
        "passwd/passwd_v01.mp4",
        "Été 2024/Été 2024_v01.mp4",
    ]
    # Named after its files (the default name): the first source's stem and how many more.
    assert archive_filename(replace(job, name="Promo.mp4 + 4")) == "Promo + 4-variations.zip"
    assert archive_filename(replace(job, videos=job.videos[:1], name="Promo.mp4")) \
        == "Promo-variations.zip"
    assert archive_filename(replace(job, name=None)) == "Promo + 4-variations.zip"  # older jobs
    assert archive_filename(replace(job, videos=())) == "video-refresher-jtest.zip"


@pytest.mark.parametrize(("name", "filename"), [
    ("Summer sale", "Summer sale.zip"),
    ("Q3 / EU: final?", "Q3 _ EU_ final.zip"),
    ("../../etc/passwd", "etc_passwd.zip"),
    ("a\\b", "a_b.zip"),
    ("Été 2024 — v2", "Été 2024 _ v2.zip"),
    ("con", "con_.zip"),
    ("...", "video.zip"),
])
def test_a_named_job_downloads_under_its_own_safe_name(tmp_path, name, filename):
    job = make_job(tmp_path, [("Promo.mp4", "completed", [10])])
    assert archive_filename(replace(job, name=name)) == filename


# (source display name, its folder): every script's letters in the order they were typed, with
# their combining marks; what is left out or refused still leaves a folder that extracts.
FOLDERS = [
    ("line break.mp4", "line break"),
    ('say "hi".mp4', "say _hi"),
    ("back\\slash.mp4", "back_slash"),
    ("סרטון חדש 2.mp4", "סרטון חדש 2"),
    ("إعلان (نسخة 3).mp4", "إعلان (نسخة 3)"),
    ("كَتَبَ.mp4", "كَتَبَ"),  # Arabic harakat
    ("עִבְרִית.mp4", "עִבְרִית"),  # Hebrew niqqud
    ("हिन्दी फ़िल्म.mp4", "हिन्दी फ़िल्म"),  # Devanagari vowel signs and virama
    ("Sale עברית 2024 final.mp4", "Sale עברית 2024 final"),
    ("🎬 launch 🚀.mp4", "launch"),
    ("🎬🚀.mp4", "video"),
    ("\u202e\u202c.mp4", "video"),
    ("\x00\t.mp4", "video"),
    ("...", "video"),
    ("CON.mp4", "CON_"),
    ("lpt1.final.mov", "lpt1_.final"),
    ("x" * 196 + ".mp4", "x" * 80),
    ("a" * 79 + " b.mp4", "a" * 79),
]


@pytest.mark.parametrize("name,folder", FOLDERS, ids=[f for _, f in FOLDERS])
def test_folders_keep_names_in_logical_order_and_stay_usable(tmp_path, name, folder):
    job = make_job(tmp_path, [(name, "completed", [10])])
    assert [m.arcname for m in archive_members(job)] == [f"{folder}/{folder}_v01.mp4"]
    assert not folder.endswith((" ", ".")) and "/" not in folder and "\\" not in folder


def test_rtl_folders_in_the_zip_hold_the_letters_as_sent(tmp_path):
    names = [n for n, _ in FOLDERS[3:9]]
    job = make_job(tmp_path / "out", [(n, "completed", [10]) for n in names])
    write_zip(job, tmp_path / "rtl.zip")
    with zipfile.ZipFile(tmp_path / "rtl.zip") as zf:
        folders = [i.filename.split("/")[0] for i in zf.infolist()[1:]]
        assert all(i.flag_bits & 0x800 for i in zf.infolist()[1:])  # marked UTF-8
    # Byte for byte the sources' stems: nothing reordered, mirrored or stripped.
    assert folders == [n.rsplit(".", 1)[0] for n in names]


def test_write_zip_is_exact_stored_and_byte_identical(tmp_path):
    job = make_job(tmp_path / "out", [
        ("a.mp4", "completed", [300_000, 5]),
        ("b.mov", "completed", [0, 2_500_000]),
        ("c.mp4", "failed", []),
    ])
    path = tmp_path / "job.zip"
    length = write_zip(job, path)
    assert length == path.stat().st_size
    assert not path.with_name("job.zip.part").exists()

    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [MANIFEST, "a/a_v01.mp4", "a/a_v02.mp4", "b/b_v01.mp4",
                                 "b/b_v02.mp4"]
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert zf.testzip() is None
        sources = [o for v in job.videos for o in v.outputs]
        for name, out in zip(zf.namelist()[1:], sources, strict=True):
            assert zf.read(name) == Path(out.path).read_bytes()
        manifest = json.loads(zf.read(MANIFEST))

    assert manifest["jobId"] == "jtest" and manifest["seed"] == "seed"
    assert manifest["excludedEffects"] == ["mirror"]
    assert manifest["unfinishedSources"] == ["c.mp4"]
    assert manifest["variations"][1] == {
        "source": "a.mp4", "file": "a/a_v02.mp4", "index": 2, "seed": "s:0:1",
        "params": {"zoom": 1.03}, "effects": ["3 % zoom"], "graph": "[0:v]crop=w1",
        "duration": 1.5, "size": 5, "distinctness": {"video": {"sourceMatches": 11}},
        "encoderArgs": ["-c:v", "libx264", "-crf", "21"],
        "variation": 2, "format": "source", "loudness": None,
    }
    assert manifest["placement"] == {"formats": ["source"], "fit": "crop", "focus": "center",
                                     "loudness": None}
    assert str(tmp_path) not in json.dumps(manifest)  # no server paths leak

    if shutil.which("unzip"):
        t = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
        assert t.returncode == 0 and "No errors detected" in t.stdout, t.stdout + t.stderr


async def test_streamed_bytes_equal_the_written_file(tmp_path):
    job = make_job(tmp_path / "out", [("a.mp4", "completed", [3_000_000, 1_000])])
    written = tmp_path / "w.zip"
    write_zip(job, written)
    archive = await trio.to_thread.run_sync(open_archive, job)
    chunks = [c async for c in stream_archive(archive)]
    body = b"".join(chunks)
    assert len(body) == archive.length
    assert max(len(c) for c in chunks) <= 2 << 20
    # The very same bytes: timestamps come from the files, not the clock.
    assert body == written.read_bytes()


def test_missing_files_are_left_out_and_named(tmp_path):
    job = make_job(tmp_path / "out", [("a.mp4", "completed", [10, 10])])
    Path(job.videos[0].outputs[0].path).unlink()
    with open_archive(job) as archive:
        assert archive.manifest["missing"] == ["a/a_v01.mp4"]
        assert [v["file"] for v in archive.manifest["variations"]] == ["a/a_v02.mp4"]
    Path(job.videos[0].outputs[1].path).unlink()
    with pytest.raises(NothingToZip):
        open_archive(job)


def test_files_deleted_after_opening_still_stream(tmp_path):
    """A janitor sweep during a download cannot break it: the files are already open."""
    job = make_job(tmp_path / "out", [("a.mp4", "completed", [50_000, 50_000])])
    with open_archive(job) as archive:
        shutil.rmtree(tmp_path / "out")
        body = b"".join(archive.batches())
    assert len(body) == archive.length


ZIP64_SIZE = (1 << 31) + 4096  # past zipfile.ZIP64_LIMIT


@pytest.mark.parametrize("size", [
    256 << 20,
    pytest.param(ZIP64_SIZE, marks=pytest.mark.skipif(
        not os.environ.get("VR_SLOW_TESTS"),
        reason="CRC of 2 GiB takes 3-8 s; set VR_SLOW_TESTS=1 to run")),
], ids=["256MiB", "zip64"])
def test_big_member_streams_exactly_with_flat_memory(tmp_path, size):
    """A big member (sparse, so cheap on disk) streams with the predicted length, memory does
    not grow with the archive, and past 2 GiB the archive carries ZIP64 records."""
    big = tmp_path / "big.mp4"
    with open(big, "wb") as fh:
        fh.write(b"HEAD")
        fh.truncate(size)
        fh.seek(size - 4)
        fh.write(b"TAIL")
    job = row_job((row_video(0, "big.mp4", "completed",
                             (Output(index=0, name="big_v01.mp4", path=str(big), size=size),)),),
                  job_id="jbig", variations=1, options={})
    out = tmp_path / "big.zip"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    written = 0
    zeros = bytes(1 << 20)
    with open_archive(job) as archive, open(out, "wb") as fh:
        for chunk in archive.batches():
            written += len(chunk)
            if chunk == zeros[:len(chunk)] if len(chunk) < len(zeros) else chunk == zeros:
                fh.seek(len(chunk), os.SEEK_CUR)  # keep the copy sparse too
            else:
                fh.write(chunk)
        fh.truncate()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert written == archive.length == out.stat().st_size
    assert grown_kib < 64 * 1024

    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("big/big_v01.mp4")
        assert info.file_size == size and info.compress_type == zipfile.ZIP_STORED
        with zf.open(info) as member:
            assert member.read(4) == b"HEAD"
    # The ZIP64 end-of-central-directory record and locator precede the classic one.
    with open(out, "rb") as fh:
        fh.seek(-(22 + 20 + 56), os.SEEK_END)
        zip64_end = struct.unpack("<I", fh.read(4))[0] == 0x06064B50
    assert zip64_end == (size > zipfile.ZIP64_LIMIT)


# -- byte ranges ------------------------------------------------------------------------------


def _copy_outputs(job: Job, to: Path) -> Job:
    """The job with its outputs copied (new files, same bytes and times): nothing cached."""
    to.mkdir()
    videos = []
    for v in job.videos:
        outs = []
        for o in v.outputs:
            dst = to / f"{v.id}-{o.index}.mp4"
            shutil.copy2(o.path, dst)
            outs.append(replace(o, path=str(dst)))
        videos.append(replace(v, outputs=tuple(outs)))
    return replace(job, videos=tuple(videos))


def _offsets(lay: ziplayout.Layout) -> list[int]:
    """Starts worth resuming at: every record's first, second and last byte, mid-data."""
    points = {0, 1, lay.central_offset, lay.central_offset + 7, lay.length - 22, lay.length - 1}
    for e in lay.entries:
        for at in (e.offset, e.offset + 1, e.offset + 29, e.data_offset, e.data_offset + 1,
                   e.data_offset + e.size // 2, e.descriptor_offset, e.descriptor_offset + 5,
                   e.end - 1):
            points.add(min(at, lay.length - 1))
    return sorted(points)


def test_any_byte_range_is_that_slice_of_the_whole(tmp_path):
    job = make_job(tmp_path / "out", [("a.mp4", "completed", [300_000, 0, 5]),
                                      ("سلام.mp4", "completed", [2_500_000])])
    with open_archive(job) as archive:
        whole = b"".join(archive.batches())
        lay = archive.layout
    assert len(whole) == archive.length
    with zipfile.ZipFile(io.BytesIO(whole)) as zf:
        assert zf.testzip() is None
    for n, start in enumerate(_offsets(lay)):
        # A cold start (no CRC known: the skipped bytes are read for it) and a warm one.
        fresh = _copy_outputs(job, tmp_path / f"copy{n}")
        for j in (fresh, job):
            with open_archive(j) as archive:
                assert b"".join(archive.batches(start)) == whole[start:], start
        for stop in (start + 1, start + 100, start + 70_000):
            with open_archive(job) as archive:
                assert b"".join(archive.batches(start, stop)) == whole[start:stop], (start, stop)


def test_resumed_pieces_concatenate_to_the_whole(tmp_path):
    job = make_job(tmp_path / "out", [("a.mp4", "completed", [300_000, 7]),
                                      ("b.mp4", "completed", [1_000_000])])
    with open_archive(job) as archive:
        whole = b"".join(archive.batches())
        cuts = [0, 1, 40, archive.layout.entries[1].data_offset + 999, archive.length - 1,
                archive.length]
    pieces = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        with open_archive(_copy_outputs(job, tmp_path / f"c{a}")) as archive:
            pieces.append(b"".join(archive.batches(a, b)))
    assert b"".join(pieces) == whole


def test_the_etag_names_the_bytes(tmp_path):
    job = make_job(tmp_path / "out", [("a.mp4", "completed", [1000, 2000])])
    with open_archive(job) as one, open_archive(job) as two:
        assert one.etag == two.etag and one.etag.startswith('"') and one.etag.endswith('"')
        assert b"".join(one.batches()) == b"".join(two.batches())
        assert one.last_modified.endswith(" GMT")
    path = Path(job.videos[0].outputs[1].path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    with open_archive(job) as touched:
        assert touched.etag != one.etag
    extra = make_job(tmp_path / "more", [("b.mp4", "completed", [10])]).videos[0]
    more = replace(job, videos=(*job.videos, replace(extra, id="v1", index=1)))
    with open_archive(more) as grown:
        assert grown.etag != touched.etag
