"""Every kind of video a team brings either renders into valid variations or is refused at upload
with a sentence a user understands.

The matrix (tests/media_matrix.py) crosses codecs and containers (H.264 8- and 10-bit, HEVC,
H.264 in MKV, VP9 WebM, MPEG-2 program streams, MPEG-4 + AC-3 AVI, ProRes MOV) with frame rates
(23.976 to 60 and variable with a drop), shapes (odd, 16x16, 9:16, rotated 90/270) and sound or
silence. One ``video-refresher make`` run renders all of them with several seeded variations
each; every output is then checked as a platform would receive it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import pytest

from pipeline.media.effects import VariationParams
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.naming import safe_stem
from pipeline.media.probe import probe, probe_source
from tests.clips import make_clip, make_corrupt_clip
from tests.media_matrix import Point, make_input, matrix
from tests.server import ROOT

FFMPEG = find_ffmpeg()
VARIATIONS = 3


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", *args],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    points = matrix()
    sources = {p: make_input(d, p) for p in points}
    # The fewest frames a variation can be made of.
    few = d / "three-frames.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30", "-frames:v", "3",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", f"file:{few}")
    # A broadcast file spliced from two streams of different picture sizes.
    for k, size in enumerate(("96x64", "48x32")):
        _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration=0.6", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", "-output_ts_offset", str(k * 0.6), "-f", "mpegts",
                f"file:{d / f'part{k}.ts'}")
    spliced = d / "spliced-sizes.ts"
    spliced.write_bytes((d / "part0.ts").read_bytes() + (d / "part1.ts").read_bytes())
    out = d / "all.zip"
    extra = [few, spliced]
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "make", *map(str, sources.values()), *map(str, extra),
         "-n", str(VARIATIONS), "--seed", "matrix", "-o", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "VR_WORKERS": "2"},
    )
    return {"dir": d, "sources": {**{p.name: s for p, s in sources.items()},
                                  **{e.name: e for e in extra}},
            "points": {p.name: p for p in points}, "zip": out, "done": done}


def test_every_kind_of_input_renders(rendered):
    done = rendered["done"]
    failures = [line for line in done.stderr.splitlines() if line.startswith("failed:")]
    assert done.returncode == 0 and not failures, "\n".join(failures) or done.stderr[-2000:]
    with zipfile.ZipFile(rendered["zip"]) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        entries = manifest["variations"]
        assert len(entries) == VARIATIONS * len(rendered["sources"])
        extract = rendered["dir"] / "out"
        zf.extractall(extract)
    by_source: dict[str, list[dict]] = {}
    for e in entries:
        by_source.setdefault(e["file"].split("/")[0], []).append(e)
    for name, source in rendered["sources"].items():
        outputs = by_source[safe_stem(name)]
        assert len(outputs) == VARIATIONS, name
        src = probe(source)
        for e in outputs:
            _check_output(extract / e["file"], src, VariationParams(**e["params"]), e["file"])


def _check_output(path: Path, src, params: VariationParams, label: str) -> None:
    """What a platform receives: H.264 8-bit 4:2:0 in MP4 with even dimensions, upright, the
    source's displayed shape, its sound (or none), its length at the variation's speed, and
    every frame decodes."""
    out = probe(path)
    assert out.video_codec == "h264", label
    assert out.rotation == 0, label
    assert (out.width, out.height) == (src.display_width // 2 * 2, src.display_height // 2 * 2), label
    assert out.width % 2 == 0 and out.height % 2 == 0, label
    assert out.has_audio is src.has_audio, label
    expected = src.duration / params.speed
    tolerance = max(0.02 * expected, 0.5 / src.fps)  # as the verification allows
    assert abs(out.duration - expected) <= tolerance, (label, out.duration, expected)
    with av.open(str(path)) as c:
        assert c.format.name.startswith("mov,mp4"), label
        stream = c.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p", label
        assert stream.codec_context.profile in ("Constrained Baseline", "Baseline", "Main", "High"), label
        frames = sum(1 for _ in c.decode(stream))
    assert frames >= 3, label


def test_the_matrix_meets_every_codec_rate_shape_and_sound():
    points = matrix()
    codecs = {p.codec for p in points}
    assert {(p.codec, p.rate) for p in points} == {(c, r) for c in codecs for r in
                                                   {p.rate for p in points}}
    shapes = {p.shape for p in points}
    assert shapes == {"odd", "16x16", "9:16", "rotated-90", "rotated-270"}
    for codec in codecs:
        mine = [p for p in points if p.codec == codec]
        assert {p.audio for p in mine} == {True, False}, codec
        assert {"odd", "16x16", "9:16"} <= {p.shape for p in mine}, codec
    assert any(p.rotation for p in points if p.codec == "hevc")


@pytest.mark.parametrize("container", ["avi", "mp4-1-over-fps"])
def test_speed_changes_the_length_on_a_coarse_clock(tmp_path, container):
    # An AVI (and an MP4 whose track clock is 1/fps) time frames in whole frame ticks: divided
    # by the speed factor there, the timestamps rounded back to the same ticks and a slowed
    # output kept its source's length ("lasts 1.00s, expected 1.04s").
    if container == "avi":
        point = Point("mpeg4-avi", "24000/1001", "16x16", audio=False)
        source = make_input(tmp_path, point)
    else:
        source = tmp_path / "coarse.mp4"
        _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", "-video_track_timescale", "25", f"file:{source}")
    from pipeline.media.command import build_render_command

    info = probe(source)
    for speed in (0.95, 0.9625, 1.04):
        out = tmp_path / f"out-{speed}.mp4"
        subprocess.run(build_render_command(FFMPEG, source, info, [VariationParams(speed=speed)],
                                            [out]), check=True, capture_output=True, timeout=60)
        expected = info.duration / speed
        assert abs(probe(out).duration - expected) <= 0.02 * expected, speed


def test_variable_frame_rate_duration_is_the_span_of_its_frames(tmp_path):
    # A phone clip whose rate drops from 30 to 15 fps half-way: its track header says 2.90 s,
    # its frames run from 0 to 2.93 s plus the last one's length, and its outputs were failed
    # as too long.
    clip = tmp_path / "phone.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=3",
            "-f", "lavfi", "-i", "sine=duration=3", "-vf", "select='lt(t\\,1.5)+not(mod(n\\,2))'",
            "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
            f"file:{clip}")
    info = probe_source(clip)
    with av.open(str(clip)) as c:
        header = float(c.streams.video[0].duration * c.streams.video[0].time_base)
    assert header == pytest.approx(2.9, abs=0.001)
    assert info.frames == 67
    assert 2.96 <= info.duration <= 3.0
    assert info.audio_end == pytest.approx(3.0, abs=0.03)


# -- refused at upload ------------------------------------------------------------------------


def _cut(source: Path, out: Path, share: float) -> Path:
    data = source.read_bytes()
    out.write_bytes(data[: int(len(data) * share)])
    return out


@pytest.fixture(scope="module")
def unusable(tmp_path_factory):
    d = tmp_path_factory.mktemp("unusable")
    whole = make_clip(d, "whole.mp4", seconds=2.0, fps=15)
    front = d / "front.mp4"
    _ffmpeg("-i", f"file:{whole}", "-c", "copy", "-movflags", "+faststart", f"file:{front}")
    files = {f"cut-{int(share * 100)}.mp4":
             ("incomplete_video", 422, _cut(front, d / f"cut{share}.mp4", share))
             for share in (0.3, 0.5, 0.8, 0.95)}
    for n in (1, 2):
        path = d / f"frames-{n}.mp4"
        _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30", "-frames:v", str(n),
                "-c:v", "libx264", "-pix_fmt", "yuv420p", f"file:{path}")
        files[path.name] = ("video_too_short", 422, path)
    png = d / "still.png"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", f"file:{png}")
    files["still.mp4"] = ("not_a_video", 415, png)
    files["index-cut.mp4"] = ("not_a_video", 415, make_corrupt_clip(d, "index-cut.mp4"))
    return files


def test_unrenderable_inputs_are_refused_at_upload_and_leave_nothing(server, unusable, clips):
    with server.client() as c:
        for name, (code, status, path) in unusable.items():
            # Beside a good video: one unusable file refuses the upload, naming that file.
            files = [("videos", ("good.mp4", clips["a"].read_bytes(), "video/mp4")),
                     ("videos", (name, path.read_bytes(), "video/mp4"))]
            r = c.post("/api/jobs", files=files, data={"variations": "1"})
            assert r.status_code == status, (name, r.text)
            error = r.json()["error"]
            assert error["code"] == code, name
            assert name in error["message"] and "ffmpeg" not in error["message"].lower(), error
            assert "\n" not in error["message"]
        assert c.get("/api/jobs").json()["jobs"] == []
    assert list((server.data_dir / "uploads").iterdir()) == []
