"""Placement formats: the geometry (pure), the fields a client sends, and real renders of every
format × fit from landscape and portrait sources through the server."""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile

import pytest

from pipeline.media import formats
from pipeline.media.formats import FormatError, Placement, crop_size, pad_size, parse_placement
from pipeline.media.probe import probe
from tests.clips import make_clip
from tests.server import wait_job

RATIOS = {k: v for k, v in formats.RATIOS.items() if v is not None}
SIZES = [(1280, 720), (720, 1280), (1920, 1080), (1080, 1920), (640, 360), (320, 240),
         (240, 320), (720, 528), (853, 480), (481, 853), (1000, 1000), (176, 144), (3840, 2160)]


def _aspect_error(w: int, h: int, ratio: tuple[int, int]) -> float:
    return abs((w / h) / (ratio[0] / ratio[1]) - 1)


def test_the_examples_of_the_contract():
    assert crop_size(1280, 720, (9, 16)) == (406, 720)
    assert pad_size(1280, 720, (9, 16)) == ((720, 1280), (720, 406))
    assert formats.output_size("source", "crop", 1281, 721) == (1280, 720)


@pytest.mark.parametrize("w,h", SIZES)
@pytest.mark.parametrize("name", list(RATIOS))
def test_crop_is_the_largest_even_window_of_the_ratio(w, h, name):
    ratio = RATIOS[name]
    cw, ch = crop_size(w, h, ratio)
    assert cw % 2 == 0 and ch % 2 == 0
    assert cw <= w and ch <= h
    assert _aspect_error(cw, ch, ratio) < 0.01
    # One side is (nearly) the source's whole side: the window is as large as it can be.
    assert cw >= w - 2 or ch >= h - 4


@pytest.mark.parametrize("w,h", SIZES)
@pytest.mark.parametrize("name", list(RATIOS))
def test_pad_fits_the_whole_picture_never_upscaled(w, h, name):
    ratio = RATIOS[name]
    (cw, ch), (pw, ph) = pad_size(w, h, ratio)
    assert all(x % 2 == 0 for x in (cw, ch, pw, ph))
    assert max(w, h) - 4 <= max(cw, ch) <= max(w, h)  # the canvas's long side is the source's
    assert _aspect_error(cw, ch, ratio) < 0.01
    assert pw <= w and ph <= h and pw <= cw and ph <= ch  # never upscaled, inside the canvas
    assert abs((pw / ph) / (w / h) - 1) < 0.02  # the picture keeps its shape
    assert pw >= cw - 2 or ph >= ch - 2  # fitted: touches two sides


def test_tiny_frames_still_get_even_windows_close_to_the_ratio():
    for w in range(16, 80, 2):
        for h in range(16, 80, 2):
            for ratio in RATIOS.values():
                cw, ch = crop_size(w, h, ratio)
                assert cw % 2 == ch % 2 == 0 and cw <= w and ch <= h
                assert _aspect_error(cw, ch, ratio) < 0.08


def test_fields_parse_with_presets_and_clear_errors():
    assert parse_placement() == Placement() and Placement().is_default
    p = parse_placement(formats="9x16, 1:1,9:16", fit="PAD", loudness="-14 LUFS")
    assert p == Placement(("9:16", "1:1"), "pad", "center", -14.0)
    assert parse_placement(formats=["4:5"]).formats == ("4:5",)
    feed = parse_placement(preset="feed")
    assert (feed.formats, feed.fit, feed.loudness) == (("1:1", "4:5"), "pad", -14.0)
    # What is given besides the preset wins over it.
    assert parse_placement(preset="tiktok", loudness="-18").loudness == -18.0
    assert parse_placement(preset="reels", fit="pad").fit == "pad"
    assert parse_placement(preset="tiktok", loudness="off").loudness is None
    for bad in ({"formats": "3:2"}, {"fit": "stretch"}, {"focus": "middle"},
                {"loudness": "loud"}, {"loudness": "-80"}, {"loudness": "0"},
                {"preset": "vine"}):
        with pytest.raises(FormatError):
            parse_placement(**bad)
    assert Placement.from_dict(p.to_dict()) == p and Placement.from_dict(None) == Placement()


