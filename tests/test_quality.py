"""The runner's verification step (pipeline/media/quality.py): PDQ figures from the frames the
render tapped, re-rolls bounded and recorded, preview strips."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from contextlib import ExitStack

import av
import numpy as np
import pdqhash
import pytest
import trio
from PIL import Image

from pipeline.media import distinct, quality
from pipeline.media.command import build_render_command
from pipeline.media.effects import OPT_IN, EffectOptions, VariationParams, distance, reroll_variation
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe
from pipeline.media.verify import VerificationFailed
from tests.server import wait_job
from tests.test_distinct import textured_clip

FFMPEG = find_ffmpeg()
T = distinct.MATCH_THRESHOLD
ZOOMED = VariationParams(zoom=1.09, pan_x=0.0, pan_y=1.0, speed=1.04)
FIGURE_KEYS = {"metric", "frames", "sourceMatches", "sourceDistance", "siblingMatches",
               "siblingDistance"}


def test_reroll_is_deterministic_new_and_keeps_away_from_what_it_avoids():
    opts = EffectOptions()
    first = reroll_variation("s", 0, 3, 1, opts)
    assert first == reroll_variation("s", 0, 3, 1, opts)
    assert first != reroll_variation("s", 0, 3, 2, opts) != reroll_variation("s", 1, 3, 1, opts)
    avoid = [first]
    assert distance(reroll_variation("s", 0, 3, 2, opts, avoid=avoid), first) >= 0.35
    assert not reroll_variation("s", 0, 3, 1, EffectOptions(exclude=frozenset({"mirror"}))).mirror
    with pytest.raises(ValueError):
        reroll_variation("s", 0, 3, 0, opts)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("quality")
    clip = textured_clip(d, "src.mp4", seconds=1.2, fps=30, size="240x160", audio=True)
    return clip, probe(clip)


async def _check(source, tmp_path, variations, *, tapped=True, options=None, **kw):
    """Render ``variations`` as the runner does (frames tapped unless ``tapped`` is false)
    and run the step; returns its result, the re-renders' part names, and the clean-up stack."""
    clip, info = source
    parts = [tmp_path / f"v{i + 1:02d}.mp4.part" for i in range(len(variations))]
    taps = quality.plan_taps(info, parts, tmp_path / "source.frames.part") if tapped else None
    calls: list[list[str]] = []

    async def rerender(params, paths, frames):
        calls.append([p.name for p in paths])
        assert frames.source is None and len(frames.outputs) == len(paths)
        await trio.run_process(build_render_command(FFMPEG, clip, info, params, paths, taps=frames),
                               capture_stdout=True, capture_stderr=True)

    await trio.run_process(build_render_command(FFMPEG, clip, info, variations, parts, taps=taps),
                           capture_stdout=True, capture_stderr=True)
    cleanup = ExitStack()
    checked = await quality.check_outputs(
        _rendered(clip, info, variations, parts, taps, options), rerender=rerender,
        cleanup=cleanup, **kw,
    )
    return checked, calls, cleanup


def _rendered(clip, info, variations, parts, taps=None, options=None, full_decode=False,
              ) -> quality.Rendered:
    return quality.Rendered(
        ffmpeg=FFMPEG, source=clip, info=info, variations=tuple(variations), parts=tuple(parts),
        names=tuple(f"src_v{i + 1:02d}.mp4" for i in range(len(variations))),
        seeds=tuple(f"s:0:{i}" for i in range(len(variations))), job_seed="s", video_index=0,
        options=options or EffectOptions(), taps=taps, full_decode=full_decode,
    )


def _left_after(cleanup: ExitStack, folder) -> list[str]:
    """The files left in ``folder`` once the runner's clean-up ran (an attempt that failed)."""
    cleanup.close()
    return sorted(p.name for p in folder.iterdir())


def _jpeg_size(data: bytes) -> tuple[int, int]:
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG"
    return im.size


