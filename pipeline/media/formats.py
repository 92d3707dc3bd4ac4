"""Placement formats: the shapes a job's variations are delivered in, and their geometry.

Pure: no I/O. A job asks for one or more formats (``source``, ``9:16``, ``1:1``, ``4:5``,
``16:9``) and one ``fit``:

- ``crop``: the largest even-sized window of the format's ratio inside the variation's frame,
  placed by the job's ``focus`` (centred by default). The window is cut from the variation's
  own picture (after its zoom, pan and mirror), so the formats of one variation are the same
  take; nothing is scaled.
- ``pad``: the whole picture on a canvas of the format's ratio whose long side is the
  source's, over a blurred, darkened copy of itself. The picture is only ever scaled down.

The picture's pixels are never upscaled: 1280×720 cropped to 9:16 is 406×720, padded to 9:16
720×1280 with the picture at 720×406. Every size is even (yuv420p).

Named presets set the formats, the fit and a loudness target at once (`PRESETS`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SOURCE = "source"
# The job fields (upload form, JSON body, ``make`` flags) that choose a placement.
FIELDS = ("formats", "fit", "focus", "loudness", "preset")
# Width and height of each ratio; ``source`` keeps the source's shape.
RATIOS: dict[str, tuple[int, int] | None] = {
    SOURCE: None, "9:16": (9, 16), "1:1": (1, 1), "4:5": (4, 5), "16:9": (16, 9),
}
FITS = ("crop", "pad")
FOCUSES = ("center", "left", "right", "top", "bottom")
# Where each focus puts a crop window: the share of the spare width and height left of / above it.
_FOCUS_AT = {"center": (0.5, 0.5), "left": (0.0, 0.5), "right": (1.0, 0.5),
             "top": (0.5, 0.0), "bottom": (0.5, 1.0)}
# An even-sized window whose ratio is further than this from the format's is not taken when a
# slightly smaller one is closer (tiny sources): sizes are rounded to even numbers.
_RATIO_SLACK = 0.005
# The pad's background: worked on at this fraction of the canvas (blur is cheap there), then
# darkened and blurred.
PAD_BACKGROUND_SCALE = 8
PAD_BRIGHTNESS = -0.18
PAD_SATURATION = 0.8
PAD_BLUR_SIGMA = 3


@dataclass(frozen=True)
class Preset:
    """A placement preset: what it sets and what it is for."""

    name: str
    formats: tuple[str, ...]
    fit: str
    loudness: float
    label: str


# Common delivery targets (loudness in LUFS, integrated; the platforms normalise to about these).
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("reels", ("9:16",), "crop", -14.0, "Instagram and Facebook Reels, Stories"),
    Preset("tiktok", ("9:16",), "crop", -16.0, "TikTok"),
    Preset("shorts", ("9:16",), "crop", -14.0, "YouTube Shorts"),
    Preset("feed", ("1:1", "4:5"), "pad", -14.0, "Instagram and Facebook feed"),
    Preset("youtube", ("16:9",), "pad", -14.0, "YouTube"),
)}

# Loudness targets a job may ask for (integrated LUFS): from very quiet to louder than any
# platform normalises to.
LOUDNESS_RANGE = (-40.0, -5.0)
# True peak ceiling of a normalised output (dBTP).
TRUE_PEAK = -1.5


class FormatError(ValueError):
    """A formats, fit, focus, loudness or preset value that cannot be used; the message says
    why in words a user can act on."""


def parse_formats(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """A comma list (or a list) of format names, in the order given, without repeats;
    ``None`` or empty: ``("source",)``. Raises ``FormatError``."""
    items = text.split(",") if isinstance(text, str) else list(text or [])
    out: list[str] = []
    for raw in items:
        name = str(raw).strip().lower().replace("x", ":") if raw is not None else ""
        if not name:
            continue
        if name not in RATIOS:
            raise FormatError(f"unknown format {str(raw).strip()!r}; use "
                              + ", ".join(RATIOS))
        if name not in out:
            out.append(name)
    return tuple(out) or (SOURCE,)


def parse_choice(value: str | None, choices: tuple[str, ...], what: str) -> str:
    """One of ``choices`` (the first when ``value`` is empty). Raises ``FormatError``."""
    text = (value or "").strip().lower()
    if not text:
        return choices[0]
    if text not in choices:
        raise FormatError(f"{what} must be one of " + ", ".join(choices))
    return text


def parse_loudness(value: str | float | None) -> float | None:
    """A loudness target in LUFS (``-14``, ``-14 LUFS``), or None when absent or ``off``
    (``none``): levels left alone, also over a preset's target. Raises ``FormatError``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().lower().removesuffix("lufs").strip()
    if text in ("off", "none"):
        return None
    try:
        target = float(text)
    except ValueError:
        raise FormatError("loudness must be a number of LUFS such as -14") from None
    lo, hi = LOUDNESS_RANGE
    if not lo <= target <= hi:
        raise FormatError(f"loudness must be from {lo:g} to {hi:g} LUFS")
    return round(target, 1)