def test_crop_focus_moves_the_window():
    args = ("9:16", "crop")
    left = formats.format_filters(*args, "left", 1280, 720, "[a]", "[b]", "t")
    right = formats.format_filters(*args, "right", 1280, 720, "[a]", "[b]", "t")
    centre = formats.format_filters(*args, "center", 1280, 720, "[a]", "[b]", "t")
    assert left == ["[a]crop=406:720:0:0,setsar=1[b]"]
    assert right == ["[a]crop=406:720:874:0,setsar=1[b]"]
    assert centre == ["[a]crop=406:720:436:0,setsar=1[b]"]


# -- through the server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    return [make_clip(d, "land.mp4", size="320x180", seconds=1.0, fps=15),
            make_clip(d, "tall.mp4", size="180x320", seconds=1.0, fps=15, audio=False)]


def _sar(path) -> float:
    import av

    with av.open(str(path)) as f:
        ratio = f.streams.video[0].sample_aspect_ratio
    return float(ratio) if ratio else 1.0


def _files(*paths):
    return [("videos", (p.name, p.read_bytes(), "video/mp4")) for p in paths]


def _runs(srv, video_id: str) -> list[str]:
    with sqlite3.connect(srv.data_dir / "refresher.db") as db:
        return [r[0] for r in db.execute(
            "SELECT command FROM ffmpeg_runs WHERE video_id=? ORDER BY id", (video_id,))]


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_every_format_from_landscape_and_portrait_in_one_render(server, shaped, fit, tmp_path):
    shapes = ["source", "9:16", "1:1", "4:5", "16:9"]
    with server.client() as c:
        r = c.post("/api/jobs", files=_files(*shaped),
                   data={"variations": "2", "formats": ",".join(shapes), "fit": fit,
                         "seed": "shapes"})
        assert r.status_code == 202, r.text
        done = wait_job(c, r.json()["jobId"])
        assert done["status"] == "completed", done
        assert done["placement"] == {"formats": shapes, "fit": fit, "focus": "center",
                                     "loudness": None}
        for video, source in zip(done["videos"], shaped, strict=True):
            src = probe(source)
            outs = video["outputs"]
            assert [(o["variation"], o["format"]) for o in outs] == [
                (i, f) for i in range(2) for f in shapes]
            stem = source.stem
            assert [o["name"] for o in outs] == [
                f"{stem}_v0{i + 1}{'' if f == 'source' else '_' + f.replace(':', 'x')}.mp4"
                for i in range(2) for f in shapes]
            for o in outs:
                path = tmp_path / o["name"]
                got = c.get(o["url"])
                assert got.status_code == 200
                path.write_bytes(got.content)
                info = probe(path)
                w, h = info.display_width, info.display_height
                assert (w, h) == (o["width"], o["height"])
                assert w % 2 == 0 and h % 2 == 0
                if o["format"] == "source":
                    assert (w, h) == (src.display_width, src.display_height)
                else:
                    rw, rh = formats.RATIOS[o["format"]]
                    assert abs((w / h) / (rw / rh) - 1) < 0.01, (o["name"], w, h)
                    if fit == "crop":  # cut from the picture: never larger than it
                        assert w <= src.display_width and h <= src.display_height
                    else:  # the canvas's long side is the source's
                        assert max(w, h) in range(max(src.display_width, src.display_height) - 4,
                                                  max(src.display_width, src.display_height) + 1)
                assert info.has_audio is (stem == "land")
                # Square pixels, as the source's: players show the shape asked for.
                assert _sar(path) == 1, (o["name"], _sar(path))
                # Measured against the source in the same shape.
                assert o["distinctness"]["video"]["frames"] > 0, o
                assert o["previewUrl"]
            # One FFmpeg process decoded the source for every format (and one more per
            # re-roll round, which renders only the re-rolled variations, in all formats).
            runs = _runs(server, video["id"])
            rounds = max(o["distinctness"]["rerolls"] for o in outs)
            assert len(runs) == 1 + rounds
            assert runs[0].count(" -i ") == 1
            assert all(f"v0{i + 1}{'' if f == 'source' else '_' + f.replace(':', 'x')}.mp4.part"
                       in runs[0] for i in range(2) for f in shapes)
        z = zipfile.ZipFile(io.BytesIO(c.get(f"/api/jobs/{done['id']}/download").content))
        names = set(z.namelist())
        assert {f"land/{o['name']}" for o in done["videos"][0]["outputs"]} <= names
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["placement"]["formats"] == shapes
        assert {(v["variation"], v["format"]) for v in manifest["variations"]
                if v["source"] == "tall.mp4"} == {(i + 1, f) for i in range(2) for f in shapes}


