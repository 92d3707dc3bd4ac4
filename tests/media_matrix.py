"""Source videos of every kind a team brings, generated tiny with the bundled FFmpeg.

``make_input`` writes one clip for a point of the input matrix: a codec in its usual container,
a frame rate (or variable frame rate with a drop, as phones record in low light), a shape, with
or without sound. ``matrix`` samples the points so that every codec meets every frame rate, and
every codec every shape, with sound and without.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.media.ffmpeg import find_ffmpeg

# codec -> (file suffix, video encoder arguments, audio encoder arguments)
CODECS: dict[str, tuple[str, list[str], list[str]]] = {
    "h264": (".mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
             ["-c:a", "aac", "-b:a", "64k"]),
    "h264-10bit": (".mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le"],
                   ["-c:a", "aac", "-b:a", "64k"]),
    "hevc": (".mp4", ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                      "-tag:v", "hvc1", "-x265-params", "log-level=error"],
             ["-c:a", "aac", "-b:a", "64k"]),
    "h264-mkv": (".mkv", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
                 ["-c:a", "libvorbis"]),
    "vp9-webm": (".webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                           "-b:v", "200k"], ["-c:a", "libopus", "-b:a", "48k"]),
    "mpeg2": (".mpg", ["-c:v", "mpeg2video", "-q:v", "4"], ["-c:a", "mp2", "-b:a", "128k"]),
    "mpeg4-avi": (".avi", ["-c:v", "mpeg4", "-q:v", "4"], ["-c:a", "ac3", "-b:a", "96k"]),
    "prores-mov": (".mov", ["-c:v", "prores_ks", "-profile:v", "0"], ["-c:a", "pcm_s16le"]),
}
# "vfr": 30 fps, then every other frame dropped from half-way (a phone's rate drop).
RATES = ["24000/1001", "25", "30000/1001", "30", "50", "60", "vfr"]
# shape -> coded size, display rotation
SHAPES: dict[str, tuple[str, int | None]] = {
    "odd": ("161x121", None),
    "16x16": ("16x16", None),
    "9:16": ("72x128", None),
    "rotated-90": ("128x72", 90),
    "rotated-270": ("128x72", 270),
}
# Containers whose muxer writes a display rotation FFmpeg reads back.
ROTATING = {".mp4", ".mov", ".mkv"}
# H.264 and HEVC code 4:2:0 pictures in whole chroma samples, so an odd size is 4:4:4 there
# (as screen recorders write it); ProRes codes 4:2:2 at least.
ODD_PIX_FMT = {"h264": "yuv444p", "h264-10bit": "yuv444p10le", "h264-mkv": "yuv444p",
               "hevc": "yuv444p", "prores-mov": "yuv444p10le"}
SECONDS = 1.0


@dataclass(frozen=True)
class Point:
    codec: str
    rate: str
    shape: str
    audio: bool

    @property
    def name(self) -> str:
        suffix = CODECS[self.codec][0]
        rate = self.rate.replace("/", "_")
        sound = "audio" if self.audio else "silent"
        return f"{self.codec}-{rate}-{self.shape.replace(':', 'x')}-{sound}{suffix}"

    @property
    def rotation(self) -> int | None:
        return SHAPES[self.shape][1]


def matrix() -> list[Point]:
    """Every codec with every frame rate; shapes and sound rotate along, so that every codec
    also meets every shape and both sound and silence."""
    shapes = list(SHAPES)
    points = []
    for ci, codec in enumerate(CODECS):
        for ri, rate in enumerate(RATES):
            shape = shapes[(ci + ri) % len(shapes)]
            if SHAPES[shape][1] is not None and CODECS[codec][0] not in ROTATING:
                shape = "9:16"  # AVI, MPEG-PS and WebM carry no display rotation
            points.append(Point(codec, rate, shape, audio=(ci + ri) % 2 == 0))
    return points


def make_input(directory: Path, point: Point) -> Path:
    """Write the clip for ``point`` into ``directory``; returns its path."""
    suffix, vargs, aargs = CODECS[point.codec]
    size, rotation = SHAPES[point.shape]
    width, height = (int(x) for x in size.split("x"))
    rate = "30" if point.rate == "vfr" else point.rate
    # testsrc2 draws even sizes only; the scale makes the odd ones.
    args = ["-f", "lavfi", "-i", f"testsrc2=size={width + width % 2}x{height + height % 2}"
            f":rate={rate}:duration={SECONDS}"]
    if point.audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={SECONDS}"]
    filters = [f"scale={width}:{height}"]
    if point.rate == "vfr":
        filters.append("select='lt(t\\,0.5)+not(mod(n\\,2))'")
        args += ["-fps_mode", "vfr"]
    args += ["-vf", ",".join(filters), *vargs, "-g", "15"]
    if width % 2 and point.codec in ODD_PIX_FMT:
        args += ["-pix_fmt", ODD_PIX_FMT[point.codec]]
    if point.audio:
        args += aargs
    out = directory / point.name
    if rotation is None:
        _ffmpeg([*args, "file:" + str(out)])
        return out
    plain = directory / f".plain-{point.name}"
    _ffmpeg([*args, "file:" + str(plain)])
    _ffmpeg(["-display_rotation", str(rotation), "-i", "file:" + str(plain), "-c", "copy",
             "file:" + str(out)])
    plain.unlink()
    return out


def _ffmpeg(args: list[str]) -> None:
    done = subprocess.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({done.returncode}): {done.stderr.strip()[-1000:]}")
