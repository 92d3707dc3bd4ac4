"""Variation parameters: which effects a job uses and the seeded sampling of each output's.

Pure: no I/O, no clock, no global RNG. The same ``(job_seed, video_index, count, options)``
always gives the same parameters (and ``pipeline.media.filters`` turns the same parameters into
byte-identical filter text), so a job can be re-rendered (retry, recovery after a restart) with
identical results. What this module owns: the effect families and their options
(`EffectOptions`), the parameters (`VariationParams`) and their ranges, the spacing between
siblings, the draws (`sample_variations`, `reroll_variation`) and `expected_duration`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

from pipeline.media.filters import ROTATION_ZOOM_MARGIN, rotation_zoom

FAMILIES: tuple[str, ...] = (
    "zoom", "rotation", "color", "hue", "noise", "speed", "mirror", "audio", "pitch",
)
# Families a job gets only when it asks for them (`+rotation`, `+hue`): each costs more render
# time than it adds uniqueness (docs/benchmarks.md, "Effect defaults"). At 1080p, five outputs,
# 2 cores, two rotated outputs took a render from 9.7 s to 15.2 s, and `hue` (the one colour
# filter FFmpeg cannot spread over threads) held the filter thread for 1.7 s of 4.7 s.
# `pitch` costs little (see `PITCH_RANGE`) but is heard: a voice 3–5 % higher or lower is a
# change the user should choose.
OPT_IN: frozenset[str] = frozenset({"rotation", "hue", "pitch"})
# A job must keep one of these. The distinctness check (pipeline/media/distinct.py) measures Meta's
# PDQ, which sees geometry only: colour, grain, hue and tempo leave every frame matching (0–12
# bits of 256 on real footage, docs/distinctness.md), and it is taken over the mirror images too,
# so a mirror does not count either. Without zoom or rotation every variation is a copy to a
# matcher and re-rolls cannot help.
GEOMETRIC: frozenset[str] = frozenset({"zoom", "rotation"})

# Sampling ranges (README, "Effects"). The neutral value of every family lies inside or at the edge
# of its range so that excluded families still map into 0..1 for distances.
ZOOM_RANGE = (1.02, 1.10)
ROTATION_RANGE = (0.2, 0.8)  # degrees, either sign
BRIGHTNESS_RANGE = (-0.04, 0.04)
CONTRAST_RANGE = (0.95, 1.06)
SATURATION_RANGE = (0.90, 1.12)
GAMMA_RANGE = (0.95, 1.05)
HUE_RANGE = (-4.0, 4.0)  # degrees
# FFmpeg `noise` strength, integer. An ultrafast CRF 23 encode cannot keep stronger grain: SSIM of
# the output against the frames it was given (1080p, five outputs) was 0.9976 without grain,
# 0.9958 at strength 1, 0.986 at 2, 0.966 at 3 and 0.87 at 6, against 0.983-0.989 for the
# original service's encodes. The seed still gives every variation its own grain pattern.
NOISE_RANGE = (1, 1)
SPEED_RANGE = (0.95, 1.06)
GAIN_RANGE = (-1.0, 1.0)  # dB
# Pitch shift, either sign, tempo kept (`filters.audio_filter`): what moves an audio fingerprint
# (pipeline/media/fingerprint.py), which tempo and gain hardly do. Rendered from ten seconds of
# speech, the default variations measured 0.86-0.99 against the source and the same ones with
# a 3-5 % shift 0.24-0.40 lower; a 2 % shift lowered them by only 0.10-0.20 (0.100 with a
# 0.95x tempo), so the range starts at 3 %. It added about 3 % to the CPU time of a five-output
# render (filters.PITCH_RATE).
PITCH_RANGE = (0.03, 0.05)
MIRROR_SHARE = 0.5

# Rotation costs more than every other effect together: at 1080p, five outputs, 2 cores, a
# tilted output took 2.4 times as long as a plain one (docs/benchmarks.md), even with
# nearest-neighbour sampling of the cropped window only. Zoom with a random pan already moves
# every pixel, so a small tilt adds little uniqueness for its price: it is opt-in (`OPT_IN`),
# and a job that asks for it gets it on every variation (a share would leave some jobs that
# asked for it without a single tilted variation).
#
# A rotated frame needs extra zoom to push its black corners out of the picture
# (`filters.rotation_zoom`). Sampling does not know the video's aspect ratio, so it covers
# frames up to 2.4:1 (and 1:2.4); `filters.video_filter` still recomputes the zoom for the real
# size and never shows a corner.
ROTATION_COVER_ASPECT = 2.4

# No two variations of one video may be closer than this (Euclidean distance in the space of
# `VariationParams.normalised()`). With every family on, two independent draws are 1.5 apart
# on average and 99 % of pairs more than 0.85, so this only bites when families are excluded
# or N is large; with four families or more left, 20 variations still fit.
MIN_DISTANCE = 0.5
# The distinctness check (pHash, minimum over the mirror images) sees little but the crop
# window, which parameter distance hardly weighs: a window shifted less than 1 % of the frame
# from a sibling's measured below the re-roll threshold (distance 4) in 68 % of pairs, 1-2 %:
# 19 %, 2-3 %: 5 %, 3 % or more: under 1 % (docs/distinctness.md). So no window may sit closer
# than this to the source's (the whole frame) or to a sibling's, as measured by `window_shift`.
MIN_WINDOW_SHIFT = 0.025
# How many deterministic redraws one variation may take before the farthest one is kept.
MAX_ATTEMPTS = 64

_DECIMALS = {
    "zoom": 4,
    "pan_x": 3,
    "pan_y": 3,
    "rotation_deg": 3,
    "brightness": 4,
    "contrast": 4,
    "saturation": 4,
    "gamma": 4,
    "hue_deg": 2,
    "speed": 4,
    "gain_db": 2,
    "pitch": 4,
}

# Range of each field for `normalised()`, in field order; noise_seed is not a distance
# dimension (two seeds are equally different whatever their values).
_NORMALISE = {
    "zoom": (1.0, ZOOM_RANGE[1]),
    "pan_x": (0.0, 1.0),
    "pan_y": (0.0, 1.0),
    "rotation_deg": (-ROTATION_RANGE[1], ROTATION_RANGE[1]),
    "brightness": BRIGHTNESS_RANGE,
    "contrast": CONTRAST_RANGE,
    "saturation": SATURATION_RANGE,
    "gamma": GAMMA_RANGE,
    "hue_deg": HUE_RANGE,
    "noise": (0, NOISE_RANGE[1]),
    "speed": SPEED_RANGE,
    "mirror": (0, 1),
    "gain_db": GAIN_RANGE,
    "pitch": (1.0 - PITCH_RANGE[1], 1.0 + PITCH_RANGE[1]),
}


@dataclass(frozen=True)
class EffectOptions:
    """Which effect families a job leaves out. By default: the opt-in ones (`OPT_IN`)."""

    exclude: frozenset[str] = OPT_IN

    def __post_init__(self) -> None:
        unknown = set(self.exclude) - set(FAMILIES)
        if unknown:
            raise ValueError(_unknown_message(sorted(unknown)[0]))

    @classmethod
    def parse(cls, text: str | None) -> EffectOptions:
        """Parse the job's ``effects`` field: a comma list such as ``-mirror,+rotation``.

        Each item names a family with a leading ``-`` to turn it off; ``+name`` (or a bare
        name) turns it on. Families not named keep their default: on, except the opt-in ones
        (`OPT_IN`: rotation, hue, pitch). Spaces and case are ignored; an empty or missing text means
        the defaults.

        Error handling: an unknown family, or options that leave no family of `GEOMETRIC`
        (zoom, rotation), raise ``ValueError`` with a sentence that can be shown to the user
        as is. Options built directly (stored jobs) are not checked for geometry.
        """
        excluded: set[str] = set(OPT_IN)
        for raw in (text or "").split(","):
            item = raw.strip().lower()
            if not item:
                continue
            sign, name = (item[0], item[1:].strip()) if item[0] in "+-" else ("+", item)
            if name not in FAMILIES:
                raise ValueError(_unknown_message(name))
            if sign == "-":
                excluded.add(name)
            else:
                excluded.discard(name)
        if GEOMETRIC <= excluded:
            raise ValueError(
                "these effects would give variations that look like the source: keep zoom on, "
                "or add +rotation (colour, grain, speed, sound and mirroring alone leave every frame "
                "a match for Meta's PDQ matcher)")
        return cls(exclude=frozenset(excluded))

    def to_text(self) -> str:
        """The canonical text form, e.g. ``+rotation,-mirror`` (family order): what differs
        from the defaults; ``""`` for the defaults."""
        return ",".join(
            ("-" if f in self.exclude else "+") + f
            for f in FAMILIES
            if (f in self.exclude) != (f in OPT_IN)
        )

    def allows(self, family: str) -> bool:
        return family not in self.exclude


def _unknown_message(name: str) -> str:
    return (
        f"unknown effect {name!r}: use a comma list of "
        + ", ".join(f"-{f}" for f in FAMILIES if f not in OPT_IN)
        + " to turn effects off, or "
        + ", ".join(f"+{f}" for f in FAMILIES if f in OPT_IN)
        + " to turn them on"
    )


@dataclass(frozen=True)
class VariationParams:
    """One variation's effect parameters. The defaults are the neutral (no-op) values."""

    zoom: float = 1.0  # magnification; 1.0 = off
    pan_x: float = 0.5  # 0..1: position of the zoomed window inside the horizontal margin
    pan_y: float = 0.5
    rotation_deg: float = 0.0  # counter-clockwise is negative, as FFmpeg's `rotate`
    brightness: float = 0.0
    contrast: float = 1.0
    saturation: float = 1.0
    gamma: float = 1.0
    hue_deg: float = 0.0
    noise: int = 0  # temporal luma grain strength; 0 = off
    noise_seed: int = 0
    speed: float = 1.0  # playback speed factor; >1 is faster and shorter
    mirror: bool = False
    gain_db: float = 0.0
    pitch: float = 1.0  # pitch factor, tempo kept; >1 is higher; 1.0 = off

    def to_dict(self) -> dict[str, float | int | bool]:
        """A JSON-able dict with snake_case keys."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> VariationParams:
        """Inverse of `to_dict`; keys that are not fields are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]

    def normalised(self) -> tuple[float, ...]:
        """Every field except ``noise_seed`` mapped to 0..1 over its range, in field order."""
        out = []
        for name, (lo, hi) in _NORMALISE.items():
            value = float(getattr(self, name))
            out.append(min(1.0, max(0.0, (value - lo) / (hi - lo))))
        return tuple(out)


