"""Distinctness (pipeline/media/distinct.py): pure parts, then PDQ figures on real renders whose
frames the render itself tapped."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageDraw

from pipeline.media import distinct, pdq
from pipeline.media.command import build_render_command
from pipeline.media.distinct import Comparison, DistanceTable, Taps
from pipeline.media.effects import EffectOptions, sample_variations
from pipeline.media.effects import VariationParams as P
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe

FFMPEG = find_ffmpeg()
T = distinct.MATCH_THRESHOLD

# -- pure -------------------------------------------------------------------------------------------


def test_sample_times_avoid_the_ends_follow_the_speed_and_fit_short_clips():
    assert distinct.sample_times(8.0, 4) == [1.0, 3.0, 5.0, 7.0]
    assert len(distinct.sample_times(10.0)) == distinct.FRAME_COUNT == 16
    assert distinct.sample_times(0.0) == []
    # Content time 5 s of the source plays at 5/1.25 = 4 s in an output at speed 1.25.
    assert distinct.output_times([5.0], 1.25) == [pytest.approx(4.0 - distinct.TIME_SLACK)]
    # More than two frames of footage per target, so that no two targets pick the same frame.
    assert distinct.frame_count(10.0, 30.0) == 16
    assert distinct.frame_count(1.0, 30.0) == 14
    assert distinct.frame_count(1.0, 15.0) == 7
    assert distinct.frame_count(0.1, 30.0) == 1
    assert distinct.frame_count(1.0, None) == 16


def test_tap_size_filter_and_file_names():
    assert distinct.tap_size(1280, 720) == (320, 180)
    assert distinct.tap_size(1080, 1920) == (320, 568)
    assert distinct.tap_size(161, 121) == (320, 240)
    assert all(v % 2 == 0 for v in distinct.tap_size(333, 97))
    vf = distinct.tap_filter([1.0, 2.5], (320, 180))
    assert vf.count("gte(t") == 2 and "2.500000" in vf
    assert vf.endswith("scale=320:180:flags=area,format=rgb24")
    with pytest.raises(ValueError):
        distinct.tap_filter([], (320, 180))
    assert distinct.frames_path(Path("/o/v01.mp4.part")) == Path("/o/v01.frames.part")
    assert distinct.frames_path(Path("/o/v01.reroll2.mp4.part")) == Path("/o/v01.reroll2.frames.part")
    taps = Taps.plan(10.0, 30.0, 1920, 1080, [Path("a")], Path("s"))
    assert len(taps.times) == 16 and taps.size == (320, 180) and taps.outputs == (Path("a"),)


def test_read_frames_splits_a_tap():
    size = (4, 2)
    one = bytes(range(4 * 2 * 3))
    frames = distinct.read_frames(one * 2 + b"\0" * 5, size)
    assert len(frames) == 2 and frames[0].shape == (2, 4, 3)
    assert frames[1][1, 3].tolist() == [21, 22, 23]
    assert distinct.read_frames_file(None, size) == []
    assert distinct.read_frames_file(Path("/nonexistent/x.frames.part"), size) == []


def _picture(seed: int, w: int = 320, h: int = 180) -> np.ndarray:
    """Shapes of many colours on grey: edges everywhere, as in a real frame."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), (90, 90, 90))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(10, 80)), y0 + int(rng.integers(10, 60))]
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return np.asarray(im)


def test_frame_distance_ignores_mirrors():
    img, other = _picture(3), _picture(4)
    (a,) = distinct.frame_hashes([img])
    assert a.bits.shape == (8, 256) and a.quality >= distinct.MIN_QUALITY
    (mirrored,) = distinct.frame_hashes([img[:, ::-1]])
    (turned,) = distinct.frame_hashes([np.rot90(img)])
    (far,) = distinct.frame_hashes([other])
    assert distinct.frame_distance(a, a) == 0
    # TAP_WIDTH is 5 × 64: PDQ's downsampling is symmetric left to right, so a mirror is exact.
    assert distinct.frame_distance(a, mirrored) == distinct.frame_distance(mirrored, a) == 0
    assert distinct.frame_distance(a, turned) <= 2
    # Without the dihedral minimum a mirror is as far as an unrelated picture.
    mirror_bits = pdqhash.compute(np.ascontiguousarray(img[:, ::-1]))[0]
    assert int((pdqhash.compute(img)[0] != mirror_bits).sum()) > 3 * T
    assert distinct.frame_distance(a, far) > 3 * T


