"""Filter text: the FFmpeg video and audio chains that render one variation's parameters.

Pure: no I/O. The same parameters and frame size always give byte-identical filter text, so a
job can be re-rendered (retry, recovery after a restart) with identical results. What this
module owns: the chains (`video_filter`, `audio_filter`), the filter options chosen for cost
(`ROTATE_BILINEAR`, `SCALE_FLAGS`), and the rotation cover geometry (`rotation_zoom`, with
`ROTATION_ZOOM_MARGIN`) that both the chain and the sampling in ``pipeline.media.effects`` use.

The cost of each filter was measured on this project's target machine (2 cores, FFmpeg 9);
see ``docs/filter-costs.md`` for the table behind the choices made here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.media.effects import VariationParams

# The clock of a speed-changed picture (the encoders' too, see command.build_render_command).
SPEED_TIME_BASE = "1/90000"

# Rotation is by far the costliest effect (why it is opt-in: `OPT_IN` in pipeline/media/effects.py).
# `rotate` with bilinear=0 costs less than half as much as with bilinear interpolation. Its
# price is a one-pixel step every ~100 px along straight edges, softened by the scale that
# follows.
ROTATE_BILINEAR = 0
# Upscaling by at most 1.1: bilinear looks the same as bicubic here and costs ~3 % less CPU.
SCALE_FLAGS = "bilinear"

# The working rate of a pitch-shifted variation's audio (`audio_filter`). A pitch shift by
# resampling (``asetrate`` + ``aresample``, the tempo corrected by the ``atempo`` that applies
# the speed anyway) has the same effect on the audio fingerprint as ``rubberband=pitch=…``
# (within 0.02 on speech and chords, pipeline/media/fingerprint.py) at a fraction of its cost:
# per minute of 48 kHz stereo, 0.15-0.2 CPU s more than ``atempo`` alone, rubberband 2.1-2.5 s
# (1.9 s at best with its quality options). A five-output render of a 69 s 320x240 clip took
# 30.5-33.9 CPU s, 31.8-34.7 s with the pitch chain and 36.5-39.0 s with rubberband (2 cores).
# Both move the formants with the pitch: at 3-5 % a slightly brighter or darker voice.
PITCH_RATE = 48000

# Extra zoom on top of the exact geometric minimum: covers the rounding of crop sizes to even
# pixels and the rotate filter's interpolation at the very edge.
ROTATION_ZOOM_MARGIN = 0.004


def rotation_zoom(angle_deg: float, aspect: float) -> float:
    """The least zoom that hides the corners of a frame of ``aspect`` (w/h) rotated by the angle.

    A w×h window scaled by 1/z fits inside the rotated frame when its bounding box, seen
    from the rotated frame, fits: z >= cos a + max(r, 1/r) sin a.
    """
    a = math.radians(abs(angle_deg))
    if a == 0:
        return 1.0
    r = max(aspect, 1.0 / aspect)
    return math.cos(a) + r * math.sin(a)


def _even(x: float) -> int:
    """Round down to an even number, at least 2."""
    return max(2, int(x) // 2 * 2)


def _even_up(x: float) -> int:
    """Round up to an even number."""
    return max(2, math.ceil(x / 2) * 2)


def _fmt(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return "0." + "0" * decimals if text.lstrip("-").strip("0.") == "" else text


def video_filter(params: VariationParams, width: int, height: int, sar: float = 1.0) -> str:
    """The filter chain for one output, for frames of display size ``width``×``height`` whose
    pixels have the aspect ratio ``sar``.

    The output has the same display size, rounded down to even numbers (yuv420p and libx264
    need even sizes), the source's pixel aspect ``sar`` (``scale`` would otherwise give the
    zoomed window's rounding to the flag: 1218×684 scaled to 1280×720 came out at a pixel
    aspect of 1.0016, 240×180 sources up to 1 % off), ``yuv420p``, and timestamps divided by the
    speed factor. Geometry (crop, rotate, flip) runs on the smaller cropped window before
    scaling, which is cheaper than after; a rotated variation is zoomed at least enough to hide
    the corners at this frame's real aspect ratio, whatever its ``zoom`` says.
    """
    out_w, out_h = _even(width), _even(height)
    chain: list[str] = []
    zoom = params.zoom
    if params.rotation_deg:
        rot_zoom = rotation_zoom(params.rotation_deg, width / height) + ROTATION_ZOOM_MARGIN
        zoom = max(zoom, rot_zoom)
    if zoom > 1.0:
        if params.rotation_deg:
            # Rotate only the window that becomes the picture: crop the smallest even-sized
            # window whose rotation still covers an ow×oh centre (plus a pixel each side for
            # the interpolation), rotate it, keep the centre (rotate's ow/oh), scale that up.
            a = math.radians(abs(params.rotation_deg))
            cos_a, sin_a = math.cos(a), math.sin(a)
            ow, oh = _even(width / zoom), _even(height / zoom)
            while True:
                cw = _even_up(ow * cos_a + oh * sin_a + 2)
                ch = _even_up(ow * sin_a + oh * cos_a + 2)
                if (cw <= width and ch <= height) or ow <= 2 or oh <= 2:
                    break
                ow, oh = ow - 2, oh - 2
            cw, ch = min(cw, _even(width)), min(ch, _even(height))
        else:
            cw, ch = _even(width / zoom), _even(height / zoom)
        x = int((width - cw) * params.pan_x) // 2 * 2
        y = int((height - ch) * params.pan_y) // 2 * 2
        chain.append(f"crop={cw}:{ch}:{x}:{y}")
        if params.rotation_deg:
            angle = _fmt(math.radians(params.rotation_deg), 6)
            chain.append(f"rotate={angle}:ow={ow}:oh={oh}:bilinear={ROTATE_BILINEAR}")
        if params.mirror:
            chain.append("hflip")
        chain.append(f"scale={out_w}:{out_h}:flags={SCALE_FLAGS}")
        chain.append(f"setsar={_sar_text(sar)}")
    else:
        if (out_w, out_h) != (width, height):
            chain.append(f"crop={out_w}:{out_h}:0:0")
        if params.mirror:
            chain.append("hflip")
    if (params.brightness, params.contrast, params.saturation, params.gamma) != (0, 1, 1, 1):
        chain.append(
            f"eq=brightness={_fmt(params.brightness, 4)}:contrast={_fmt(params.contrast, 4)}"
            f":saturation={_fmt(params.saturation, 4)}:gamma={_fmt(params.gamma, 4)}"
        )
    if params.hue_deg:
        chain.append(f"hue=h={_fmt(params.hue_deg, 2)}")
    if params.noise:
        chain.append(f"noise=c0s={int(params.noise)}:c0f=t:c0_seed={int(params.noise_seed)}")
    if params.speed != 1.0:
        # FFmpeg already starts input timestamps at 0 (no -copyts), so scaling keeps audio and
        # video offsets in proportion.
        # On a fine clock first: on an AVI's 1/fps clock the divided timestamps were rounded
        # back onto the same frame ticks, and a slowed-down output kept the source's length.
        chain.append(f"settb={SPEED_TIME_BASE}")
        chain.append(f"setpts=PTS/{_fmt(params.speed, 4)}")
    chain.append("format=yuv420p")
    return ",".join(chain)


def _sar_text(sar: float) -> str:
    """``1`` for square pixels, else the ratio to six decimals (``setsar`` takes it back to the
    nearest small fraction: 4:3, 10:11 …)."""
    return "1" if abs(sar - 1.0) < 1e-6 else f"{sar:.6f}"


def audio_filter(params: VariationParams) -> str:
    """The audio chain for one output: tempo matching the video's speed (and pitch), then gain.

    A pitch shift plays the samples at ``PITCH_RATE × pitch`` (``asetrate``: higher and faster),
    resamples back to ``PITCH_RATE`` and corrects the tempo in the same ``atempo`` that applies
    the speed, so the output still lasts source/speed. The chain starts with a resample to
    ``PITCH_RATE`` because ``asetrate`` needs a known rate, and the filter text must not
    depend on the source (a no-op for 48 kHz sources).
    """
    chain = []
    if params.pitch != 1.0:
        rate = round(PITCH_RATE * params.pitch)
        tempo = params.speed * PITCH_RATE / rate
        chain += [f"aresample={PITCH_RATE}", f"asetrate={rate}", f"aresample={PITCH_RATE}",
                  f"atempo={_fmt(tempo, 6)}"]
    elif params.speed != 1.0:
        chain.append(f"atempo={_fmt(params.speed, 4)}")
    if params.gain_db:
        chain.append(f"volume={_fmt(params.gain_db, 2)}dB")
    return ",".join(chain) or "anull"
