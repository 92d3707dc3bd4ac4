"""Loudness targets: measured EBU R128 loudness (FFmpeg's ``ebur128``), one gain to the target,
and a true-peak limiter; then each output measured on its own.

Before the render (`plan`), the source's sound is measured: integrated loudness and true
peak. Where the gain to the target keeps the true peak under `LIMIT`, that gain is all
(a plain ``volume``: the sound is unchanged but for its level). Where it would not (speech and
music peak 15-20 dB over their loudness, -14 LUFS leaves 12.5), the limiter holds the peaks and
takes some loudness with it: the gain is found by measuring the limited sound again (secant
steps, `MAX_PASSES` audio-only decodes at most, each a few hundred times real time) until it
lands within `CLOSE_ENOUGH` of the target. In the render each variation's sound, after its
effects, gets that gain and the limiter (`Normalise.filter`; its own random gain is dropped:
the target sets the level). Each output is then measured (`measure_output`) and its figures are
reported in the API and the manifest.

FFmpeg's ``loudnorm`` was tried first: in linear mode it pads its last 100 ms block (a 3.03 s
output came out 3.10 s long, out of sync with its picture), and where it falls back to its
dynamic mode a 5 s voice-over at -20 LUFS came out at -15.8 for a -14 target.

Pure command building and parsing, with the FFmpeg runs at the edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.media.child import run_child
from pipeline.media.encoder import file_url
from pipeline.media.formats import TRUE_PEAK

# The limiter's ceiling (dBFS, on 4× oversampled sound, so about true peak), under the
# outputs' `formats.TRUE_PEAK` by what AAC encoding adds to the peaks of limited sound: a
# voice-over pushed to -14 LUFS and limited at -2.0 dBFS measured -2.0 dBTP before the AAC
# encode and -1.0 to -1.7 after it (-0.2 with more gain). The attack matters as much: the
# same voice 20 dB up, limited at -3.0 dBFS, came out of the encoder at +0.8 dBTP with a 5 ms
# attack and -2.8 with 20 ms (a slower gain change leaves less distortion for AAC to ring).
# Those figures are from AAC's default search; with the outputs' (`encoder.AUDIO_CODER`), 150
# variations of a voice limited here for -14 LUFS came out at -3.0 to -2.4 dBTP.
LIMIT = TRUE_PEAK - 1.5
ATTACK_MS = 20
# The rate the limiter works at (true peaks lie between samples), and the outputs' rate.
OVERSAMPLED_RATE = 192000
OUTPUT_RATE = 48000
# Gain search: stop within this many LU of the target, after at most this many measurements.
CLOSE_ENOUGH = 0.3
MAX_PASSES = 4
MAX_GAIN = 30.0  # dB: a near-silent source is not blown up past this


class LoudnessUnavailable(Exception):
    """The sound's loudness could not be measured (silence, a decoder error)."""


@dataclass(frozen=True)
class Level:
    """What ``ebur128`` measured: integrated loudness (LUFS), true peak (dBTP), range (LU)."""

    integrated: float
    true_peak: float
    range: float

    def report(self, target: float) -> dict:
        """The API's and the manifest's ``loudness``."""
        return {"target": target, "integrated": self.integrated, "truePeak": self.true_peak,
                "range": self.range}


@dataclass(frozen=True)
class Normalise:
    """A source's way to its loudness target: the gain (dB) before the limiter."""

    target: float
    gain_db: float

    def filter(self) -> str:
        return gain_filter(self.gain_db)


def gain_filter(gain_db: float) -> str:
    """The gain, then the limiter at `LIMIT` on oversampled sound (a no-op where the peaks stay
    under it), back at `OUTPUT_RATE`; the limiter's look-ahead delay is compensated."""
    limit = 10 ** (LIMIT / 20)
    return (f"volume={gain_db:.2f}dB,aresample={OVERSAMPLED_RATE},"
            f"alimiter=limit={limit:.4f}:level=false:attack={ATTACK_MS}:release=60:latency=1,"
            f"aresample={OUTPUT_RATE}")


def measure_command(ffmpeg: str, path: Path | str, chain: str | None = None) -> list[str]:
    """The first sound stream of ``path`` (through ``chain``) into ``ebur128``, whose summary
    FFmpeg prints on stderr."""
    measure = "ebur128=peak=true:framelog=quiet"
    return [ffmpeg, "-hide_banner", "-nostdin", "-v", "info", "-i", file_url(path),
            "-map", "0:a:0", "-vn", "-sn", "-dn",
            "-af", f"{chain},{measure}" if chain else measure, "-f", "null", "-"]


_SUMMARY = {
    "integrated": re.compile(r"Integrated loudness:\s*I:\s*(-?[\d.]+|-inf) LUFS"),
    "range": re.compile(r"Loudness range:\s*LRA:\s*(-?[\d.]+) LU"),
    "true_peak": re.compile(r"True peak:\s*Peak:\s*(-?[\d.]+|-inf) dBFS"),
}


def parse_summary(stderr: str) -> Level:
    """The last ``ebur128`` summary in FFmpeg's stderr. Raises ``LoudnessUnavailable``."""
    found = {}
    for key, pattern in _SUMMARY.items():
        matches = pattern.findall(stderr)
        if not matches:
            raise LoudnessUnavailable("no loudness summary in FFmpeg's output")
        if matches[-1] == "-inf":
            raise LoudnessUnavailable("the sound is silent")
        found[key] = float(matches[-1])
    return Level(**found)


async def measure(ffmpeg: str, path: Path | str, chain: str | None = None) -> Level:
    """`parse_summary` of one measurement run. Raises ``LoudnessUnavailable``."""
    done = await run_child(measure_command(ffmpeg, path, chain))
    if done.returncode != 0:
        raise LoudnessUnavailable("FFmpeg could not measure the sound's loudness")
    return parse_summary(done.stderr.decode("utf-8", "replace"))


def next_gain(target: float, tried: list[tuple[float, float]]) -> float:
    """The gain to try next, from ``(gain, measured loudness)`` pairs: the last one moved by
    what is missing, scaled by how much loudness the last step bought (secant)."""
    g1, i1 = tried[-1]
    step = target - i1
    if len(tried) >= 2:
        g0, i0 = tried[-2]
        slope = (i1 - i0) / (g1 - g0) if g1 != g0 else 1.0
        step /= min(1.0, max(0.2, slope))
    return min(MAX_GAIN, g1 + step)


async def plan(ffmpeg: str, path: Path | str, target: float) -> Normalise:
    """The gain that brings ``path`` 's sound to ``target`` through the limiter (module
    docstring). Raises ``LoudnessUnavailable`` (silence)."""
    source = await measure(ffmpeg, path)
    gain = min(MAX_GAIN, target - source.integrated)
    if source.true_peak + gain <= LIMIT:
        return Normalise(target, round(gain, 2))
    tried: list[tuple[float, float]] = []
    for _ in range(MAX_PASSES):
        level = await measure(ffmpeg, path, gain_filter(gain))
        tried.append((gain, level.integrated))
        if abs(level.integrated - target) <= CLOSE_ENOUGH:
            break
        gain = next_gain(target, tried)
    best = min(tried, key=lambda t: abs(t[1] - target))
    return Normalise(target, round(best[0], 2))


async def measure_output(ffmpeg: str, path: Path | str, target: float) -> dict | None:
    """One output's ``loudness`` figures; None when they cannot be taken."""
    try:
        return (await measure(ffmpeg, path)).report(target)
    except LoudnessUnavailable:
        return None
