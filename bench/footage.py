"""``python -m bench.footage``: speed, size and quality on real footage, side by side in one run.

The clips are Debian's ``opencv-doc`` sample videos (``examples/data``; fetched with
``apt-get download opencv-doc`` and ``dpkg -x`` into a cache folder on first use, never
committed): ``Megamind.avi`` as it is (720×528 MPEG-4, AC-3), the first 20 s of ``vtest.avi``
(768×576 MS-MPEG-4, silent), and ``Megamind.avi`` scaled to 1280×720 and 1920×1080 and exported
the way an editor would (x264 ``medium`` CRF 18, AAC 128k), the ad-sized sources.

For each clip (``--repeat`` keeps the fastest of each):

- the original loop (the host's FFmpeg, one process per variation, `media.baseline_command`);
- this project over HTTP (upload, render, ZIP download) and with ``video-refresher make``, and
  the floor: the bare one-process render rebuilt from an HTTP run's manifest (`bare`). These
  three run in interleaved rounds (`run.side_by_side`), so that a slower spell of a shared
  machine slows them alike; the ratios are also given round by round (their median);
- each ``VR_QUALITY`` profile's render command (frames tapped, as the runner) for the trade-off:
  wall and CPU seconds, mean output size against the source's, bits per pixel, SSIM against the
  frames each encoder was given.

Progress goes to stderr, Markdown to stdout (``--write-docs`` also puts it in
docs/benchmarks.md, between its own markers).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import load_settings
from pipeline.media.encoder import DEFAULT_QUALITY, QUALITIES, encoder_for, source_bitrate
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import MediaInfo, probe

from . import machine, media
from .machine import log
from .outputs import quality_baseline, quality_ours
from .report import Results, Timing
from .run import Bench, _interrupt, baseline, clean_env, round_ratios, side_by_side, variant

CACHE = Path.home() / ".cache" / "video-refresher-bench"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
MARK_BEGIN = "<!-- bench.footage:begin -->"
MARK_END = "<!-- bench.footage:end -->"


@dataclass
class ClipResult:
    name: str
    info: MediaInfo
    rows: dict[str, Timing | str] = field(default_factory=dict)
    profiles: dict[str, Timing] = field(default_factory=dict)
    output_bytes: dict[str, list[int]] = field(default_factory=dict)


def fetch_opencv_samples(cache: Path = CACHE) -> Path:
    """``examples/data`` of Debian's ``opencv-doc``, downloaded and unpacked once into ``cache``."""
    data = cache / "opencv-doc" / "usr" / "share" / "doc" / "opencv-doc" / "examples" / "data"
    if (data / "Megamind.avi").exists():
        return data
    work = cache / "download"
    work.mkdir(parents=True, exist_ok=True)
    log("fetching Debian's opencv-doc (apt-get download, dpkg -x)")
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    deb = max(work.glob("opencv-doc_*.deb"), key=lambda p: p.stat().st_mtime)
    subprocess.run(["dpkg", "-x", str(deb), str(cache / "opencv-doc")], check=True)
    return data


def prepare_clips(ffmpeg: str, data: Path, into: Path) -> list[Path]:
    """The four clips the module docstring names (made once into ``into``)."""
    into.mkdir(parents=True, exist_ok=True)
    mm = data / "Megamind.avi"
    clips = [mm, into / "vtest-20s.avi", into / "Megamind-720p.mp4", into / "Megamind-1080p.mp4"]
    base = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    if not clips[1].exists():
        media.run([*base, "-i", f"file:{data / 'vtest.avi'}", "-t", "20", "-c", "copy",
                   f"file:{clips[1]}"])
    for out, size in ((clips[2], "1280:720"), (clips[3], "1920:1080")):
        if not out.exists():
            log(f"exporting {out.name}")
            media.run([*base, "-i", f"file:{mm}", "-vf", f"scale={size}:flags=lanczos",
                       "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p",
                       "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", f"file:{out}"])
    return clips


