"""Distinctness measured on real footage: each effect alone, default variations, and the audio.

``python -m bench.distinctness [--footage DIR] [--seeds 4]`` renders, for every clip in
``DIR`` (default: Debian's ``opencv-doc`` samples, fetched as ``bench.media`` does), one
variation per single effect and ``--seeds`` × 5 default variations (and the same with
``+pitch``), all through the service's own render command with its frame taps, and prints the
PDQ and Chromaprint figures as Markdown (docs/distinctness.md). A voice-over made with
``espeak-ng`` is muxed onto each clip first, so the audio figures are of speech.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from pipeline.media import distinct, fingerprint
from pipeline.media.command import build_render_command
from pipeline.media.effects import EffectOptions, VariationParams, sample_variations
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe

VOICE = ("This spring, everything you love about the city is closer than you think. Order "
         "today and get free delivery on your first three orders. Fresh food, fast, and on "
         "your terms. Download the app now and see what is new near you.")
SINGLE = {
    "none (re-encode)": VariationParams(),
    "mirror": VariationParams(mirror=True),
    "zoom 3 %": VariationParams(zoom=1.03),
    "zoom 6 % + pan": VariationParams(zoom=1.06, pan_x=0.1, pan_y=0.8),
    "colour": VariationParams(brightness=0.03, contrast=1.05, saturation=1.1, gamma=1.04),
    "grain": VariationParams(noise=1, noise_seed=7),
    "speed 0.95×": VariationParams(speed=0.95),
    "speed 1.06×": VariationParams(speed=1.06),
    "tilt 0.6°": VariationParams(rotation_deg=0.6, zoom=1.025),
    "hue 4°": VariationParams(hue_deg=4.0),
    "gain −1 dB": VariationParams(gain_db=-1.0),
    "pitch +4 %": VariationParams(pitch=1.04),
}


def with_voice(ffmpeg: str, clip: Path, work: Path) -> Path:
    """The clip with a voice-over as its sound (espeak-ng, looped to the clip's length)."""
    wav = work / "voice.wav"
    if not wav.exists():
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), VOICE], check=True)
    out = work / f"{clip.stem}-voice.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", f"file:{clip}",
                    "-stream_loop", "-1", "-i", f"file:{wav}", "-map", "0:v:0", "-map", "1:a:0",
                    "-shortest", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", f"file:{out}"],
                   check=True)
    return out


async def measure(ffmpeg: str, source: Path, variations: list[VariationParams],
                  work: Path) -> tuple[list[dict], float, float]:
    """Render ``variations`` of ``source`` in one process with its taps; the figures per
    variation, the render's wall seconds and the seconds spent reading and hashing."""
    info = probe(source)
    outs = [work / f"o{i:02d}.mp4" for i in range(len(variations))]
    taps = distinct.Taps.plan(info.duration, info.fps, info.display_width, info.display_height,
                              [distinct.frames_path(o) for o in outs], work / "source.frames")
    started = time.perf_counter()
    subprocess.run(build_render_command(ffmpeg, source, info, variations, outs, taps=taps),
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)
    render = time.perf_counter() - started
    started = time.perf_counter()
    src = distinct.frame_hashes(distinct.read_frames_file(taps.source, taps.size))
    hashes = [distinct.frame_hashes(distinct.read_frames_file(p, taps.size)) for p in taps.outputs]
    table = distinct.DistanceTable.measure(src, hashes, distinct.MATCH_THRESHOLD)
    hashing = time.perf_counter() - started
    audio = await fingerprint.audio_figures(ffmpeg, source, outs)
    figures = [{**(table.report(i) or {}), "audio": audio[i]} for i in range(len(outs))]
    return figures, render, hashing


def row(name: str, figures: list[dict]) -> str:
    src = [f["video"]["sourceDistance"] for f in figures]
    hits = sum(f["video"]["sourceMatches"] for f in figures)
    frames = sum(f["video"]["frames"] for f in figures)
    matched = sum(1 for f in figures if f["video"]["sourceMatches"] > 0
                  or (f["video"]["siblingMatches"] or 0) > 0)
    sims = [f["audio"]["sourceSimilarity"] for f in figures
            if f["audio"] and f["audio"]["sourceSimilarity"] is not None]
    audio = f"{min(sims):.2f}–{max(sims):.2f}" if sims else "–"
    return (f"| {name} | {min(src)} / {statistics.median_low(src)} / {max(src)} | "
            f"{hits} of {frames} | {matched} of {len(figures)} | {audio} |")


async def run(footage: Path, seeds: int, work: Path) -> None:
    ffmpeg = find_ffmpeg()
    head = ("| | PDQ to source (min / median / max) | frames matching the source | "
            "variations that would re-roll | audio similarity to source |\n|---|---|---|---|---|")
    for clip in sorted(footage.glob("*.avi")):
        source = with_voice(ffmpeg, clip, work)
        print(f"\n### {clip.name} ({probe(source).display_width}×{probe(source).display_height}, "
              f"{probe(source).duration:.1f} s, espeak-ng voice-over)\n\n{head}")
        for name, params in SINGLE.items():
            figures, _, _ = await measure(ffmpeg, source, [params], work)
            print(row(name, figures))
        for label, options in (("default", EffectOptions()), ("default +pitch",
                                                              EffectOptions.parse("+pitch"))):
            all_figures, renders, hashings = [], 0.0, 0.0
            for s in range(seeds):
                variations = sample_variations(f"bench-{s}", 0, 5, options)
                figures, render, hashing = await measure(ffmpeg, source, variations, work)
                all_figures += figures
                renders, hashings = renders + render, hashings + hashing
            print(row(f"{label} ({seeds} × 5)", all_figures))
            print(f"<!-- {label}: render {renders:.1f} s, reading + hashing {hashings:.2f} s -->")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.distinctness")
    parser.add_argument("--footage", type=Path, required=True,
                        help="a folder of .avi clips (opencv-doc's examples/data)")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args(argv)
    if not shutil.which("espeak-ng"):
        print("espeak-ng is needed for the voice-over (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(run, args.footage, args.seeds, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


