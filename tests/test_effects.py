import json
import math
import re
from dataclasses import replace

import pytest

from pipeline.media import effects
from pipeline.media.effects import (
    FAMILIES,
    MIN_DISTANCE,
    OPT_IN,
    EffectOptions,
    VariationParams,
    distance,
    expected_duration,
    nearest_distances,
    sample_variations,
)
from pipeline.media.filters import audio_filter, rotation_zoom, video_filter

ALL = EffectOptions(exclude=frozenset())  # every family on, the opt-in ones too
DEFAULT = EffectOptions()


def graphs(variations, w=1280, h=720):
    return [(video_filter(v, w, h), audio_filter(v)) for v in variations]


# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, excluded",
    [
        (None, {"rotation", "hue", "pitch"}),
        ("", {"rotation", "hue", "pitch"}),
        ("-mirror", {"mirror", "rotation", "hue", "pitch"}),
        ("-mirror,-noise", {"mirror", "noise", "rotation", "hue", "pitch"}),
        (" -Mirror , -NOISE ,", {"mirror", "noise", "rotation", "hue", "pitch"}),
        ("-mirror,+mirror", {"rotation", "hue", "pitch"}),
        ("zoom", {"rotation", "hue", "pitch"}),
        ("+rotation", {"hue", "pitch"}),
        ("+Rotation, hue", {"pitch"}),
        ("+hue,-hue", {"rotation", "hue", "pitch"}),
        ("+pitch", {"rotation", "hue"}),
        (" PITCH ,-audio", {"rotation", "hue", "audio"}),
        ("+pitch,-pitch", {"rotation", "hue", "pitch"}),
        ("+rotation,+hue,+pitch", set()),
    ],
)
def test_parse_options(text, excluded):
    assert EffectOptions.parse(text).exclude == frozenset(excluded)


def test_default_options_leave_out_the_opt_in_families():
    assert EffectOptions() == EffectOptions.parse("")
    assert not DEFAULT.allows("rotation") and not DEFAULT.allows("hue")
    assert not DEFAULT.allows("pitch")
    vs = [v for seed in range(40) for v in sample_variations(seed, 0, 5, DEFAULT)]
    assert not any(v.rotation_deg or v.hue_deg or v.pitch != 1.0 for v in vs)
    assert not any("asetrate" in audio_filter(v) for v in vs)
    assert not any("rotate" in video_filter(v, 1280, 720) or "hue" in video_filter(v, 1280, 720)
                   for v in vs)
    # Everything else is on by default.
    assert all(v.zoom > 1 and v.noise and v.speed != 1 for v in vs)
    assert any(v.mirror for v in vs)
    # Asking for them turns them on, with the same draws for every other family.
    opted = [v for seed in range(40)
             for v in sample_variations(seed, 0, 5, EffectOptions.parse("+rotation,+hue"))]
    assert any(v.rotation_deg for v in opted)
    assert sum(1 for v in opted if v.hue_deg) > 0.9 * len(opted)  # a few round to 0.00
    import random

    plain = effects._draw(random.Random("k:0:1"), DEFAULT)
    tilted = effects._draw(random.Random("k:0:1"), EffectOptions.parse("+rotation,+hue"))
    assert (plain.speed, plain.contrast, plain.noise) == (tilted.speed, tilted.contrast,
                                                          tilted.noise)


@pytest.mark.parametrize("text", ["-sparkles", "mirror,-blur", "-", "-mirrors"])
def test_parse_options_rejects_unknown_family(text):
    with pytest.raises(ValueError, match="unknown effect") as info:
        EffectOptions.parse(text)
    # The message lists what is allowed.
    assert "-mirror" in str(info.value) and "+rotation" in str(info.value)


# Every way of asking for variations that only differ from the source in colour, grain, tempo,
# sound or a mirror image: what the distinctness check (pHash, mirror-blind) cannot tell apart.
_NO_GEOMETRY = [
    "-zoom",
    "-zoom,-mirror",
    "-zoom,-color,-noise,-mirror",
    "-zoom,-color,-noise,-speed,-mirror,-audio",
    "-zoom,+hue",
    "-zoom,+pitch",
    "+rotation,-zoom,-rotation",
    " -ZOOM ",
    ",".join(f"-{f}" for f in FAMILIES),
]