async def test_no_reroll_when_every_variation_is_distinct(source, tmp_path):
    result, calls, cleanup = await _check(source, tmp_path, [ZOOMED])
    assert calls == []
    (v,) = result.variations
    assert v.params == ZOOMED and v.seed == "s:0:0" and v.part.name == "v01.mp4.part"
    frames = len(quality.plan_taps(source[1]).times)
    assert v.distance == {
        "video": {"metric": "pdq", "frames": frames, "sourceMatches": 0,
                  "sourceDistance": v.distance["video"]["sourceDistance"],
                  "siblingMatches": None, "siblingDistance": None},
        "audio": None, "rerolls": 0,
    }
    assert v.distance["video"]["sourceDistance"] > 2 * T
    # Preview strips of four tapped frames, 320 px each.
    assert _jpeg_size(v.preview)[0] == _jpeg_size(result.source_preview)[0] == 4 * 320 + 3 * 4
    assert "v01.mp4.part" in _left_after(cleanup, tmp_path)


async def test_a_copy_of_the_source_is_rerolled_and_replaced(source, tmp_path):
    result, calls, _ = await _check(source, tmp_path, [VariationParams(), ZOOMED])
    assert calls and all(names == [f"v01.reroll{i + 1}.mp4.part"] for i, names in enumerate(calls))
    first, second = result.variations
    assert first.params != VariationParams() and ":reroll" in first.seed
    assert first.distance["video"]["sourceMatches"] == 0
    assert first.distance["video"]["siblingMatches"] == 0
    assert 1 <= first.distance["rerolls"] <= quality.MAX_REROLLS
    assert second.params == ZOOMED and second.distance["rerolls"] == 0
    # Only the kept files are left: no loser, no frame tap of a re-roll.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".mp4.part")) == sorted(
        [first.part.name, "v02.mp4.part"])
    assert not list(tmp_path.glob("*.reroll*.frames.part"))


async def test_speed_only_variations_measure_as_matching_their_source(source, tmp_path):
    # What a request without zoom, colour, grain and mirror would get (the API refuses it; the
    # measure must still say what it is): every frame a copy of the source's.
    options = EffectOptions(exclude=OPT_IN | {"zoom", "color", "noise", "mirror"})
    fresh = reroll_variation("s", 0, 1, 1, options)
    assert (fresh.zoom, fresh.mirror, fresh.noise, fresh.brightness) == (1.0, False, 0, 0.0)
    result, calls, _ = await _check(source, tmp_path, [VariationParams(speed=1.05), fresh],
                                    options=options)
    for v in result.variations:
        figures = v.distance["video"]
        assert figures["sourceMatches"] == figures["frames"] > 0, figures
        assert figures["sourceDistance"] <= 6 and figures["siblingMatches"] == figures["frames"]
        # Re-rolls cannot help (every draw is a copy): both rounds taken, all recorded.
        assert v.distance["rerolls"] == quality.MAX_REROLLS
    assert len(calls) == quality.MAX_REROLLS


def _pdq_at(path, times, size, dihedral=False) -> list:
    """PDQ straight from ``pdqhash`` on frames PyAV decodes from a finished file: the first
    frame at or after each time, scaled to ``size``."""
    out, wanted = [], list(times)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            while wanted and frame.time >= wanted[0]:
                wanted.pop(0)
                rgb = frame.reformat(width=size[0], height=size[1], format="rgb24",
                                     interpolation="AREA").to_ndarray()
                rgb = np.ascontiguousarray(rgb)
                out.append(pdqhash.compute_dihedral(rgb)[0] if dihedral else pdqhash.compute(rgb)[0])
    return out