def test_bad_placement_fields_are_400s_naming_the_field(server, shaped):
    cases = [({"formats": "3:2"}, "bad_formats"), ({"fit": "stretch"}, "bad_fit"),
             ({"focus": "middle"}, "bad_focus"), ({"loudness": "-99"}, "bad_loudness"),
             ({"preset": "vine"}, "bad_preset")]
    with server.client() as c:
        for fields, code in cases:
            r = c.post("/api/jobs", files=_files(shaped[0]), data=fields)
            assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
        assert c.get("/api/jobs").json()["jobs"] == []
        health = c.get("/api/health").json()
        assert health["formats"] == list(formats.RATIOS)
        assert {p["name"] for p in health["presets"]} == set(formats.PRESETS)
    assert not list((server.data_dir / "uploads").rglob("*.upload"))


def test_default_request_is_unchanged(server, shaped):
    with server.client() as c:
        job = c.post("/api/jobs", files=_files(shaped[0]), data={"variations": "1"}).json()
        done = wait_job(c, job["jobId"])
    (out,) = done["videos"][0]["outputs"]
    assert (out["name"], out["format"], out["variation"]) == ("land_v01.mp4", "source", 0)
    assert (out["width"], out["height"]) == (320, 180) and out.get("loudness") is None
    assert done["placement"] == Placement().to_dict()
    with sqlite3.connect(server.data_dir / "refresher.db") as db:
        (options,) = db.execute("SELECT options_json FROM jobs").fetchone()
    assert "placement" not in json.loads(options)


