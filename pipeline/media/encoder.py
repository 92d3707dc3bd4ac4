"""How every variation is encoded: the x264 profile (``VR_QUALITY``), a bitrate cap relative to
the source, AAC, and the MP4 options. Pure.

Three profiles, measured on real footage (docs/benchmarks.md, "Speed, size and quality"):

- ``fast``: x264 ``ultrafast``, CRF 23. The quickest, but ultrafast has no CABAC, B-frames or
  deblocking, so its files run 1.0-1.6x their source's size.
- ``balanced`` (the default): ``ultrafast`` with the cheap parts of ``superfast`` put back
  (CABAC, three fixed B-frames, deblocking, quarter-pixel motion); see `PROFILES`.
- ``small``: x264 ``veryfast``, CRF 23: the smallest files, at about twice the encoding CPU.

The sound is AAC at `AUDIO_BITRATE` from FFmpeg's own encoder with its ``fast`` coder
(`AUDIO_CODER`). Its default, ``twoloop``, now and then rang a loud burst into speech: of
150 variations of a voice-over limited at -3 dBFS for a -14 LUFS target, two came out over the
-1.5 dBTP ceiling (+2.5 and +3.6 dBTP), and at one speed in six a sample was off by 0.3-1.2
(full scale 1.0). With ``fast`` all 150 stayed at -2.4 dBTP or under (errors under 0.18); it
scored higher on speech (PESQ wideband, median 4.5 against 3.9 on limited voices, 4.55 against
4.54 on an untouched one) and encoded a 30 s mix in 40 % of the time.

Whatever the profile, x264's VBV caps the video at `CAP_FACTOR` times the source's own bitrate
(never below `MIN_MAXRATE`), so no input, however thin its source's bitrate, makes outputs
several times its size. The cap only bites where constant quality would spend more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config imports this module: it stays free of PyAV
    from pipeline.media.probe import MediaInfo

QUALITIES = ("fast", "balanced", "small")
DEFAULT_QUALITY = "balanced"
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)
AUDIO_BITRATE = "128k"
AUDIO_CODER = "fast"  # FFmpeg's AAC encoder's search (module docstring)
# The video's peak bitrate: at most this many times the source's (whole file, bits per second),
# over a buffer of two seconds.
CAP_FACTOR = 1.5
BUFFER_SECONDS = 2.0
MIN_MAXRATE = 250_000


@dataclass(frozen=True)
class Profile:
    """An x264 preset, its constant quality (CRF) and the x264 options changed from it."""

    preset: str
    crf: int
    x264_params: str = ""


PROFILES: dict[str, Profile] = {
    "fast": Profile("ultrafast", 23),
    "balanced": Profile("ultrafast", 23, "cabac=1:bframes=3:b-adapt=0:deblock=1:subme=1"),
    "small": Profile("veryfast", 23),
}


@dataclass(frozen=True)
class Encoder:
    """The output options of one variation's MP4 (`output_args`), the same for every variation
    of one source."""

    preset: str = "ultrafast"
    crf: int = 23
    x264_params: str = ""
    maxrate: int | None = None  # bits per second; None: no cap
    bufsize: int | None = None
    threads: int | None = None  # per encoder; None: FFmpeg's choice
    # Threads of the render's filter graph (FFmpeg's -filter_complex_threads, `filter_threads`);
    # None: FFmpeg's choice (one per core).
    filter_threads: int | None = None
    audio_bitrate: str = AUDIO_BITRATE
    extra: tuple[str, ...] = field(default=())  # more video options, for experiments

    def __post_init__(self) -> None:
        if self.preset not in X264_PRESETS:
            raise ValueError(f"unknown x264 preset {self.preset!r}")

    def video_args(self) -> list[str]:
        """H.264 ``yuv420p`` at the profile's quality, capped, without x264's version SEI."""
        args = ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf)]
        if self.x264_params:
            args += ["-x264-params", self.x264_params]
        if self.maxrate:
            args += ["-maxrate", str(self.maxrate), "-bufsize", str(self.bufsize or self.maxrate)]
        args += [*self.extra, "-pix_fmt", "yuv420p"]
        if self.threads is not None:
            args += ["-threads", str(self.threads)]
        if self.filter_threads is not None:
            # A global option, which FFmpeg takes wherever it stands: it is given with every
            # output so that the manifest's encoderArgs rebuild the render as it ran.
            args += ["-filter_complex_threads", str(self.filter_threads)]
        return args + [
            # Timestamps divided by the speed factor need a finer clock than the default
            # 1/fps: rounded onto it, a 1.06x output kept the source's frame spacing (so the
            # picture was not sped up at all) and a 0.95x one had doubled gaps.
            "-enc_time_base:v", "1:90000",
            # x264 writes its version and settings into the stream as an SEI message.
            "-bsf:v", "filter_units=remove_types=6",
        ]

    def audio_args(self) -> list[str]:
        """AAC at the bitrate, with `AUDIO_CODER` and no version tag."""
        return ["-c:a", "aac", "-b:a", self.audio_bitrate, "-aac_coder", AUDIO_CODER,
                "-flags:a", "+bitexact"]

    def output_args(self, has_audio: bool) -> list[str]:
        """Every option of one output after its ``-map`` s and before its path: what the
        manifest records as ``encoderArgs`` (no paths)."""
        args = self.video_args()
        if has_audio:
            args += self.audio_args()
        return args + [
            "-map_metadata", "-1",
            "-map_chapters", "-1",
            # Bit-exact mode leaves out the "Lavf…"/"Lavc…" version tags; an empty value
            # drops the stream's remaining "encoder" tag.
            "-fflags", "+bitexact",
            "-flags:v", "+bitexact",
            "-metadata:s:v", "encoder=",
            "-movflags", "+faststart",
            "-f", "mp4",
        ]


def usable_cores() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def encoder_threads(outputs: int, cores: int | None = None) -> int | None:
    """Threads per x264 encoder for a render of ``outputs`` variations: one when there are at
    least as many encoders as cores (they keep every core busy side by side, and x264's frame
    threads only add their own overhead: on 2 cores, five 720p encoders took 5-9 % less wall
    time and 5 % less CPU with one thread each), else x264's own choice (None)."""
    cores = cores or usable_cores()
    return 1 if outputs >= cores else None