@pytest.mark.parametrize("text", _NO_GEOMETRY)
def test_parse_options_refuses_variations_without_geometry(text):
    with pytest.raises(ValueError) as info:
        EffectOptions.parse(text)
    message = str(info.value)
    assert "zoom" in message and "+rotation" in message and "\n" not in message


@pytest.mark.parametrize("text", ["-mirror,-color,-noise,-speed,-audio", "-zoom,+rotation",
                                  "+rotation,-zoom,-mirror,-color,-noise,-speed,-audio"])
def test_parse_options_accepts_any_geometry_left(text):
    opts = EffectOptions.parse(text)
    assert opts.allows("zoom") or opts.allows("rotation")


def test_options_text_round_trip():
    opts = EffectOptions.parse("-noise,+rotation,-mirror")
    assert opts.to_text() == "+rotation,-noise,-mirror"
    assert EffectOptions.parse(opts.to_text()) == opts
    assert DEFAULT.to_text() == ""
    assert ALL.to_text() == "+rotation,+hue,+pitch"
    assert EffectOptions.parse("-mirror, +pitch").to_text() == "-mirror,+pitch"
    with pytest.raises(ValueError):
        EffectOptions(exclude=frozenset({"blur"}))


# --- sampling ------------------------------------------------------------------------------


def test_same_seed_same_params_and_graphs():
    a = sample_variations("job-1", 0, 8, ALL)
    b = sample_variations("job-1", 0, 8, ALL)
    assert a == b
    assert graphs(a) == graphs(b)
    # An integer seed is the same as its text form.
    assert sample_variations(42, 3, 5, ALL) == sample_variations("42", 3, 5, ALL)


def test_different_seed_or_video_differs():
    base = graphs(sample_variations("job-1", 0, 5, ALL))
    assert graphs(sample_variations("job-2", 0, 5, ALL)) != base
    assert graphs(sample_variations("job-1", 1, 5, ALL)) != base


def test_prefix_is_stable_when_count_grows():
    # Variation k depends only on its own key and the ones before it.
    assert sample_variations("s", 0, 10, ALL)[:4] == sample_variations("s", 0, 4, ALL)


def test_first_draw_uses_design_seed_key():
    import random

    first = sample_variations("abc", 2, 1, ALL)[0]
    assert first == effects._draw(random.Random("abc:2:1"), ALL)


def test_ranges_for_many_seeds():
    seen_rotation = seen_plain = seen_mirror = seen_up = 0
    for seed in range(150):
        for v in sample_variations(seed, 0, 5, ALL):
            assert 1.02 <= v.zoom <= 1.10
            assert 0 <= v.pan_x <= 1 and 0 <= v.pan_y <= 1
            if v.rotation_deg:
                seen_rotation += 1
                assert 0.2 <= abs(v.rotation_deg) <= 0.8
                # The zoom hides the corners even for a 2.4:1 frame.
                assert v.zoom >= rotation_zoom(v.rotation_deg, 2.4)
            else:
                seen_plain += 1
            assert -0.04 <= v.brightness <= 0.04
            assert 0.95 <= v.contrast <= 1.06
            assert 0.90 <= v.saturation <= 1.12
            assert 0.95 <= v.gamma <= 1.05
            assert -4 <= v.hue_deg <= 4
            assert v.noise == 1 and isinstance(v.noise, int)
            assert 0 < v.noise_seed < 2**31 - 1
            assert 0.95 <= v.speed <= 1.06
            assert -1 <= v.gain_db <= 1
            assert 0.03 <= abs(v.pitch - 1) <= 0.05
            seen_up += v.pitch > 1
            seen_mirror += v.mirror
    total = seen_rotation + seen_plain
    assert seen_plain == 0  # asked for, every variation is tilted
    assert 0.4 < seen_mirror / total < 0.6
    assert 0.4 < seen_up / total < 0.6  # up or down alike