def test_frame_hashes_are_pdqhash_dihedral_hashes_bit_for_bit():
    """The 8 hashes taken from the wheel's DCT are those of ``pdqhash.compute_dihedral``, for
    every kind of frame: drawn pictures, their mirrors and turns (non-contiguous views), noise,
    flat frames (many equal coefficients), tap sizes of other shapes, and tiny frames."""
    rng = np.random.default_rng(7)
    frames = [_picture(k) for k in range(6)]
    frames += [frames[0][:, ::-1], frames[1][::-1], np.rot90(frames[2]), frames[3][::2, ::2]]
    frames += [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(3)]
    frames += [np.zeros((180, 320, 3), np.uint8), np.full((568, 320, 3), 200, np.uint8),
               np.repeat(np.repeat(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), 40, 0),
                         40, 1),
               rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)]
    got = distinct.frame_hashes(frames)
    assert len(got) == len(frames)
    for frame, h in zip(frames, got, strict=True):
        bits, quality = pdqhash.compute_dihedral(np.ascontiguousarray(frame))
        assert h.bits.dtype == bool and h.bits.shape == (8, 256)
        assert np.array_equal(h.bits, np.array(bits, dtype=bool))
        assert h.quality == quality
    assert distinct.frame_hashes([]) == ()


def test_pdq_dct_is_the_wheels_own_without_the_gil():
    """`pdq.dct` calls the wheel's C++ code itself (the GIL released): the same coefficients
    and quality as ``pdqhash.compute_float``, also from threads hashing side by side."""
    assert pdq.WITHOUT_GIL  # the wheel this project installs exports the function
    rng = np.random.default_rng(11)
    frames = [_picture(k) for k in range(4)] + [np.rot90(_picture(5)), _picture(6)[::-1, ::2]]
    frames += [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
               np.zeros((180, 320, 3), np.uint8), rng.integers(0, 256, (9, 6, 3), np.uint8)]
    expected = []
    for frame in frames:
        values, quality = pdqhash.compute_float(np.ascontiguousarray(frame))
        expected.append((np.asarray(values, np.float32), quality))
    for frame, (values, quality) in zip(frames, expected, strict=True):
        got, got_quality = pdq.dct(frame)
        assert got.dtype == np.float32 and np.array_equal(got, values)
        assert got_quality == quality
    with ThreadPoolExecutor(4) as pool:
        rounds = list(pool.map(lambda _: [pdq.dct(f) for f in frames], range(8)))
    for results in rounds:
        for (got, got_quality), (values, quality) in zip(results, expected, strict=True):
            assert np.array_equal(got, values) and got_quality == quality


def test_pdq_dct_falls_back_to_compute_float(monkeypatch):
    """Where the wheel does not export its C++ function, `pdq.dct` is ``compute_float``."""
    frame = _picture(8)
    fast = pdq.dct(frame)
    monkeypatch.setattr(pdq, "_FROM_FLOAT_LUMA", None)
    slow = pdq.dct(frame[:, ::-1][:, ::-1])  # a view, as callers may pass
    assert slow[0].dtype == np.float32
    assert np.array_equal(slow[0], fast[0]) and slow[1] == fast[1]


def test_compare_leaves_out_flat_frames_unless_all_are():
    detailed = distinct.frame_hashes([_picture(1), _picture(2), _picture(5)])
    flat = distinct.frame_hashes([np.zeros((180, 320, 3), np.uint8)])
    assert flat[0].quality < distinct.MIN_QUALITY
    c = distinct.compare(detailed, (detailed[0], flat[0], detailed[2]))
    assert c == Comparison((0, 0))  # the black frame says nothing either way
    only_flat = distinct.compare(flat, flat)
    assert only_flat == Comparison((0,))
    assert distinct.compare(detailed, ()) is None
    assert distinct.compare(detailed[:2], detailed) == Comparison((0, 0))
    assert Comparison((10, 40, 20, 90)).median == 20  # the lower median: a measured one
    assert Comparison((10, 40, 31, 32)).matches(31) == 2


def _table(source, siblings, threshold=T):
    def c(v):
        return None if v is None else Comparison(tuple(v))
    return DistanceTable(tuple(c(s) for s in source), tuple(tuple(c(x) for x in r) for r in siblings),
                         threshold)


FAR4 = (80, 90, 100, 110)


def test_report_shape_and_what_is_too_close():
    t = _table([FAR4, (10, 90, 90, 90), FAR4],
               [[None, FAR4, (40, 20, 60, 80)], [FAR4, None, (50, 50, 50, 50)],
                [(40, 20, 60, 80), (50, 50, 50, 50), None]])
    assert t.report(0) == {
        "video": {"metric": "pdq", "frames": 4, "sourceMatches": 0, "sourceDistance": 90,
                  "siblingMatches": 1, "siblingDistance": 40},
        "audio": None, "rerolls": 0,
    }
    assert t.report(1, rerolls=2)["rerolls"] == 2
    assert t.report(1)["video"]["sourceMatches"] == 1
    # The worst sibling of 1: no matches either way, then the smaller median (50 < 90).
    assert t.report(1)["video"]["siblingDistance"] == 50
    # 1 matches its source; of the matching pair (0, 2) the later one goes.
    assert t.too_close() == [1, 2]
    assert t.score(0) == (-1, 40) and t.score(1) == (-1, 50)
    assert t.score(0) < _table([FAR4], [[None]]).score(0)
    # Nothing is within -1 bits: matching, and so re-rolling, is off.
    off = _table([FAR4, (0, 0, 0, 0)], [[None, (0,)], [(0,), None]], -1)
    assert off.too_close() == [] and off.report(1)["video"]["sourceMatches"] == 0
    # Re-rolling one of a matching pair is enough: a pair where one side already goes is settled.
    t = _table([(0,), FAR4], [[None, (0,)], [(0,), None]])
    assert t.too_close() == [0]
    alone = _table([FAR4], [[None]])
    assert alone.report(0)["video"]["siblingMatches"] is None
    assert alone.report(0)["video"]["siblingDistance"] is None and alone.too_close() == []
    unmeasured = _table([None, None], [[None, None], [None, None]], 256)
    assert unmeasured.too_close() == [] and unmeasured.report(0) is None


