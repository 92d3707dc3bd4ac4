"""FFmpeg command lines of the benchmark: the standard clip, the baseline loop, SSIM.

Pure builders plus ``run`` (``subprocess`` with argument lists, never a shell).
"""

from __future__ import annotations

import random
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .machine import Stalled, StallWatch, thread_states

# The original service's encoder settings, one FFmpeg process per variation (the text).
BASELINE_ENCODE = [
    "-r", "29.97",
    "-b:v", "2000k", "-bufsize", "4000k", "-maxrate", "2500k",
    "-preset", "ultrafast", "-crf", "23", "-threads", "4",
    "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-map_metadata", "-1",
]
# An FFmpeg that uses no CPU at all for this long is deadlocked, not slow.
STALL_SECONDS = 60.0


class FFmpegFailed(RuntimeError):
    pass


def run_process(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
                stall: float = STALL_SECONDS) -> tuple[int, str]:
    """Run a command to its end; returns (exit status, stderr). Raises `Stalled` (after killing
    it) when it and its children sit without using any CPU for ``stall`` seconds."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            watch = StallWatch(proc.pid, stall)
            while True:
                try:
                    proc.wait(timeout=2.0)
                    break
                except subprocess.TimeoutExpired:
                    if watch.stalled():
                        raise Stalled(f"{Path(args[0]).name} used no CPU for {stall:.0f} s "
                                      f"(threads: {thread_states(proc.pid)}); killed it") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        return proc.returncode, err.read().decode("utf-8", "replace")


def run(args: list[str], *, stall: float = STALL_SECONDS) -> None:
    """Run FFmpeg; raise `FFmpegFailed` on a non-zero exit (`Stalled` as `run_process`)."""
    code, stderr = run_process(args, stall=stall)
    if code != 0:
        raise FFmpegFailed(f"{Path(args[0]).name} failed ({code}): {stderr.strip()[-1500:]}")


def clip_command(ffmpeg: str, out: Path, *, size: str, seconds: float, fps: int = 30) -> list[str]:
    """The standard source: ``testsrc2`` (moving pattern, sharp edges, flat colour) and a 440 Hz
    tone, H.264 (x264 ``veryfast`` CRF 20, 2 s GOP) + AAC 128k, MP4 with ``+faststart``."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", str(2 * fps),
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
        "-f", "mp4", "file:" + str(out),
    ]


def grain_clip_command(ffmpeg: str, out: Path, *, seconds: float, size: str = "1920x1080",
                       fps: int = 30) -> list[str]:
    """A heavy-grain source (``testsrc2`` under strong uniform temporal noise): every variation
    of it is a real, verified output at 100+ Mbit/s, so a multi-GB ZIP takes minutes, not hours."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds},"
                             "noise=alls=100:allf=t+u",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4", "file:" + str(out),
    ]


# Bytes per second of one output of the service for `grain_clip_command`'s source at 1080p30,
# measured on FFmpeg 9 (x264 ultrafast CRF 23): used to size the download job, whose real size
# is then reported.
GRAIN_OUTPUT_BYTES_PER_SECOND = 20e6


@dataclass(frozen=True)
class BaselineParams:
    angle: float  # radians
    brightness: float
    contrast: float
    saturation: float

    def vf(self) -> str:
        return (f"rotate={self.angle:.4f}:fillcolor=black@0,"
                f"eq=brightness={self.brightness:.3f}:contrast={self.contrast:.3f}"
                f":saturation={self.saturation:.3f}")

    def reference_chain(self) -> str:
        """The frames the encoder got: the filters, then ``-r 29.97`` as a filter, yuv420p."""
        return f"{self.vf()},fps=30000/1001,format=yuv420p"


def baseline_variations(n: int, seed: str = "baseline") -> list[BaselineParams]:
    """``n`` random variations the way the original service drew them (rotation 0.001–0.01 rad
    either way, mild brightness/contrast/saturation), from a fixed seed."""
    rng = random.Random(seed)
    return [
        BaselineParams(
            angle=rng.uniform(0.001, 0.01) * rng.choice((-1, 1)),
            brightness=rng.uniform(-0.05, 0.05),
            contrast=rng.uniform(0.95, 1.05),
            saturation=rng.uniform(0.9, 1.1),
        )
        for _ in range(n)
    ]


def baseline_command(ffmpeg: str, source: Path, out: Path, params: BaselineParams) -> list[str]:
    """One variation the original way: its own FFmpeg process, decoding the whole source."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
        "-i", "file:" + str(source), "-vf", params.vf(), *BASELINE_ENCODE, "file:" + str(out),
    ]


_SSIM = re.compile(r"SSIM Y:([0-9.]+).*All:([0-9.]+)")


@dataclass(frozen=True)
class Ssim:
    y: float
    all: float


def ssim(ffmpeg: str, encoded: Path, source: Path, chain: str) -> Ssim:
    """SSIM of ``encoded`` against the frames its encoder was given: ``source`` through the
    video filter ``chain`` of that output, computed in the same FFmpeg run (no reference file).

    Frames are paired by number (both sides re-timed to 0, 1, 2…): the project's outputs keep
    every filtered frame, and the baseline's ``-r 29.97`` is replayed by ``fps`` in its chain.
    Checked against references rendered losslessly (x264 QP 0) through the very same command
    lines: identical SSIM to six decimals, for both, in a quarter of the time.
    """
    graph = (f"[1:V:0]{chain},settb=1/30,setpts=N[ref];"
             "[0:v:0]settb=1/30,setpts=N[enc];[enc][ref]ssim")
    done = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", "file:" + str(encoded),
         "-i", "file:" + str(source), "-lavfi", graph, "-f", "null", "-"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    m = _SSIM.search(done.stderr)
    if done.returncode != 0 or not m:
        raise FFmpegFailed(f"ssim failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return Ssim(float(m.group(1)), float(m.group(2)))