def test_params_json_round_trip():
    for v in sample_variations("j", 0, 3, ALL):
        data = json.loads(json.dumps(v.to_dict()))
        assert VariationParams.from_dict(data) == v
        assert set(data) >= {"zoom", "pan_x", "rotation_deg", "noise_seed", "mirror", "gain_db"}


def test_normalised_in_unit_cube():
    assert all(0 <= x <= 1 for x in VariationParams().normalised())
    for v in sample_variations("n", 0, 20, ALL):
        n = v.normalised()
        assert len(n) == 14
        assert all(0 <= x <= 1 for x in n)


@pytest.mark.parametrize("exclude", [set(OPT_IN), set(), {"mirror", *OPT_IN},
                                     {"zoom", "noise", "audio", *OPT_IN}])
def test_min_distance_holds(exclude):
    # Also with zoom off, which parse() refuses for jobs: stored jobs and the sampler allow it.
    opts = EffectOptions(exclude=frozenset(exclude))
    for seed in range(20):
        vs = sample_variations(seed, 0, 20, opts)
        assert len(vs) == 20
        assert min(nearest_distances(vs)) >= MIN_DISTANCE


@pytest.mark.parametrize("text", ["", "-mirror", "+rotation,+hue"])
def test_crop_windows_keep_apart_from_each_other_and_the_source(text):
    # pHash, the distinctness measure, sees mostly the crop window: near-equal windows are what
    # got variations re-rolled after rendering.
    opts = EffectOptions.parse(text)
    whole = (0.0, 0.0, 1.0)
    for seed in range(30):
        # Up to about 10 fit (fewer with rotation, which needs more zoom); see the sampler.
        vs = sample_variations(seed, 0, 8, opts)
        windows = [effects.crop_window(v) for v in vs]
        for i, w in enumerate(windows):
            assert effects.window_shift(w, whole) >= effects.MIN_WINDOW_SHIFT
            for other in windows[:i]:
                assert effects.window_shift(w, other) >= effects.MIN_WINDOW_SHIFT
        # A re-roll among five (the default count) keeps clear of all of them.
        fresh = effects.reroll_variation(seed, 0, 3, 1, opts, avoid=vs[:5])
        assert min(effects.window_shift(effects.crop_window(fresh), w)
                   for w in [*windows[:5], whole]) >= effects.MIN_WINDOW_SHIFT


def test_window_geometry():
    assert effects.crop_window(VariationParams()) == (0.0, 0.0, 1.0)
    left, top, size = effects.crop_window(VariationParams(zoom=1.25, pan_x=0.0, pan_y=1.0))
    assert (left, top, size) == pytest.approx((0.0, 0.2, 0.8))
    # A window in the top-left corner: its right and bottom edges moved by 20 %.
    assert effects.window_shift((0.0, 0.0, 0.8), (0.0, 0.0, 1.0)) == pytest.approx(0.2)
    assert effects.window_shift((0.1, 0.0, 0.8), (0.0, 0.1, 0.8)) == pytest.approx(0.1)


def test_impossible_distance_keeps_best_found():
    # Only gain is left: 20 points on one axis cannot be MIN_DISTANCE apart; sampling still ends.
    opts = EffectOptions(exclude=frozenset(FAMILIES) - {"audio"})
    vs = sample_variations("tight", 0, 20, opts)
    assert len(vs) == 20
    assert len({v.gain_db for v in vs}) == 20
    assert sample_variations("tight", 0, 20, opts) == vs


def test_everything_excluded_gives_neutral_params():
    opts = EffectOptions(exclude=frozenset(FAMILIES))
    vs = sample_variations("x", 0, 3, opts)
    assert vs == [VariationParams()] * 3
    assert video_filter(vs[0], 1280, 720) == "format=yuv420p"
    assert audio_filter(vs[0]) == "anull"