def distance(a: VariationParams, b: VariationParams) -> float:
    """Euclidean distance between two variations in normalised parameter space."""
    return math.dist(a.normalised(), b.normalised())


def nearest_distances(variations: list[VariationParams]) -> list[float]:
    """For each variation, the distance to its nearest sibling (``inf`` when alone)."""
    return [
        min((distance(v, w) for j, w in enumerate(variations) if j != i), default=math.inf)
        for i, v in enumerate(variations)
    ]


def crop_window(params: VariationParams) -> tuple[float, float, float]:
    """The part of the source a variation shows: ``(left, top, size)`` as fractions of the
    frame's width and height (``(0, 0, 1)``: the whole frame). Rotation and mirror ignored."""
    size = 1.0 / params.zoom
    return ((1.0 - size) * params.pan_x, (1.0 - size) * params.pan_y, size)


def window_shift(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """How far apart two `crop_window` s are: the largest move of any of their four edges, as a
    fraction of the frame."""
    (xa, ya, sa), (xb, yb, sb) = a, b
    return max(abs(xa - xb), abs(ya - yb), abs(xa + sa - xb - sb), abs(ya + sa - yb - sb))


def _spacing(candidate: VariationParams, others: Sequence[VariationParams],
             options: EffectOptions) -> tuple[float, float]:
    """How well ``candidate`` keeps clear of ``others`` and of the source, as ``(parameter
    distance / MIN_DISTANCE, window shift / MIN_WINDOW_SHIFT)``, each capped at 1 (far enough).
    Compared as a tuple, the parameter distance comes first, so that more variations than the
    crop windows have room for (about 12) still keep it. The window shift is 1 when zoom is
    off: every window is then the whole frame, and nothing can be done about it."""
    gap = min((distance(candidate, o) for o in others), default=math.inf) / MIN_DISTANCE
    shift = 1.0
    if options.allows("zoom"):
        window = crop_window(candidate)
        shift = min(window_shift(window, crop_window(o)) for o in [*others, VariationParams()])
        shift /= MIN_WINDOW_SHIFT
    return (min(gap, 1.0), min(shift, 1.0))


def sample_variations(
    job_seed: str | int, video_index: int, count: int, options: EffectOptions
) -> list[VariationParams]:
    """Draw ``count`` variations for one video of a job.

    Variation ``k`` (1-based, like the output names ``_v01``…) draws from
    ``random.Random(f"{job_seed}:{video_index}:{k}")``; when it lands closer than
    `MIN_DISTANCE` to an earlier variation, or its crop window less than `MIN_WINDOW_SHIFT`
    from an earlier one's or from the whole frame, it is redrawn from ``…:{k}:{attempt}``, up
    to `MAX_ATTEMPTS` times, after which the draw that kept clearest is kept (that happens when
    so many families are excluded, or so many variations asked for, that the space is too
    small for ``count`` points).
    Every family is drawn whether excluded or not, so excluding one family does not change the
    values of the others.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    chosen: list[VariationParams] = []
    for k in range(1, count + 1):
        chosen.append(_clearest(f"{job_seed}:{video_index}:{k}", chosen, options))
    return chosen


def reroll_variation(
    job_seed: str | int,
    video_index: int,
    variation: int,
    attempt: int,
    options: EffectOptions,
    avoid: Sequence[VariationParams] = (),
) -> VariationParams:
    """A fresh draw for variation ``variation`` (1-based, as in `sample_variations`) after its
    rendered output looked too much like its source or a sibling; ``attempt`` counts from 1.

    Deterministic like `sample_variations`: it draws from
    ``random.Random(f"{job_seed}:{video_index}:{variation}:reroll{attempt}")`` (redrawn from
    ``…:reroll{attempt}:{n}`` while closer than `MIN_DISTANCE` to any of ``avoid``, or its crop
    window closer than `MIN_WINDOW_SHIFT` to theirs or the whole frame: pass the siblings and
    the rejected parameters). The keys never collide with the first draws', so
    re-rolling one variation changes nothing else.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    return _clearest(f"{job_seed}:{video_index}:{variation}:reroll{attempt}", avoid, options)


def _clearest(key: str, others: Sequence[VariationParams],
              options: EffectOptions) -> VariationParams:
    """The draw from ``key`` (then ``key:1``, ``key:2``… while it is too close, see `_spacing`)
    that keeps clear of ``others`` and the source; the clearest of `MAX_ATTEMPTS` if none does."""
    best: VariationParams | None = None
    best_gap = (-1.0, -1.0)
    for n in range(MAX_ATTEMPTS):
        candidate = _draw(random.Random(key + (f":{n}" if n else "")), options)
        gap = _spacing(candidate, others, options)
        if gap > best_gap:
            best, best_gap = candidate, gap
        if gap == (1.0, 1.0):
            break
    assert best is not None
    return best


def _draw(rng: random.Random, options: EffectOptions) -> VariationParams:
    # The order of draws is part of the seed contract: changing it changes every job's output.
    u_zoom = rng.random()
    pan_x = rng.random()
    pan_y = rng.random()
    rng.random()  # once the rotation share; kept so that every later draw stays the same
    rot_deg = rng.uniform(*ROTATION_RANGE) * rng.choice((-1.0, 1.0))
    brightness = rng.uniform(*BRIGHTNESS_RANGE)
    contrast = rng.uniform(*CONTRAST_RANGE)
    saturation = rng.uniform(*SATURATION_RANGE)
    gamma = rng.uniform(*GAMMA_RANGE)
    hue = rng.uniform(*HUE_RANGE)
    noise = rng.randint(*NOISE_RANGE)
    noise_seed = rng.randrange(1, 2**31 - 1)
    speed = rng.uniform(*SPEED_RANGE)
    mirror = rng.random() < MIRROR_SHARE
    gain = rng.uniform(*GAIN_RANGE)
    # Families added later draw after all the others, so that the values above stay the same.
    pitch = 1.0 + rng.uniform(*PITCH_RANGE) * rng.choice((-1.0, 1.0))

    p = VariationParams()
    if options.allows("zoom"):
        # Rotation is only possible inside a zoom that hides its corners, so excluding zoom
        # turns rotation off too.
        lo = ZOOM_RANGE[0]
        if options.allows("rotation"):
            rot_deg = round(rot_deg, _DECIMALS["rotation_deg"])
            need = rotation_zoom(rot_deg, ROTATION_COVER_ASPECT) + ROTATION_ZOOM_MARGIN
            lo = max(lo, need)
            p = replace(p, rotation_deg=rot_deg)
        zoom = lo + u_zoom * (ZOOM_RANGE[1] - lo)
        p = replace(p, zoom=_round("zoom", zoom), pan_x=_round("pan_x", pan_x),
                    pan_y=_round("pan_y", pan_y))
    if options.allows("color"):
        p = replace(
            p,
            brightness=_round("brightness", brightness),
            contrast=_round("contrast", contrast),
            saturation=_round("saturation", saturation),
            gamma=_round("gamma", gamma),
        )
    if options.allows("hue"):
        p = replace(p, hue_deg=_round("hue_deg", hue))
    if options.allows("noise"):
        p = replace(p, noise=noise, noise_seed=noise_seed)
    if options.allows("speed"):
        p = replace(p, speed=_round("speed", speed))
    if options.allows("mirror"):
        p = replace(p, mirror=mirror)
    if options.allows("audio"):
        p = replace(p, gain_db=_round("gain_db", gain))
    if options.allows("pitch"):
        p = replace(p, pitch=_round("pitch", pitch))
    return p


def _round(name: str, value: float) -> float:
    # Parameters are stored at the precision the filter text shows, so the manifest's numbers
    # are exactly what was rendered. `+ 0.0` turns -0.0 into 0.0.
    return round(value, _DECIMALS[name]) + 0.0


def expected_duration(source_duration: float, params: VariationParams) -> float:
    """How long the output of ``params`` lasts for a source of ``source_duration`` seconds."""
    return source_duration / params.speed