def filter_threads(outputs: int, cores: int | None = None) -> int | None:
    """Threads of the filter graph for a render of ``outputs`` files: `encoder_threads` 's rule,
    one when there are at least as many encoders as cores, else FFmpeg's choice (None, one per
    core). The encoders keep every core busy then, and slice threads in the filters only cost
    their hand-offs: on 2 cores five variations took 13-16 % less wall time below 720p, 9 % less
    at 720p and 2 % less at 1080p with one filter thread (docs/benchmarks.md), with
    byte-identical files."""
    return encoder_threads(outputs, cores)


def source_bitrate(info: MediaInfo) -> int | None:
    """The source file's mean bitrate (bits per second), or None where it cannot be told."""
    if info.size <= 0 or info.duration <= 0:
        return None
    return int(info.size * 8 / info.duration)


def encoder_for(info: MediaInfo, quality: str = DEFAULT_QUALITY, *, preset: str | None = None,
                threads: int | None = None, filter_threads: int | None = None) -> Encoder:
    """The encoder of ``info`` 's variations: ``quality`` 's profile (``preset`` replaces its
    x264 preset and drops its option changes), capped relative to the source's bitrate;
    ``threads`` per x264 encoder and ``filter_threads`` for the filter graph (None: FFmpeg's
    choice; the runner's are `encoder_threads` and `filter_threads`)."""
    if quality not in PROFILES:
        raise ValueError(f"unknown quality {quality!r}; one of {', '.join(QUALITIES)}")
    profile = PROFILES[quality]
    params = profile.x264_params
    if preset is not None and preset != profile.preset:
        params = ""
    rate = source_bitrate(info)
    maxrate = max(MIN_MAXRATE, int(rate * CAP_FACTOR)) if rate else None
    return Encoder(
        preset=preset or profile.preset, crf=profile.crf, x264_params=params, maxrate=maxrate,
        bufsize=int(maxrate * BUFFER_SECONDS) if maxrate else None, threads=threads,
        filter_threads=filter_threads,
    )


def file_url(path: Path | str) -> str:
    """``file:`` + path: keeps FFmpeg from reading a name like ``concat:…`` or ``-x.mp4`` as a
    protocol or an option."""
    return "file:" + os.fspath(path)
