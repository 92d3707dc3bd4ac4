"""Distinctness (pipeline/media/distinct.py): pure parts, then pHash distances on real renders."""

from __future__ import annotations

import subprocess

import imagehash
import numpy as np
import pytest
import trio

from pipeline.media import distinct, verify
from pipeline.media.command import build_render_command
from pipeline.media.distinct import DistanceTable
from pipeline.media.effects import VariationParams as P
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe
from tests.clips import make_clip

FFMPEG = find_ffmpeg()

# -- pure -------------------------------------------------------------------------------------------


def test_sample_times_avoid_the_ends_and_follow_the_speed():
    assert distinct.sample_times(10.0) == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert distinct.sample_times(0.0) == []
    # Content time 5 s of the source plays at 5/1.25 = 4 s in an output at speed 1.25.
    assert distinct.output_times([5.0], 1.25) == [pytest.approx(4.0 - distinct.TIME_SLACK)]


def test_tap_args_select_one_frame_per_time_and_thumbnails_split_its_output():
    args = distinct.tap_args([1.0, 2.5])
    vf = args[args.index("-vf") + 1]
    assert vf.count("gte(t") == 2 and "2.500000" in vf and f"scale={distinct.THUMB}" in vf
    assert args[-1] == "pipe:1"
    size = distinct.THUMB * distinct.THUMB
    thumbs = distinct.thumbnails(bytes(range(256)) * (2 * size // 256) + b"\0" * 10)
    assert len(thumbs) == 2 and thumbs[0].size == (distinct.THUMB, distinct.THUMB)


def _table(source, siblings):
    return DistanceTable(source=tuple(source), siblings=tuple(tuple(r) for r in siblings))


def test_report_and_what_is_too_close():
    t = _table([14, 2, 10], [[None, 12, 3], [12, None, 20], [3, 20, None]])
    assert t.report(0) == {"source": 14, "siblingsMin": 3, "siblingsMedian": 7.5, "rerolls": 0}
    assert t.report(1, rerolls=2)["rerolls"] == 2
    # 1 is too close to the source; of the close pair (0, 2) the later one goes.
    assert t.too_close(4) == [1, 2]
    assert t.too_close(2) == []
    assert t.too_close(0) == []  # 0 turns re-rolls off
    assert t.score(0) == 3 and t.score(1) == 2
    # Re-rolling one of a close pair is enough: a pair where one side already goes is settled.
    t = _table([2, 10], [[None, 0], [0, None]])
    assert t.too_close(4) == [0]
    alone = _table([8], [[None]])
    assert alone.report(0)["siblingsMin"] is None and alone.too_close(4) == []
    unmeasured = _table([None, None], [[None, None], [None, None]])
    assert unmeasured.too_close(64) == [] and unmeasured.report(0)["source"] is None


def test_hash_distance_ignores_mirrors_and_turns():
    rng = np.random.default_rng(3)
    img = distinct.Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8))
    other = distinct.Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8))
    a = distinct.frame_hashes([img] * 3)
    mirrored = distinct.frame_hashes([img.transpose(distinct.Image.Transpose.FLIP_LEFT_RIGHT)] * 3)
    turned = distinct.frame_hashes([img.transpose(distinct.Image.Transpose.ROTATE_90)] * 3)
    assert distinct.hash_distance(a, a) == 0
    assert distinct.hash_distance(a, mirrored) == 0 and distinct.hash_distance(mirrored, a) == 0
    assert distinct.hash_distance(a, turned) == 0
    far = distinct.hash_distance(a, distinct.frame_hashes([other] * 3))
    assert far >= 16
    assert imagehash.phash(img) - imagehash.phash(other) >= far
    assert distinct.hash_distance(a, []) is None


def test_replacing_one_variation_remeasures_like_a_fresh_table():
    rng = np.random.default_rng(5)

    def clip():
        return distinct.frame_hashes(
            [distinct.Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)) for _ in range(3)]
        )

    source, variations = clip(), [clip() for _ in range(4)]
    table = DistanceTable.measure(source, variations)
    variations[2] = clip()
    assert table.replaced(2, source, variations) == DistanceTable.measure(source, variations)


# -- real renders -------------------------------------------------------------------------------

VARIANTS = {
    "same": P(),
    "mirror": P(mirror=True),
    # Colour, grain and tempo leave the picture's layout alone: pHash does not count them.
    "subtle": P(speed=0.95, mirror=True, brightness=0.04, contrast=1.06, noise=7, noise_seed=3),
    "left": P(zoom=1.08, pan_x=0.0, pan_y=0.0),
    "right": P(zoom=1.08, pan_x=1.0, pan_y=1.0, speed=1.06),
    "tilted": P(zoom=1.10, rotation_deg=0.8, mirror=True, speed=1.03),
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return trio.run(_measure, tmp_path_factory.mktemp("distinct"))


async def _measure(d):
    source = make_clip(d, "src.mp4", seconds=2.0, size="320x240", fps=15, audio=False)
    info = probe(source)
    params = list(VARIANTS.values())
    outs = [d / f"{name}.mp4" for name in VARIANTS]
    subprocess.run(build_render_command(FFMPEG, source, info, params, outs), check=True,
                   capture_output=True, timeout=60)
    times = distinct.sample_times(info.duration)
    source_hashes = distinct.frame_hashes(await distinct.sample_source(FFMPEG, source, times))
    hashes = {}
    for name, p, out in zip(VARIANTS, params, outs, strict=True):
        raw = await verify.decode(FFMPEG, out, distinct.tap_args(distinct.output_times(times, p.speed)),
                                  has_audio=False)
        hashes[name] = distinct.frame_hashes(distinct.thumbnails(raw))
    # The same frames without accounting for the speed factor, to show that it matters.
    raw = await verify.decode(FFMPEG, outs[list(VARIANTS).index("right")], distinct.tap_args(times),
                              has_audio=False)
    unaligned = distinct.frame_hashes(distinct.thumbnails(raw))
    return source_hashes, hashes, unaligned


# On this clip (measured): same/mirror/subtle 0; the zoomed variations 12–24 from the source and
# from each other. The thresholds below leave margins both ways.
NEAR, FAR = 2, 8


def test_identical_and_mirrored_and_colour_only_variations_measure_about_zero(measured):
    source, hashes, _ = measured
    assert len(source) == distinct.SAMPLE_COUNT
    for name in ("same", "mirror", "subtle"):
        assert len(hashes[name]) == distinct.SAMPLE_COUNT
        assert distinct.hash_distance(source, hashes[name]) <= NEAR, name
    assert distinct.hash_distance(hashes["same"], hashes["mirror"]) <= NEAR


def test_real_variations_are_clearly_apart_from_the_source_and_each_other(measured):
    source, hashes, unaligned = measured
    names = ("left", "right", "tilted")
    for name in names:
        assert distinct.hash_distance(source, hashes[name]) >= FAR, name
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert distinct.hash_distance(hashes[a], hashes[b]) >= FAR, (a, b)
    table = DistanceTable.measure(source, [hashes[n] for n in VARIANTS])
    left, same = (table.report(list(VARIANTS).index(n)) for n in ("left", "same"))
    assert left["source"] >= FAR and left["siblingsMin"] >= FAR
    assert same["source"] <= NEAR and same["siblingsMin"] <= NEAR  # "mirror" is its twin
    assert table.too_close(4) == [0, 1, 2]  # the three that only re-encode the source's layout
    # Content times matter: frames taken at the source's times from a sped-up output differ.
    aligned = distinct.hash_distance(hashes["right"], unaligned)
    assert aligned is not None and aligned > NEAR