def test_exclusions_neutralise_families():
    opts = EffectOptions.parse("-mirror")
    vs = [v for seed in range(30) for v in sample_variations(seed, 0, 5, opts)]
    assert not any(v.mirror for v in vs)
    assert not any("hflip" in video_filter(v, 1280, 720) for v in vs)

    opts = EffectOptions(exclude=frozenset({"zoom", "color", "noise", "speed", "audio", *OPT_IN}))
    for v in sample_variations("e", 0, 10, opts):
        g = video_filter(v, 1280, 720)
        assert v.zoom == 1.0 and v.rotation_deg == 0.0  # rotation needs zoom
        for name in ("crop", "scale", "rotate", "eq=", "hue", "noise", "setpts"):
            assert name not in g
        assert audio_filter(v) == "anull"


def test_excluding_a_family_keeps_the_others():
    # The draw order does not depend on the options.
    with_mirror = sample_variations("k", 0, 1, ALL)[0]
    without = sample_variations("k", 0, 1, EffectOptions.parse("-mirror"))[0]
    assert without.contrast == with_mirror.contrast
    assert without.speed == with_mirror.speed


def test_bad_count():
    assert sample_variations("z", 0, 0, ALL) == []
    with pytest.raises(ValueError):
        sample_variations("z", 0, -1, ALL)


# --- filter text ---------------------------------------------------------------------------


def test_rotation_zoom_geometry():
    assert rotation_zoom(0, 16 / 9) == 1.0
    z = rotation_zoom(0.8, 16 / 9)
    assert z == pytest.approx(math.cos(math.radians(0.8)) + 16 / 9 * math.sin(math.radians(0.8)))
    assert rotation_zoom(0.8, 9 / 16) == z
    assert rotation_zoom(-0.8, 16 / 9) == z


def _corners_hidden(w, h, angle_deg, crop_w, crop_h, out_w, out_h):
    """The rotate output window (out_w×out_h) lies inside the rotated crop (crop_w×crop_h)."""
    a = math.radians(abs(angle_deg))
    return (
        out_w * math.cos(a) + out_h * math.sin(a) <= crop_w
        and out_w * math.sin(a) + out_h * math.cos(a) <= crop_h
    )


@pytest.mark.parametrize("size", [(1280, 720), (720, 1280), (1080, 1080), (2560, 1080), (640, 480)])
def test_rotated_graph_hides_corners(size):
    w, h = size
    for seed in range(60):
        for v in sample_variations(seed, 0, 5, ALL):
            g = video_filter(v, w, h)
            m = re.search(r"crop=(\d+):(\d+):(\d+):(\d+)", g)
            assert m, g
            cw, ch, x, y = map(int, m.groups())
            assert x + cw <= w and y + ch <= h
            assert cw % 2 == 0 and ch % 2 == 0
            r = re.search(r"rotate=(-?[\d.]+):ow=(\d+):oh=(\d+)", g)
            if v.rotation_deg:
                ow, oh = int(r.group(2)), int(r.group(3))
                assert _corners_hidden(w, h, v.rotation_deg, cw, ch, ow, oh), g
            else:
                assert r is None
            assert f"scale={w}:{h}:" in g


def test_video_filter_shape():
    v = VariationParams(
        zoom=1.05, pan_x=0.25, pan_y=1.0, brightness=-0.01, contrast=1.02, saturation=0.95,
        gamma=1.01, hue_deg=-2.5, noise=4, noise_seed=1234, speed=1.03, mirror=True,
        gain_db=-0.5,
    )
    assert video_filter(v, 1280, 720) == (
        "crop=1218:684:14:36,hflip,scale=1280:720:flags=bilinear,setsar=1,"
        "eq=brightness=-0.0100:contrast=1.0200:saturation=0.9500:gamma=1.0100,"
        "hue=h=-2.50,noise=c0s=4:c0f=t:c0_seed=1234,settb=1/90000,setpts=PTS/1.0300,format=yuv420p"
    )
    assert audio_filter(v) == "atempo=1.0300,volume=-0.50dB"


def test_odd_display_size_rounds_down_to_even():
    assert video_filter(VariationParams(), 641, 361) == "crop=640:360:0:0,format=yuv420p"
    g = video_filter(VariationParams(zoom=1.05), 641, 361)
    assert "scale=640:360:" in g