def _clip_with_channels(directory, name: str, layout: str, count: int):
    """A 1 s clip whose sound has ``count`` distinct channels in ``layout``."""
    import subprocess

    from pipeline.media.ffmpeg import find_ffmpeg

    tones = "|".join(f"0.2*sin({330 + 110 * k}*2*PI*t)" for k in range(count))
    out = directory / name
    done = subprocess.run([
        find_ffmpeg(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15:duration=1",
        "-f", "lavfi", "-i", f"aevalsrc={tones}:c={layout}:s=48000:d=1",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-shortest", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def test_outputs_keep_the_sources_channels(server, tmp_path):
    """Mono, stereo and 5.1 sound stay as they are in every output, with and without a second
    format and a loudness target (the fingerprint tap's mono branch once made them all mono)."""
    import av

    sources = [_clip_with_channels(tmp_path, f"{name}.mp4", layout, count)
               for name, layout, count in (("mono", "mono", 1), ("stereo", "stereo", 2),
                                           ("surround", "5.1", 6))]
    with server.client() as c:
        for fields in ({}, {"formats": "source,1:1", "loudness": "-16"}):
            job = c.post("/api/jobs", files=_files(*sources),
                         data={"variations": "2", **fields}).json()
            done = wait_job(c, job["jobId"])
            assert done["status"] == "completed", done
            for video, want in zip(done["videos"], (1, 2, 6), strict=True):
                for o in video["outputs"]:
                    path = tmp_path / o["name"]
                    path.write_bytes(c.get(o["url"]).content)
                    with av.open(str(path)) as f:
                        assert f.streams.audio[0].codec_context.channels == want, o["name"]


def test_storage_reservation_and_estimates_count_every_format(tmp_path):
    """A video of a job with 3 formats becomes 3 files per variation: the storage cap's
    reservation and the ETA's work count them all (a default job's stay as they were)."""
    from pipeline.state.store import Store

    store = Store(tmp_path / "jobs.db")
    try:
        for job_id, options in (("jd", {"exclude": []}),
                                ("jf", {"exclude": [], "placement": Placement(
                                    ("9:16", "1:1", "4:5")).to_dict()})):
            store.create_job(job_id=job_id, seed="s", variations=2, options=options, now=0.0,
                             videos=[{"id": f"v{job_id}", "name": "a.mp4", "upload_path": None,
                                      "size": 1000, "duration": 1.0, "info": {}}])
        assert sorted(store.pending_renders()) == [("jd", "vjd", 2000), ("jf", "vjf", 6000)]
        assert sorted((v.id, n) for v, n in store.pending_work()) == [("vjd", 2), ("vjf", 6)]
    finally:
        store.close()


def test_square_size_never_upscales():
    assert formats.square_size(240, 180, 4 / 3) == (240, 136)
    assert formats.square_size(240, 180, 0.75) == (180, 180)
    assert formats.square_size(1280, 720, 1.0) == (1280, 720)
    assert formats.output_size("source", "crop", 240, 180, 4 / 3) == (240, 180)
    assert formats.output_size("9:16", "pad", 240, 180, 4 / 3) == (134, 238)


def test_anamorphic_sources_come_out_in_the_shape_asked_for(server, tmp_path):
    """A 240×180 picture of 4:3 pixels (shown 320×180): every other shape is made in square
    pixels from the picture as it is shown, so it displays in the shape asked for; the source's
    shape keeps its pixels."""
    import subprocess

    from pipeline.media.ffmpeg import find_ffmpeg

    source = tmp_path / "dv.mp4"
    subprocess.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
                    "-f", "lavfi", "-i", "testsrc2=size=240x180:rate=15:duration=1",
                    "-vf", "setsar=4/3", "-c:v", "libx264", "-preset", "ultrafast",
                    str(source)], check=True)
    shapes = ["source", "9:16", "1:1", "16:9"]
    with server.client() as c:
        for fit in ("crop", "pad"):
            job = c.post("/api/jobs", files=_files(source),
                         data={"variations": "1", "formats": ",".join(shapes), "fit": fit}).json()
            done = wait_job(c, job["jobId"])
            assert done["status"] == "completed", done
            for o in done["videos"][0]["outputs"]:
                path = tmp_path / f"{fit}-{o['name']}"
                path.write_bytes(c.get(o["url"]).content)
                info = probe(path)
                shown = info.display_width * _sar(path) / info.display_height
                if o["format"] == "source":
                    assert abs(_sar(path) - 4 / 3) < 0.01 and abs(shown - 16 / 9) < 0.01
                else:
                    rw, rh = formats.RATIOS[o["format"]]
                    assert _sar(path) == 1 and abs(shown / (rw / rh) - 1) < 0.01, (o, shown)


def test_the_originals_strip_shows_its_own_shape(server, shaped):
    """With the source's shape among the formats, the original's strip shows it as it is, even
    when another shape comes first."""
    from PIL import Image

    with server.client() as c:
        job = c.post("/api/jobs", files=_files(shaped[0]),
                     data={"variations": "1", "formats": "9:16,source"}).json()
        done = wait_job(c, job["jobId"])
        video = done["videos"][0]
        original = Image.open(io.BytesIO(c.get(video["previewUrl"]).content))
        tall = Image.open(io.BytesIO(c.get(video["outputs"][0]["previewUrl"]).content))
    assert original.size[1] == 180  # frames of the 320×180 picture, at the strips' 320 wide
    assert tall.size[1] > original.size[1]
