"""``python -m bench.formats``: what placement formats cost, measured with ``video-refresher
make`` on real footage (Debian's opencv-doc, as ``python -m bench.footage`` fetches it).

Rows, run interleaved round after round (the medians are kept): N variations in the source's
shape; N × 3 formats (9:16, 1:1, 4:5) cropped, and padded, from one render each; the same three
formats as three separate jobs of N; and N × 3 cropped with a -14 LUFS loudness target. Each
row gives wall and CPU seconds (of ``make`` and its FFmpeg children), the files' total size,
and the ratios that matter: N × 3 against N × 1, and against three separate jobs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from pipeline.config import load_settings
from pipeline.media.ffmpeg import find_ffmpeg

from . import media
from .footage import CACHE, fetch_opencv_samples, prepare_clips, write_between
from .machine import log
from .run import children_cpu, clean_env
from .service import ROOT

DOCS = ROOT / "docs" / "benchmarks.md"
MARK_BEGIN = "<!-- bench.formats:begin -->"
MARK_END = "<!-- bench.formats:end -->"
SHAPES = "9:16,1:1,4:5"
# label → the runs of `make` it takes (extra arguments of each).
ROWS: dict[str, list[list[str]]] = {
    "N × 1 (source shape)": [[]],
    "N × 3, crop, one render": [["--formats", SHAPES]],
    "N × 3, pad, one render": [["--formats", SHAPES, "--fit", "pad"]],
    "3 separate jobs of N, crop": [["--formats", f] for f in SHAPES.split(",")],
    "N × 3, crop, -14 LUFS": [["--formats", SHAPES, "--loudness", "-14"]],
}


def make_once(clip: Path, n: int, seed: str, extra: list[str],
              work: Path) -> tuple[float, float, int, list[dict]]:
    """One ``make`` run: wall s, CPU s, bytes of the files, the manifest's entries."""
    out = work / "out.zip"
    cmd = [sys.executable, "-m", "web.cli", "make", str(clip), "-n", str(n), "--seed", seed,
           "-o", str(out), "--quiet", *extra]
    t0, c0 = time.monotonic(), children_cpu()
    code, stderr = media.run_process(cmd, cwd=ROOT, env=clean_env())
    wall, cpu = time.monotonic() - t0, children_cpu() - c0
    if code != 0:
        raise RuntimeError(f"make {' '.join(extra)} failed: {stderr.strip()[-1500:]}")
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        size = sum(i.file_size for i in zf.infolist() if i.filename.endswith(".mp4"))
    out.unlink()
    return wall, cpu, size, manifest["variations"]


def run_rows(clip: Path, n: int, seed: str, rounds: int, work: Path) -> dict[str, dict]:
    results: dict[str, dict] = {k: {"wall": [], "cpu": [], "size": 0, "files": []} for k in ROWS}
    for r in range(rounds):
        for label, runs in ROWS.items():
            log(f"round {r + 1}/{rounds}: {label}")
            wall = cpu = 0.0
            size, files = 0, []
            for extra in runs:
                w, c, s, entries = make_once(clip, n, seed, extra, work)
                wall, cpu, size, files = wall + w, cpu + c, size + s, files + entries
            results[label]["wall"].append(wall)
            results[label]["cpu"].append(cpu)
            results[label]["size"], results[label]["files"] = size, files
    return results


def render(clip: Path, n: int, rounds: int, results: dict[str, dict]) -> str:
    med = {k: (statistics.median(v["wall"]), statistics.median(v["cpu"])) for k, v in results.items()}
    one = med["N × 1 (source shape)"]
    separate = med["3 separate jobs of N, crop"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {clip.name}, "
        f"N={n}, medians of {rounds} interleaved rounds, `video-refresher make` (wall from "
        "process start to ZIP written; CPU of make and its FFmpeg children).",
        "",
        "| run | files | wall s | CPU s | MB | wall / N × 1 | wall / 3 separate jobs |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, v in results.items():
        wall, cpu = med[label]
        lines.append(f"| {label} | {len(v['files'])} | {wall:.2f} | {cpu:.2f} | "
                     f"{v['size'] / 1e6:.1f} | {wall / one[0]:.2f}× | {wall / separate[0]:.2f}× |")
    loud = [f["loudness"] for f in results["N × 3, crop, -14 LUFS"]["files"] if f["loudness"]]
    if loud:
        lines += ["", "Loudness at -14 LUFS, measured on every file: integrated "
                  f"{min(x['integrated'] for x in loud):.1f} to {max(x['integrated'] for x in loud):.1f}"
                  f" LUFS, true peak at most {max(x['truePeak'] for x in loud):.1f} dBTP."]
    return "\n".join(lines) + "\n"


def write_docs(text: str, path: Path = DOCS) -> None:
    write_between(path, MARK_BEGIN, MARK_END, text, "## Placement formats\n\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.formats", description=__doc__.split("\n")[0])
    p.add_argument("--clip", type=Path, help="a video (default: Megamind exported at 720p)")
    p.add_argument("-n", "--variations", type=int, default=5)
    p.add_argument("--seed", default="bench")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)
    clip = args.clip
    if clip is None:
        ffmpeg = find_ffmpeg(load_settings(clean_env()).ffmpeg)
        clip = prepare_clips(ffmpeg, fetch_opencv_samples(), CACHE / "clips")[2]
    work = Path(tempfile.mkdtemp(prefix="vr-formats-"))
    try:
        text = render(clip, args.variations, args.rounds,
                      run_rows(clip, args.variations, args.seed, args.rounds, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(text)
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