def _even(x: float) -> int:
    """Down to an even number, at least 2."""
    return max(2, int(x) // 2 * 2)


def _even_round(x: float) -> int:
    """To the nearest even number, at least 2."""
    return max(2, int(x / 2 + 0.5) * 2)


def crop_size(width: int, height: int, ratio: tuple[int, int]) -> tuple[int, int]:
    """The largest even-sized window of ``ratio`` inside ``width``×``height`` (within half a
    percent of the ratio; on tiny frames the closest that fits)."""
    rw, rh = ratio
    best: tuple[float, int, int] | None = None
    if width * rh > height * rw:  # wider than the ratio: the height decides
        candidates = ((_even_round(h * rw / rh), h) for h in range(_even(height), 1, -2))
    else:
        candidates = ((w, _even_round(w * rh / rw)) for w in range(_even(width), 1, -2))
    for k, (w, h) in enumerate(candidates):
        if w > width or h > height:
            continue
        error = abs(w * rh / (h * rw) - 1)
        if error <= _RATIO_SLACK:
            return w, h
        if best is None or error < best[0]:
            best = (error, w, h)
        if k > 64:
            break
    assert best is not None
    return best[1], best[2]


def pad_size(width: int, height: int, ratio: tuple[int, int]) -> tuple[tuple[int, int],
                                                                      tuple[int, int]]:
    """The canvas (long side the source's, a pixel or two less where an even size needs it to
    keep the ratio) and the picture fitted inside it, both even."""
    long_side = _even(max(width, height))
    cw, ch = crop_size(long_side, long_side, ratio)
    scale = min(cw / width, ch / height, 1.0)
    pw, ph = min(cw, _even_round(width * scale)), min(ch, _even_round(height * scale))
    return (cw, ch), (pw, ph)


def square_size(width: int, height: int, sar: float = 1.0) -> tuple[int, int]:
    """The picture's size in square pixels: for pixels wider than tall (``sar`` > 1) its
    height is reduced, for narrower ones its width, so nothing is upscaled; even sizes."""
    if abs(sar - 1.0) < 0.001:
        return width, height
    if sar > 1:
        return width, min(height, _even_round(height / sar))
    return min(width, _even_round(width * sar)), height


def output_size(fmt: str, fit: str, width: int, height: int,
                sar: float = 1.0) -> tuple[int, int]:
    """The display size of a variation of a ``width``×``height`` source in ``fmt``: in the
    source's own pixels for ``source``, in square pixels for the others."""
    ratio = RATIOS[fmt]
    if ratio is None:
        return _even(width), _even(height)
    w, h = square_size(_even(width), _even(height), sar)
    if fit == "pad":
        return pad_size(w, h, ratio)[0]
    return crop_size(w, h, ratio)


def format_filters(fmt: str, fit: str, focus: str, width: int, height: int,
                   src: str, dst: str, tag: str, sar: float = 1.0) -> list[str]:
    """Filter-graph parts that turn the ``src``-labelled picture (a variation's frames, of the
    source's even display size ``width``×``height`` and pixel aspect ``sar``) into ``fmt`` at
    label ``dst``; ``tag`` keeps the inner labels unique. ``source``: passed through
    (``null``). Other formats come out in square pixels (``setsar=1``: a scaled picture would
    otherwise carry a pixel aspect that makes players show it in another shape)."""
    ratio = RATIOS[fmt]
    w, h = _even(width), _even(height)
    if ratio is None:
        return [f"{src}null{dst}"]
    parts: list[str] = []
    if (w, h) != square_size(w, h, sar):
        w, h = square_size(w, h, sar)
        parts.append(f"{src}scale={w}:{h}:flags=area,setsar=1[{tag}sq]")
        src = f"[{tag}sq]"
    if fit == "crop":
        cw, ch = crop_size(w, h, ratio)
        fx, fy = _FOCUS_AT[focus]
        x, y = int((w - cw) * fx) // 2 * 2, int((h - ch) * fy) // 2 * 2
        return parts + [f"{src}crop={cw}:{ch}:{x}:{y},setsar=1{dst}"]
    return parts + _pad_filters(ratio, w, h, src, dst, tag)


def _pad_filters(ratio: tuple[int, int], w: int, h: int, src: str, dst: str,
                 tag: str) -> list[str]:
    """`format_filters` for ``pad``, on a square-pixel picture of ``w``×``h``."""
    (cw, ch), (pw, ph) = pad_size(w, h, ratio)
    picture = "null" if (pw, ph) == (w, h) else f"scale={pw}:{ph}:flags=area"
    if (pw, ph) == (cw, ch):  # the picture fills the canvas: nothing to pad
        return [f"{src}{picture},setsar=1{dst}"]
    bw = max(16, _even(cw / PAD_BACKGROUND_SCALE))
    bh = max(16, _even(ch / PAD_BACKGROUND_SCALE))
    bg, fg = f"[{tag}bg]", f"[{tag}fg]"
    return [
        f"{src}split=2{bg}{fg}",
        f"{bg}scale={bw}:{bh}:force_original_aspect_ratio=increase:flags=area,"
        f"crop={bw}:{bh},gblur=sigma={PAD_BLUR_SIGMA},"
        f"eq=brightness={PAD_BRIGHTNESS}:saturation={PAD_SATURATION},"
        f"scale={cw}:{ch}:flags=bilinear,format=yuv420p[{tag}bgs]",
        f"{fg}{picture}[{tag}fgs]",
        f"[{tag}bgs][{tag}fgs]overlay=x={(cw - pw) // 2 // 2 * 2}:y={(ch - ph) // 2 // 2 * 2}"
        f":format=yuv420,format=yuv420p,setsar=1{dst}",
    ]


@dataclass(frozen=True)
class Placement:
    """What a job asked for: its formats (in the order given), the fit, where a crop window
    sits, and the loudness target (None: levels left alone)."""

    formats: tuple[str, ...] = (SOURCE,)
    fit: str = "crop"
    focus: str = "center"
    loudness: float | None = None

    @property
    def is_default(self) -> bool:
        return self == Placement()

    def to_dict(self) -> dict:
        return {"formats": list(self.formats), "fit": self.fit, "focus": self.focus,
                "loudness": self.loudness}

    @classmethod
    def from_dict(cls, data: dict | None) -> Placement:
        """From a job's stored options (absent fields: the defaults)."""
        data = data or {}
        return cls(formats=tuple(data.get("formats") or (SOURCE,)),
                   fit=data.get("fit") or "crop", focus=data.get("focus") or "center",
                   loudness=data.get("loudness"))


def parse_placement(*, formats: str | Iterable[str] | None = None, fit: str | None = None,
                    focus: str | None = None, loudness: str | float | None = None,
                    preset: str | None = None) -> Placement:
    """A job's placement from what a client sent: a ``preset`` sets formats, fit and loudness,
    and any of those given as well wins over it. Raises ``FormatError``."""
    base = Placement()
    if preset is not None and str(preset).strip():
        name = str(preset).strip().lower()
        if name not in PRESETS:
            raise FormatError("preset must be one of " + ", ".join(PRESETS))
        p = PRESETS[name]
        base = Placement(p.formats, p.fit, "center", p.loudness)
    return Placement(
        formats=parse_formats(formats) if has(formats) else base.formats,
        fit=parse_choice(fit, FITS, "fit") if has(fit) else base.fit,
        focus=parse_choice(focus, FOCUSES, "focus") if has(focus) else base.focus,
        loudness=parse_loudness(loudness) if has(loudness) else base.loudness,
    )


def has(value: object) -> bool:
    """Whether a client sent a value (not absent, not an empty string)."""
    return value is not None and (not isinstance(value, str) or value.strip() != "")
