"""The runner's verification step (pipeline/media/quality.py): re-rolls, bounded and recorded."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from contextlib import ExitStack

import pytest
import trio

from pipeline.media import quality
from pipeline.media.command import build_render_command
from pipeline.media.effects import EffectOptions, VariationParams, distance, reroll_variation
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe
from pipeline.media.verify import VerificationFailed
from tests.clips import make_clip
from tests.server import wait_job

FFMPEG = find_ffmpeg()
ZOOMED = VariationParams(zoom=1.09, pan_x=0.0, pan_y=1.0, speed=1.04)


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
    clip = make_clip(d, "src.mp4", seconds=1.0, size="240x160", fps=15)
    return clip, probe(clip)


async def _check(source, tmp_path, variations, min_distance, **kw):
    clip, info = source
    parts = [tmp_path / f"v{i + 1:02d}.mp4.part" for i in range(len(variations))]
    calls: list[list[str]] = []

    async def rerender(params, paths):
        calls.append([p.name for p in paths])
        await trio.run_process(build_render_command(FFMPEG, clip, info, params, paths),
                               capture_stdout=True, capture_stderr=True)

    await trio.run_process(build_render_command(FFMPEG, clip, info, variations, parts),
                           capture_stdout=True, capture_stderr=True)
    cleanup = ExitStack()
    checked = await quality.check_outputs(
        _rendered(clip, info, variations, parts), min_distance=min_distance, rerender=rerender,
        cleanup=cleanup, **kw,
    )
    return checked, calls, cleanup


def _rendered(clip, info, variations, parts) -> quality.Rendered:
    return quality.Rendered(
        ffmpeg=FFMPEG, source=clip, info=info, variations=tuple(variations), parts=tuple(parts),
        names=tuple(f"src_v{i + 1:02d}.mp4" for i in range(len(variations))),
        seeds=tuple(f"s:0:{i}" for i in range(len(variations))), job_seed="s", video_index=0,
        options=EffectOptions(),
    )


def _left_after(cleanup: ExitStack, folder) -> list[str]:
    """The files left in ``folder`` once the runner's clean-up ran (an attempt that failed)."""
    cleanup.close()
    return sorted(p.name for p in folder.iterdir())


async def test_no_reroll_when_every_variation_is_distinct(source, tmp_path):
    checked, calls, cleanup = await _check(source, tmp_path, [ZOOMED], 4)
    assert calls == [] and _left_after(cleanup, tmp_path) == ["v01.mp4.part"]
    (v,) = checked
    assert v.params == ZOOMED and v.seed == "s:0:0" and v.part.name == "v01.mp4.part"
    assert v.distance["source"] >= 4 and v.distance["rerolls"] == 0
    assert v.distance["siblingsMin"] is None


async def test_a_copy_of_the_source_is_rerolled_and_replaced(source, tmp_path):
    checked, calls, _ = await _check(source, tmp_path, [VariationParams(), ZOOMED], 4)
    assert calls and all(names == [f"v01.reroll{i + 1}.mp4.part"] for i, names in enumerate(calls))
    first, second = checked
    assert first.params != VariationParams() and ":reroll" in first.seed
    assert first.distance["source"] >= 2 and 1 <= first.distance["rerolls"] <= quality.MAX_REROLLS
    assert second.params == ZOOMED and second.distance["rerolls"] == 0
    # Only the kept files are left.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.part.name, "v02.mp4.part"])


async def test_source_thumbnails_from_the_render_are_used(source, tmp_path):
    from pipeline.media import distinct

    clip, info = source
    times = distinct.sample_times(info.duration)
    tapped = tmp_path / "tapped.raw"
    tapped.write_bytes(subprocess.run(distinct.source_command(FFMPEG, clip, times),
                                      capture_output=True, check=True).stdout)
    black = tmp_path / "black.raw"
    black.write_bytes(bytes(len(times) * distinct.THUMB ** 2))
    figures = {}
    for name, path in [("tapped", tapped), ("missing", tmp_path / "nope.raw"), ("black", black),
                       ("short", None)]:
        if name == "short":
            path = tmp_path / "short.raw"
            path.write_bytes(tapped.read_bytes()[:distinct.THUMB ** 2])  # one of five
        d = tmp_path / name
        d.mkdir()
        checked, _, _ = await _check(source, d, [ZOOMED], 0, source_thumbnails=path)
        figures[name] = checked[0].distance["source"]
    # A missing or short file is sampled from the source again: the same figure as the tap.
    assert figures["missing"] == figures["short"] == figures["tapped"]
    # A file that holds other pictures is what the figure is measured against.
    assert figures["black"] != figures["tapped"]


async def test_rerolls_are_bounded_and_recorded(source, tmp_path):
    # No variation can be 64 apart: every round re-rolls all of them, and then it stops.
    checked, calls, cleanup = await _check(source, tmp_path, [ZOOMED, VariationParams(mirror=True)],
                                           64, max_rerolls=2)
    assert calls == [["v01.reroll1.mp4.part", "v02.reroll1.mp4.part"],
                     ["v01.reroll2.mp4.part", "v02.reroll2.mp4.part"]]
    assert [v.distance["rerolls"] for v in checked] == [2, 2]
    assert len(list(tmp_path.iterdir())) == 2 and all(v.part.exists() for v in checked)
    # Every re-roll's part is on the clean-up stack: only the first render's parts outlive it.
    kept = {v.part.name for v in checked}
    assert set(_left_after(cleanup, tmp_path)) == kept - {n for names in calls for n in names}


async def test_a_broken_output_fails_the_step(source, tmp_path):
    clip, info = source
    part = tmp_path / "v01.mp4.part"
    subprocess.run([FFMPEG, "-v", "error", "-i", str(clip), "-c", "copy", "-movflags", "+faststart",
                    "-f", "mp4", str(part)], check=True)  # source metadata kept
    with pytest.raises(VerificationFailed, match="src_v01.mp4 still carries metadata"):
        await quality.check_outputs(_rendered(clip, info, [VariationParams()], [part]),
                                    min_distance=4, rerender=None, cleanup=ExitStack())


def test_distances_reach_the_job_api_and_the_manifest(make_server, source):
    srv = make_server({"VR_MIN_DISTANCE": "64"})  # forces the re-roll path end to end
    clip, _ = source
    with srv.client() as c:
        r = c.post("/api/jobs", files=[("videos", ("promo.mp4", clip.read_bytes(), "video/mp4"))],
                   data={"variations": "2", "seed": "q"})
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["jobId"])
        assert job["status"] == "completed", job
        outputs = job["videos"][0]["outputs"]
        for o in outputs:
            assert set(o["distance"]) == {"source", "siblingsMin", "siblingsMedian", "rerolls"}
            assert o["distance"]["rerolls"] == quality.MAX_REROLLS
        zf = zipfile.ZipFile(io.BytesIO(c.get(f"/api/jobs/{job['id']}/download").content))
    manifest = json.loads(zf.read("manifest.json"))
    assert [v["distance"] for v in manifest["variations"]] == [o["distance"] for o in outputs]