async def test_figures_agree_with_pdq_of_the_finished_files(source, tmp_path):
    clip, info = source
    variations = [ZOOMED, VariationParams(speed=0.96, mirror=True),
                  VariationParams(zoom=1.06, pan_x=1.0, pan_y=0.2, mirror=True, speed=1.05)]
    result, _, _ = await _check(source, tmp_path, variations, max_rerolls=0)
    taps = quality.plan_taps(info)
    src = _pdq_at(clip, taps.times, taps.size, dihedral=True)
    outs = [_pdq_at(v.part, distinct.output_times(taps.times, v.params.speed), taps.size)
            for v in result.variations]
    assert len(src) == len(taps.times) and all(len(o) == len(src) for o in outs)

    def dist(a, dihedral):
        return min(int((a != h).sum()) for h in dihedral)

    for i, v in enumerate(result.variations):
        mine = [dist(outs[i][k], src[k]) for k in range(len(src))]
        figures = v.distance["video"]
        assert figures["frames"] == len(mine)
        assert figures["sourceMatches"] == sum(d <= T for d in mine), (i, mine)
        assert abs(figures["sourceDistance"] - sorted(mine)[(len(mine) - 1) // 2]) <= 6, (i, mine)
    # The mirrored copy matches the source through the dihedral minimum, frame by frame.
    mirrored = [dist(outs[1][k], src[k]) for k in range(len(src))]
    assert max(mirrored) <= T // 2 and result.variations[1].distance["video"]["sourceMatches"] == len(src)
    plain = [int((outs[1][k] != src[k][0]).sum()) for k in range(len(src))]
    assert min(plain) > 2 * T  # without the minimum it would look like another picture


async def test_frames_missing_from_the_render_are_sampled_from_the_files(source, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tapped, _, _ = await _check(source, tmp_path / "a", [ZOOMED], max_rerolls=0)
    sampled, _, _ = await _check(source, tmp_path / "b", [ZOOMED], tapped=False, max_rerolls=0)
    a, b = tapped.variations[0].distance["video"], sampled.variations[0].distance["video"]
    assert a["frames"] == b["frames"] and a["sourceMatches"] == b["sourceMatches"] == 0
    assert abs(a["sourceDistance"] - b["sourceDistance"]) <= 6
    assert sampled.variations[0].preview and sampled.source_preview


async def test_source_frames_from_the_render_are_used(source, tmp_path):
    clip, info = source
    taps = quality.plan_taps(info)
    w, h = taps.size
    good = subprocess.run(distinct.sample_command(FFMPEG, clip, taps.times, taps.size),
                          capture_output=True, check=True).stdout
    figures = {}
    for name, data in [("tapped", good), ("missing", None), ("black", bytes(len(good))),
                       ("short", good[: w * h * 3])]:
        d = tmp_path / name
        d.mkdir()
        parts = [d / "v01.mp4.part"]
        frames = quality.plan_taps(info, parts, d / "given.frames")
        subprocess.run(build_render_command(FFMPEG, clip, info, [ZOOMED], parts, taps=frames),
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        (d / "given.frames").unlink()
        if data is not None:
            (d / "given.frames").write_bytes(data)
        result = await quality.check_outputs(
            _rendered(clip, info, [ZOOMED], parts, frames), rerender=None,
            cleanup=ExitStack(), max_rerolls=0)
        figures[name] = result.variations[0].distance["video"]["sourceDistance"]
    # A missing or short file is sampled from the source again: the same figure as the tap.
    assert figures["missing"] == figures["short"] == figures["tapped"]
    # A file that holds other pictures is what the figure is measured against.
    assert figures["black"] != figures["tapped"]


async def test_rerolls_are_bounded_and_recorded(source, tmp_path):
    # Every frame is within 256 bits of every other: each round re-rolls all of them, then stops.
    result, calls, cleanup = await _check(source, tmp_path, [ZOOMED, VariationParams(mirror=True)],
                                          match_threshold=256, max_rerolls=2)
    assert calls == [["v01.reroll1.mp4.part", "v02.reroll1.mp4.part"],
                     ["v01.reroll2.mp4.part", "v02.reroll2.mp4.part"]]
    checked = result.variations
    assert [v.distance["rerolls"] for v in checked] == [2, 2]
    assert all(v.distance["video"]["sourceMatches"] == v.distance["video"]["frames"] for v in checked)
    mp4s = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".mp4.part"))
    assert len(mp4s) == 2 and all(v.part.exists() for v in checked)
    assert not list(tmp_path.glob("*.reroll*.frames.part"))
    # Every re-roll's part is on the clean-up stack: only the first render's parts outlive it.
    kept = {v.part.name for v in checked}
    left = set(_left_after(cleanup, tmp_path))
    assert {n for n in left if n.endswith(".mp4.part")} == kept - {n for names in calls for n in names}


async def test_a_broken_output_fails_the_step(source, tmp_path):
    clip, info = source
    part = tmp_path / "v01.mp4.part"
    subprocess.run([FFMPEG, "-v", "error", "-i", str(clip), "-c", "copy", "-movflags", "+faststart",
                    "-metadata", "title=kept", "-f", "mp4", str(part)], check=True)
    with pytest.raises(VerificationFailed, match="src_v01.mp4 still carries metadata"):
        await quality.check_outputs(_rendered(clip, info, [VariationParams()], [part]),
                                    rerender=None, cleanup=ExitStack())


@pytest.mark.parametrize("full_decode", [False, True])
async def test_damaged_pictures_fail_the_step_in_either_verify_mode(source, tmp_path, full_decode):
    clip, info = source
    part = tmp_path / "v01.mp4.part"
    await trio.run_process(build_render_command(FFMPEG, clip, info, [ZOOMED], [part]),
                           capture_stdout=True, capture_stderr=True)
    with av.open(str(part)) as c:  # the first keyframe's bytes
        pos, size = next((p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.is_keyframe)
    data = bytearray(part.read_bytes())
    data[pos + size // 2:pos + size // 2 + 8] = bytes(8)
    part.write_bytes(bytes(data))
    with pytest.raises(VerificationFailed, match="^src_v01.mp4 does not decode cleanly"):
        await quality.check_outputs(
            _rendered(clip, info, [ZOOMED], [part], full_decode=full_decode),
            rerender=None, cleanup=ExitStack())


def test_a_job_completes_with_every_frame_decoded(make_server, source):
    srv = make_server({"VR_VERIFY": "full"})
    with srv.client() as c:
        r = c.post("/api/jobs", files=[("videos", ("promo.mp4", source[0].read_bytes(), "video/mp4"))],
                   data={"variations": "2"})
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["jobId"])
    assert job["status"] == "completed", job
    assert len(job["videos"][0]["outputs"]) == 2


def test_figures_and_previews_reach_the_job_api_the_manifest_and_the_disk(make_server, source):
    srv = make_server({"VR_PDQ_MATCH": "256"})  # forces the re-roll path end to end
    clip, _ = source
    with srv.client() as c:
        r = c.post("/api/jobs", files=[("videos", ("promo.mp4", clip.read_bytes(), "video/mp4"))],
                   data={"variations": "2", "seed": "q"})
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["jobId"])
        assert job["status"] == "completed", job
        outputs = job["videos"][0]["outputs"]
        for o in outputs:
            assert set(o["distinctness"]) == {"video", "audio", "rerolls"}
            assert set(o["distinctness"]["video"]) == FIGURE_KEYS
            assert o["distinctness"]["rerolls"] == quality.MAX_REROLLS
        zf = zipfile.ZipFile(io.BytesIO(c.get(f"/api/jobs/{job['id']}/download").content))
    manifest = json.loads(zf.read("manifest.json"))
    assert [v["distinctness"] for v in manifest["variations"]] == [o["distinctness"] for o in outputs]
    (folder,) = (srv.data_dir / "outputs" / job["id"]).iterdir()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["source.preview.jpg", "v01.mp4", "v01.preview.jpg", "v02.mp4",
                     "v02.preview.jpg"]
    assert _jpeg_size((folder / "v01.preview.jpg").read_bytes())[0] >= 320