def bench_clip(b: Bench, profiles: bool) -> ClipResult:
    """Every row for ``b.clip`` (see the module docstring)."""
    assert b.info is not None
    result = ClipResult(b.clip.name, b.info)
    host = b.results.host
    R = result.rows
    R["loop"] = baseline(b, host.path, "loop") if host.path else host.note
    R.update(side_by_side(b))
    result.output_bytes["ours"] = [p.stat().st_size for p, _, _ in R["http"].meta["pairs"]]
    if isinstance(R["loop"], Timing):
        result.output_bytes["loop"] = [p.stat().st_size for p in R["loop"].outputs]
        quality_baseline(b, R["loop"])
    quality_ours(b, R["http"])
    if profiles:
        for q in QUALITIES:
            t = variant(b, f"profile-{q}", q)
            quality_ours(b, t)
            result.profiles[q] = t
            result.output_bytes[q] = [p.stat().st_size for p in t.outputs]
    return result


def _mean(xs: list[int]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _bpp(nbytes: float, info: MediaInfo) -> float:
    pixels = info.display_width * info.display_height * info.fps * info.duration
    return nbytes * 8 / pixels if pixels else 0.0


def _t(x: Timing | str | None, attr: str = "wall", digits: int = 2) -> str:
    if not isinstance(x, Timing):
        return "–"
    value = getattr(x, attr)
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio(a: Timing | str | None, b: Timing | str | None) -> str:
    if not isinstance(a, Timing) or not isinstance(b, Timing) or b.wall <= 0:
        return "–"
    cpu = f" (CPU {a.cpu / b.cpu:.2f}×)" if a.cpu and b.cpu else ""
    return f"{a.wall / b.wall:.2f}×{cpu}"


def _rounds(a: Timing | str | None, b: Timing | str | None) -> str:
    if not isinstance(a, Timing) or not isinstance(b, Timing):
        return "–"
    ratios = round_ratios(a, b)
    if not ratios:
        return "–"
    return (f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}, "
            f"{len(ratios)} rounds)")


def _ssim(t: Timing | str | None) -> str:
    if not isinstance(t, Timing) or not t.ssim:
        return "–"
    ys = [s.y for s in t.ssim]
    return f"{sum(ys) / len(ys):.4f} ({min(ys):.4f})"


def _clip_label(r: ClipResult, source_bytes: int) -> str:
    i = r.info
    rate = source_bitrate(i)
    return (f"{r.name} ({i.display_width}×{i.display_height}, {i.duration:.1f} s, "
            f"{source_bytes / 1e6:.1f} MB, {rate / 1e6:.2f} Mb/s)" if rate else r.name)