def test_replacing_one_variation_remeasures_like_a_fresh_table():
    seeds = iter(range(100, 200))

    def clip():
        return distinct.frame_hashes([_picture(next(seeds)) for _ in range(3)])

    source, variations = clip(), [clip() for _ in range(4)]
    table = DistanceTable.measure(source, variations)
    variations[2] = clip()
    assert table.replaced(2, source, variations) == DistanceTable.measure(source, variations)


# -- real renders -------------------------------------------------------------------------------


def textured_clip(d: Path, name: str = "life.mp4", seconds: float = 2.0, fps: int = 30,
                  size: str = "320x240", audio: bool = False) -> Path:
    """Game-of-life cells with coloured mould: detail everywhere, as a real frame has (the test
    pattern's large flat areas let a small zoom keep a few frames within the threshold), and
    a tone when ``audio``."""
    out = d / name
    args = ["-f", "lavfi", "-i",
            f"life=size={size}:rate={fps}:seed=7:ratio=0.3:mold=6:mold_color=#3070a0"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                 "-c:a", "aac", "-b:a", "64k"]
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", *args,
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-g", str(fps), "file:" + str(out)],
                   check=True, capture_output=True, timeout=60)
    return out


VARIANTS = {
    "same": P(),
    "mirror": P(mirror=True),
    "speed": P(speed=1.05),
    # Colour, grain and tempo leave the picture alone: PDQ sees the same picture.
    "subtle": P(speed=0.95, mirror=True, brightness=0.04, contrast=1.06, noise=1, noise_seed=3),
    "left": P(zoom=1.08, pan_x=0.0, pan_y=0.0),
    "right": P(zoom=1.08, pan_x=1.0, pan_y=1.0, speed=1.06),
    "tilted": P(zoom=1.10, rotation_deg=0.8, mirror=True, speed=1.03),
}
DEFAULTS = sample_variations("distinct", 0, 5, EffectOptions())


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    d = tmp_path_factory.mktemp("distinct")
    source = textured_clip(d)
    info = probe(source)
    names = [*VARIANTS, *(f"default{i}" for i in range(len(DEFAULTS)))]
    params = [*VARIANTS.values(), *DEFAULTS]
    outs = [d / f"{name}.mp4" for name in names]
    taps = Taps.plan(info.duration, info.fps, info.display_width, info.display_height,
                     [distinct.frames_path(o) for o in outs], d / "source.frames")
    subprocess.run(build_render_command(FFMPEG, source, info, params, outs, taps=taps),
                   check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    source_hashes = distinct.frame_hashes(distinct.read_frames_file(taps.source, taps.size))
    hashes = {name: distinct.frame_hashes(distinct.read_frames_file(path, taps.size))
              for name, path in zip(names, taps.outputs, strict=True)}
    # The speed-changed output's frames at the source's times, to show that alignment matters.
    right = outs[names.index("right")]
    raw = subprocess.run(distinct.sample_command(FFMPEG, right, taps.times, taps.size),
                         capture_output=True, check=True).stdout
    unaligned = distinct.frame_hashes(distinct.read_frames(raw, taps.size))
    return source_hashes, hashes, unaligned


def test_copies_mirrors_tempo_and_colour_changes_match_the_source(measured):
    source, hashes, _ = measured
    assert len(source) == distinct.FRAME_COUNT
    for name in ("same", "mirror", "speed", "subtle"):
        assert len(hashes[name]) == distinct.FRAME_COUNT, name
        c = distinct.compare(source, hashes[name])
        assert c.matches(T) == distinct.FRAME_COUNT and c.median <= 8, (name, c)
    assert distinct.compare(hashes["same"], hashes["mirror"]).matches(T) == distinct.FRAME_COUNT


def test_real_variations_match_neither_the_source_nor_each_other(measured):
    source, hashes, unaligned = measured
    names = ("left", "right", "tilted", *(f"default{i}" for i in range(len(DEFAULTS))))
    for name in names:
        c = distinct.compare(source, hashes[name])
        assert c.matches(T) == 0 and c.median > 2 * T, (name, c)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert distinct.compare(hashes[a], hashes[b]).matches(T) == 0, (a, b)
    table = DistanceTable.measure(source, [hashes[n] for n in names])
    assert table.too_close() == []
    assert all(table.report(k)["video"]["sourceMatches"] == 0 for k in range(len(names)))
    # Content times matter: frames taken at the source's times from a sped-up output differ.
    aligned = distinct.compare(hashes["right"], unaligned)
    assert aligned is not None and aligned.median > T