def test_numbers_have_fixed_decimals():
    v = VariationParams(brightness=-0.0, speed=1.1, gain_db=1e-9)
    g = video_filter(v, 320, 240)
    assert "-0.0000" not in g
    assert "setpts=PTS/1.1000" in g
    assert "e-" not in audio_filter(v)


def test_expected_duration():
    assert expected_duration(10.0, VariationParams(speed=1.0)) == 10.0
    assert expected_duration(10.0, VariationParams(speed=1.05)) == pytest.approx(9.5238, 1e-4)
    assert expected_duration(10.0, VariationParams(speed=0.95)) == pytest.approx(10.5263, 1e-4)


def test_distance_is_symmetric_and_zero_for_equal():
    a, b = sample_variations("d", 0, 2, ALL)
    assert distance(a, a) == 0
    assert distance(a, b) == distance(b, a) > 0
    assert nearest_distances([a]) == [math.inf]


# --- pitch (opt-in) ------------------------------------------------------------------------

PITCH = EffectOptions.parse("+pitch")


def test_pitch_is_seeded_and_leaves_the_other_families_drawn_as_before():
    # Pinned: the draws of a job without pitch are what they were before the family existed.
    plain = sample_variations("pin", 0, 2, DEFAULT)
    assert [(v.zoom, v.pan_x, v.contrast, v.noise_seed, v.speed, v.mirror, v.gain_db, v.pitch)
            for v in plain] == [(1.0831, 0.17, 0.9523, 1167079497, 1.0109, True, -0.95, 1.0),
                                (1.0343, 0.792, 1.0486, 704219093, 1.0307, False, 0.14, 1.0)]
    pitched = sample_variations("pin", 0, 2, PITCH)
    assert [v.pitch for v in pitched] == [0.9508, 1.0319]
    assert pitched == sample_variations("pin", 0, 2, PITCH)
    # Pitch is drawn last: asking for it changes no other value of the same draw.
    import random

    for seed in range(50):
        key = f"p:{seed}:1"
        with_pitch = effects._draw(random.Random(key), PITCH)
        assert replace(with_pitch, pitch=1.0) == effects._draw(random.Random(key), DEFAULT)
        assert with_pitch.pitch != 1.0


def test_pitch_keeps_its_distance_from_siblings():
    for seed in range(10):
        vs = sample_variations(seed, 0, 10, PITCH)
        assert min(nearest_distances(vs)) >= MIN_DISTANCE
    # A job's stored parameters from before the family: no pitch shift.
    old = {k: v for k, v in sample_variations("j", 0, 1, DEFAULT)[0].to_dict().items()
           if k != "pitch"}
    assert VariationParams.from_dict(old).pitch == 1.0


@pytest.mark.parametrize("speed", [0.95, 1.0, 1.0307, 1.06])
@pytest.mark.parametrize("pitch", [0.95, 0.9692, 1.03, 1.05])
def test_pitch_chain_keeps_the_duration(speed, pitch):
    g = audio_filter(VariationParams(speed=speed, pitch=pitch, gain_db=0.5))
    m = re.fullmatch(r"aresample=48000,asetrate=(\d+),aresample=48000,atempo=([\d.]+),"
                     r"volume=0\.50dB", g)
    assert m, g
    rate, tempo = int(m.group(1)), float(m.group(2))
    assert rate == round(48000 * pitch)
    # asetrate plays rate/48000 faster; atempo makes up the rest of the speed: the audio lasts
    # source/speed, like the picture.
    assert rate / 48000 * tempo == pytest.approx(speed, abs=1e-6)
    assert 0.5 <= tempo <= 2.0  # atempo's range for one instance


def test_pitch_filter_text():
    assert audio_filter(VariationParams(pitch=1.0319, speed=1.0307)) == (
        "aresample=48000,asetrate=49531,aresample=48000,atempo=0.998841")
    assert audio_filter(VariationParams(speed=1.0307)) == "atempo=1.0307"
    # The video chain does not change with the pitch.
    v = sample_variations("pin", 0, 1, PITCH)[0]
    assert video_filter(v, 1280, 720) == video_filter(replace(v, pitch=1.0), 1280, 720)