def render(results: list[ClipResult], sources: list[Path], n: int, quality: str,
           host: str) -> str:
    """The Markdown tables of one run."""
    lines = [f"N={n} variations per clip; ours at `VR_QUALITY={quality}`; original loop: {host}.",
             "", "### End to end", "",
             "| clip | original loop s | HTTP s | `make` s | floor s | HTTP / floor | "
             "`make` / floor | loop / HTTP | loop / `make` |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r, src in zip(results, sources, strict=True):
        R = r.rows
        lines.append(f"| {_clip_label(r, src.stat().st_size)} | {_t(R['loop'])} | "
                     f"{_t(R['http'])} | {_t(R['make'])} | {_t(R['floor'])} | "
                     f"{_ratio(R['http'], R['floor'])} | {_ratio(R['make'], R['floor'])} | "
                     f"{_ratio(R['loop'], R['http'])} | {_ratio(R['loop'], R['make'])} |")
    lines += ["", "Round by round (HTTP, `make` and the floor interleaved), the median and the "
              "range of the ratios:", ""]
    for r in results:
        lines.append(f"- {r.name}: HTTP / floor {_rounds(r.rows['http'], r.rows['floor'])}; "
                     f"`make` / floor {_rounds(r.rows['make'], r.rows['floor'])}")
    lines += ["", "### Size and quality", "",
              "| clip | ours: mean output / source | ours: bits per pixel | ours: SSIM Y mean (min) "
              "| loop: mean output / source | loop: SSIM Y mean (min) |",
              "|---|---:|---:|---:|---:|---:|"]
    for r, src in zip(results, sources, strict=True):
        size = src.stat().st_size
        ours, loop = _mean(r.output_bytes["ours"]), _mean(r.output_bytes.get("loop", []))
        lines.append(f"| {r.name} | {ours / size:.2f}× | {_bpp(ours, r.info):.3f} | "
                     f"{_ssim(r.rows['http'])} | "
                     f"{(f'{loop / size:.2f}×' if loop else '–')} | {_ssim(r.rows['loop'])} |")
    if any(r.profiles for r in results):
        lines += ["", "### `VR_QUALITY` profiles (the render command, frames tapped)", "",
                  "| clip | profile | wall s | CPU s | mean output / source | bits per pixel | "
                  "SSIM Y mean (min) |", "|---|---|---:|---:|---:|---:|---:|"]
        for r, src in zip(results, sources, strict=True):
            for q, t in r.profiles.items():
                mean = _mean(r.output_bytes[q])
                lines.append(f"| {r.name} | `{q}` | {_t(t)} | {_t(t, 'cpu', 1)} | "
                             f"{mean / src.stat().st_size:.2f}× | {_bpp(mean, r.info):.3f} | "
                             f"{_ssim(t)} |")
    return "\n".join(lines) + "\n"


def write_docs(text: str, path: Path = DOCS) -> None:
    """Put ``text`` between the footage markers of ``path`` (appended when there are none)."""
    write_between(path, MARK_BEGIN, MARK_END, text)


def write_between(path: Path, begin: str, end: str, text: str, heading: str = "") -> None:
    """Put ``text`` between the ``begin`` and ``end`` markers of ``path``; appended (after
    ``heading``) when the markers are not there yet."""
    doc = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{text}{end}"
    if begin in doc and end in doc:
        head, _, rest = doc.partition(begin)
        _, _, tail = rest.partition(end)
        doc = head + block + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + heading + block + "\n"
    path.write_text(doc, encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.footage", description=__doc__.split("\n")[0])
    p.add_argument("--footage", type=Path,
                   help="opencv-doc's examples/data folder (default: fetched into ~/.cache)")
    p.add_argument("-n", "--variations", type=int, default=5)
    p.add_argument("--seed", default="bench")
    p.add_argument("--repeat", type=int, default=1, help="runs per timing, fastest kept")
    p.add_argument("--clips", default="all",
                   help="comma list of clip numbers to run (1-4, in the order above; default all)")
    p.add_argument("--no-profiles", action="store_true", help="skip the VR_QUALITY table")
    p.add_argument("--host-ffmpeg", default="ffmpeg")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--write-docs", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    settings = load_settings(clean_env())
    project = find_ffmpeg(settings.ffmpeg)
    data = args.footage or fetch_opencv_samples()
    clips = prepare_clips(project, data, CACHE / "clips")
    if args.clips != "all":
        clips = [clips[int(k) - 1] for k in args.clips.split(",")]
    host = machine.host_ffmpeg(args.host_ffmpeg, project)
    work = Path(tempfile.mkdtemp(prefix="vr-footage-"))
    results: list[ClipResult] = []
    try:
        for clip in clips:
            ns = argparse.Namespace(variations=args.variations, seed=args.seed,
                                    repeat=args.repeat, wait_quiet=args.wait_quiet)
            res = Results(size="", seconds=0, fps=0, n=args.variations, seed=args.seed,
                          preset="", repeat=args.repeat, quick=False,
                          machine=machine.describe(work), project=machine.project_ffmpeg(project),
                          host=host, started_at="", load_start="")
            b = Bench(ns, work / clip.stem, project, settings.preset, res, clip, probe(clip))
            log(f"== {clip.name}: {encoder_for(b.info, settings.quality)}")
            results.append(bench_clip(b, not args.no_profiles))
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(results, clips, args.variations, settings.quality or DEFAULT_QUALITY,
                  f"`{host.version}`" if host.path else host.note or "none")
    sys.stdout.write(text)
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
