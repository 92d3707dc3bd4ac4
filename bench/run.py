"""``python -m bench``: time the one-process-per-variation baseline, this project (HTTP API and
``video-refresher make``) and the bare FFmpeg floor on one generated clip; measure encode quality
(SSIM against a lossless render of the same graph) and the server's memory and speed while it
streams a 2 GB upload and a multi-GB ZIP download; print Markdown tables.

Everything runs on this machine, one step after the other (HTTP, ``make`` and the floor in
interleaved rounds, `side_by_side`), in a scratch folder that is removed at the end (``--keep``
keeps it). Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.config import ConfigError, load_settings
from pipeline.media.command import build_render_command
from pipeline.media.effects import EffectOptions, sample_variations
from pipeline.media.encoder import encoder_for, encoder_threads, filter_threads
from pipeline.media.ffmpeg import FFmpegNotFound, find_ffmpeg
from pipeline.media.probe import MediaInfo, probe
from pipeline.media.quality import plan_taps

from . import machine, media
from .bare import bare_command
from .machine import Stalled, StallWatch, log
from .outputs import compare_outputs, http_is_floor, quality_baseline, quality_ours, unzip_outputs
from .report import (
    IO_ROWS,
    ROW_BASELINE_HOST,
    ROW_BASELINE_PROJECT,
    ROW_FLOOR,
    ROW_HTTP,
    ROW_MAKE,
    Results,
    SweepRow,
    Timing,
    render,
    write_docs,
)
from .service import PASS_THROUGH, ROOT, Server, cpu_seconds, status_kb, wait_job
from .service import download as http_download
from .service import upload as http_upload
from .streaming import streaming_io

DOCS = ROOT / "docs" / "benchmarks.md"
GB = 1000**3
QUICK = {"size": "320x180", "seconds": 2.0, "n": 2}
FULL = {"size": "1920x1080", "seconds": 20.0, "n": 5}
DOWNLOAD_VARIATIONS = 20
# Deadlocked runs (see `machine.StallWatch`) discarded and retried before giving up.
MAX_STALLS = 3
STALLS: list[str] = []  # what each deadlocked run looked like, for the notes
# The render command's variants timed by --sweep: (label, `VR_QUALITY`, per-encoder threads (-1:
# as the runner chooses, 0: x264's own choice), `effects` field), each the service's own command
# for video 0 of the job, frames tapped.
SWEEP = (
    ("`VR_QUALITY=balanced` (the default)", "balanced", -1, ""),
    ("`VR_QUALITY=fast`", "fast", -1, ""),
    ("`VR_QUALITY=small`", "small", -1, ""),
    ("balanced, x264's own thread count", "balanced", 0, ""),
    ("balanced, `-threads 2` per encoder", "balanced", 2, ""),
    ("balanced, effects `-noise` (no grain)", "balanced", -1, "-noise"),
    ("balanced, effects `+rotation` (opt-in tilt)", "balanced", -1, "+rotation"),
    ("balanced, effects `+hue` (opt-in hue shift)", "balanced", -1, "+hue"),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Video Refresher against the one-FFmpeg-per-variation baseline.",
    )
    p.add_argument("--size", help=f"clip size WxH (default {FULL['size']}; --quick {QUICK['size']})")
    p.add_argument("--seconds", type=float,
                   help=f"clip length (default {FULL['seconds']:g}; --quick {QUICK['seconds']:g})")
    p.add_argument("--fps", type=int, default=30, help="clip frame rate (default 30)")
    p.add_argument("-n", "--variations", type=int,
                   help=f"variations per run (default {FULL['n']}; --quick {QUICK['n']})")
    p.add_argument("--seed", default="bench", help="job seed of ours and the floor (default bench)")
    p.add_argument("--repeat", type=int, default=1, help="runs per timing, best kept (default 1)")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: small clip, N=2, no 2 GB transfers, no sweep")
    p.add_argument("--host-ffmpeg", default="ffmpeg",
                   help="the host's FFmpeg for the baseline (default: `ffmpeg` on PATH; '' skips)")
    p.add_argument("--no-io", action="store_true", help="skip the 2 GB upload/download/disk part")
    p.add_argument("--download-gb", type=float, default=1.0,
                   help="target size of the ZIP for the download measurement (default 1.0; "
                        "rendering it takes about a minute per GB on 2 cores)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each timed run, wait up to SECONDS for other processes to leave "
                        "the CPUs idle (< 0.3 cores busy over 5 s); default 0: do not wait")
    p.add_argument("--sweep", action="store_true",
                   help="also time the render command at each VR_QUALITY, thread count and effects")
    p.add_argument("--no-quality", action="store_true", help="skip the SSIM measurements")
    p.add_argument("--work-dir", type=Path,
                   help="where the scratch folder goes (default: the system temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--write-docs", action="store_true",
                   help=f"also write the tables into {DOCS.relative_to(ROOT)}")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    args.size = args.size or defaults["size"]
    args.seconds = args.seconds or defaults["seconds"]
    args.variations = args.variations or defaults["n"]
    if args.quick:
        args.no_io = True
    w, _, h = args.size.partition("x")
    if not (w.isdigit() and h.isdigit()):
        p.error("--size must look like 1280x720")
    if not 1 <= args.variations <= 20:
        p.error("-n must be between 1 and 20")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


# -- timing ---------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    project: str  # the project's FFmpeg binary
    preset: str | None  # VR_PRESET, None: the quality profile's
    results: Results
    clip: Path = Path()
    info: MediaInfo | None = None

    def sub(self, name: str) -> Path:
        d = self.work / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


Once = Callable[[], tuple[float, float | None, list[Path], str]]


def best_of(repeat: int, once: Once, wait_quiet: float = 0.0) -> Timing:
    """Run ``once`` ``repeat`` times; keep the fastest. ``once`` returns (wall, cpu, outputs, note).

    With ``wait_quiet`` > 0, each run first waits up to that many seconds for other processes
    to leave the CPUs alone (`machine.wait_quiet`)."""
    return best_of_each(repeat, {"": once}, wait_quiet)[""]


def best_of_each(repeat: int, onces: dict[str, Once], wait_quiet: float = 0.0
                 ) -> dict[str, Timing]:
    """`best_of` for several runs at once, interleaved: round by round, each ``once`` runs one
    time (the order turns by one each round), so that all of them meet the machine in the same
    state; a slower spell on a shared machine then slows each alike instead of one of them.
    Each Timing's ``walls`` lists its runs round by round (`round_ratios`)."""
    runs = {name: _Runs() for name in onces}
    names = list(onces)
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runs[name].run_once(onces[name], wait_quiet)
    return {name: runs[name].timing(repeat) for name in names}


def round_ratios(a: Timing, b: Timing) -> list[float]:
    """``a`` 's wall over ``b`` 's, round by round (`best_of_each`)."""
    return [x / y for x, y in zip(a.walls, b.walls, strict=False) if y > 0]


@dataclass
class _Runs:
    """One ``once`` 's runs so far (`best_of_each`)."""

    best: Timing | None = None
    walls: list[float] = field(default_factory=list)
    stalls: int = 0

    def run_once(self, once: Once, wait_quiet: float) -> None:
        """One run; a deadlocked one is discarded and run again (`MAX_STALLS` at most)."""
        while True:
            if wait_quiet > 0:
                machine.wait_quiet(wait_quiet, log=log)
            load = machine.load()
            busy0, self0 = machine.busy_cpu_seconds(), machine.self_cpu_seconds()
            try:
                wall, cpu, outs, note = once()
                break
            except Stalled as exc:
                STALLS.append(f"{time.strftime('%H:%M:%S')} {exc}")
                self.stalls += 1
                log(f"STALLED: {exc}; run discarded"
                    + ("" if self.stalls < MAX_STALLS else ", giving up"))
                if self.stalls >= MAX_STALLS:
                    raise
        busy = machine.busy_cpu_seconds() - busy0
        ours = (cpu or 0.0) + machine.self_cpu_seconds() - self0
        others = max(0.0, busy - ours) / wall if cpu is not None and wall > 0 else None
        self.walls.append(wall)
        t = Timing(wall=wall, cpu=cpu, load=load, others=others,
                   out_bytes=sum(p.stat().st_size for p in outs), note=note)
        # Every repeat writes the same paths with the same bytes (renders are deterministic),
        # so the files on disk are the best run's too.
        t.outputs = outs
        if self.best is None or t.wall < self.best.wall:
            self.best = t

    def timing(self, repeat: int) -> Timing:
        best = self.best
        assert best is not None
        best.walls = self.walls
        if self.stalls:
            best.note = (best.note + "; " if best.note else "") + (
                f"**{self.stalls} run(s) deadlocked** (FFmpeg used no CPU for "
                f"{media.STALL_SECONDS:.0f} s; killed, discarded, run again)")
        if repeat > 1:
            best.note = (best.note + "; " if best.note else "") + "runs: " + ", ".join(
                f"{w:.2f}" for w in self.walls)
        return best


# -- steps ----------------------------------------------------------------------------------------


def make_clip(b: Bench) -> None:
    a = b.args
    b.clip = b.work / "clip.mp4"
    log(f"generating the clip: {a.size}, {a.seconds:g} s, {a.fps} fps")
    media.run(media.clip_command(b.project, b.clip, size=a.size, seconds=a.seconds, fps=a.fps))
    b.info = probe(b.clip)
    b.results.clip_bytes = b.clip.stat().st_size


def baseline(b: Bench, ffmpeg: str, name: str) -> Timing:
    params = media.baseline_variations(b.args.variations)

    def once():
        d = b.sub(name)
        outs = [d / f"b{i + 1:02d}.mp4" for i in range(len(params))]
        t0, c0 = time.monotonic(), children_cpu()
        for p, out in zip(params, outs, strict=True):
            media.run(media.baseline_command(ffmpeg, b.clip, out, p))
        return time.monotonic() - t0, children_cpu() - c0, outs, ""

    log(f"baseline: {len(params)} × {ffmpeg}")
    t = best_of(b.args.repeat, once, b.args.wait_quiet)
    t.meta["baseline"] = (ffmpeg, params)
    return t


def floor_once(b: Bench, ours: Timing, name: str = "floor") -> Once:
    """One run of the floor: the bare render of what ``ours`` (a ZIP-producing run) made,
    built from nothing but its manifest's graphs and encoder options (`bare.bare_command`): one
    FFmpeg, no taps, nothing around it."""
    assert b.info is not None
    info, entries = b.info, ours.meta["manifest"]

    def once():
        d = b.sub(name)
        outs = [d / f"v{i + 1:02d}.mp4" for i in range(len(entries))]
        cmd = bare_command(b.project, b.clip, info.display_width, info.display_height,
                           entries, outs)
        t0, c0 = time.monotonic(), children_cpu()
        media.run(cmd)
        return time.monotonic() - t0, children_cpu() - c0, outs, "from the manifest"

    return once


def floor_timing(t: Timing, ours: Timing) -> Timing:
    t.meta["pairs"] = [(out, params, seed) for out, (_, params, seed)
                       in zip(t.outputs, ours.meta["pairs"], strict=True)]
    return t


def variant(b: Bench, name: str, quality: str, threads: int = -1, exclude: str = "") -> Timing:
    """The command the runner builds for this clip (video index 0 of a job with the seed) at
    ``quality``, frames tapped as the runner taps them, run by hand."""
    assert b.info is not None
    variations = sample_variations(b.args.seed, 0, b.args.variations,
                                   EffectOptions.parse(exclude))
    per_encoder = encoder_threads(len(variations)) if threads < 0 else threads or None
    encoder = encoder_for(b.info, quality, preset=b.preset, threads=per_encoder,
                          filter_threads=filter_threads(len(variations)))

    def once():
        d = b.sub(name)
        outs = [d / f"v{i + 1:02d}.mp4" for i in range(len(variations))]
        taps = plan_taps(b.info, outs, d / "source.frames")
        cmd = build_render_command(b.project, b.clip, b.info, variations, outs,
                                   encoder=encoder, taps=taps)
        t0, c0 = time.monotonic(), children_cpu()
        media.run(cmd)
        return time.monotonic() - t0, children_cpu() - c0, outs, ""

    log(f"render command: {len(variations)} outputs, quality {quality}"
        + (f", threads {threads}" if threads >= 0 else "") + (f", effects {exclude}" if exclude else ""))
    t = best_of(b.args.repeat, once, b.args.wait_quiet)
    t.meta["pairs"] = list(zip(t.outputs, variations, [""] * len(variations), strict=True))
    return t


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VR_") or k in PASS_THROUGH}


def compile_sources() -> None:
    """Compile the project's modules to bytecode, as a normal install has them (``pip install``
    and the Docker image compile at install time, and Python writes the bytecode on first
    import unless ``PYTHONDONTWRITEBYTECODE`` is set, as on the reference machine, where every
    ``make`` compiled the edited modules again: 25 ms of its start-up)."""
    for package in ("pipeline", "web"):
        compileall.compile_dir(ROOT / package, quiet=1)


def make_once(b: Bench) -> Once:
    """One run of ``video-refresher make``: process start to ZIP written (the sources compiled
    first, `compile_sources`)."""
    a = b.args
    compile_sources()

    def once():
        d = b.sub("make")
        zip_path = d / "out.zip"
        cmd = [sys.executable, "-m", "web.cli", "make", str(b.clip), "-n", str(a.variations),
               "--seed", a.seed, "-o", str(zip_path), "--quiet"]
        t0, c0 = time.monotonic(), children_cpu()
        code, stderr = media.run_process(cmd, cwd=ROOT, env=clean_env())
        wall, cpu = time.monotonic() - t0, children_cpu() - c0
        if code != 0:
            raise RuntimeError(f"video-refresher make failed: {stderr.strip()[-1500:]}")
        return wall, cpu, [zip_path], "process start to ZIP written"

    return once


def make_timing(b: Bench, t: Timing) -> Timing:
    t.meta["pairs"], t.meta["manifest"] = unzip_outputs(t.outputs[0], b.sub("make-x"))
    return t


def http_once(b: Bench, srv: Server, client) -> Once:
    """One HTTP run against the running ``srv``: upload, wait, ZIP download."""
    a = b.args

    def once():
        d = b.sub("http")
        zip_path = d / "out.zip"
        cpu0 = cpu_seconds(srv.pid)
        t0 = time.monotonic()
        r, _ = http_upload(client, [("videos", b.clip)],
                           {"variations": str(a.variations), "seed": a.seed})
        if r.status_code != 202:
            raise RuntimeError(f"upload answered {r.status_code}: {r.text[:300]}")
        job_id = r.json()["jobId"]
        t_up = time.monotonic()
        try:
            job = wait_job(client, job_id, timeout=3600,
                           watch=StallWatch(srv.pid, media.STALL_SECONDS, children_only=True))
        except Stalled:
            client.post(f"/api/jobs/{job_id}/cancel")  # stops the server's FFmpeg
            wait_job(client, job_id, timeout=60)
            raise
        if job["status"] != "completed":
            raise RuntimeError(f"job {job['status']}: {json.dumps(job)[:500]}")
        t_done = time.monotonic()
        http_download(client, job_id, zip_path)
        t_end = time.monotonic()
        cpu1 = cpu_seconds(srv.pid)
        cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        note = (f"upload {t_up - t0:.2f} s, queued→completed {t_done - t_up:.2f} s, "
                f"download {t_end - t_done:.2f} s")
        client.delete(f"/api/jobs/{job_id}")
        return t_end - t0, cpu, [zip_path], note

    return once


def http_peak(t: Timing, srv: Server) -> None:
    hwm = status_kb(srv.pid, "VmHWM")
    if hwm:
        t.note += f"; server peak RSS over its life {hwm / 1024:.0f} MB"


def http_timing(b: Bench, t: Timing) -> Timing:
    t.meta["pairs"], t.meta["manifest"] = unzip_outputs(t.outputs[0], b.sub("http-x"))
    return t


def side_by_side(b: Bench) -> dict[str, Timing]:
    """HTTP, ``make`` and the floor timed in interleaved rounds (`best_of_each`): one HTTP run
    first, untimed, warms the server and gives the manifest the floor is built from."""
    with Server(b.work / "http-data") as srv, srv.client() as client:
        http = http_once(b, srv, client)
        log(f"HTTP API: a first run for the manifest, N={b.args.variations}")
        first = http_timing(b, best_of(1, http))
        log(f"HTTP, make and the floor in {b.args.repeat} interleaved round(s)")
        runs = best_of_each(b.args.repeat, {"http": http, "floor": floor_once(b, first),
                                            "make": make_once(b)}, b.args.wait_quiet)
        http_peak(runs["http"], srv)
    return {"http": http_timing(b, runs["http"]), "floor": floor_timing(runs["floor"], first),
            "make": make_timing(b, runs["make"])}


# -- main -----------------------------------------------------------------------------------------


def _interrupt(signum, frame) -> None:
    # SIGTERM like Ctrl-C: `subprocess.run` then kills the FFmpeg it waits for, the server is
    # stopped by its `with`, and the scratch folder is removed.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        settings = load_settings(clean_env())
        project = find_ffmpeg(settings.ffmpeg)
    except (ConfigError, FFmpegNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parent = args.work_dir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vr-bench-", dir=parent))
    host = machine.host_ffmpeg(args.host_ffmpeg, project)
    results = Results(
        size=args.size, seconds=args.seconds, fps=args.fps, n=args.variations, seed=args.seed,
        preset=f"VR_QUALITY={settings.quality}" + (
            f", VR_PRESET={settings.preset}" if settings.preset else ""),
        repeat=args.repeat, quick=args.quick,
        machine=machine.describe(work), project=machine.project_ffmpeg(project), host=host,
        started_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load_start=machine.load_text(),
    )
    b = Bench(args, work, project, settings.preset, results)
    log(f"scratch folder {work}; load {results.load_start}")
    try:
        run_all(b)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        results.load_end = machine.load_text()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = render(results)
    sys.stdout.write(text)
    if args.write_docs:
        write_docs(DOCS, results, text)
        log(f"wrote {DOCS}")
    return 0


def run_all(b: Bench) -> None:
    a, r = b.args, b.results
    R = r.render
    make_clip(b)
    if b.results.host.path:
        R[ROW_BASELINE_HOST] = baseline(b, b.results.host.path, "baseline-host")
    else:
        R[ROW_BASELINE_HOST] = b.results.host.note
    R[ROW_BASELINE_PROJECT] = baseline(b, b.project, "baseline-project")
    side = side_by_side(b)
    R[ROW_HTTP], R[ROW_FLOOR], R[ROW_MAKE] = side["http"], side["floor"], side["make"]
    if a.sweep:
        for k, (label, quality, threads, exclude) in enumerate(SWEEP):
            r.sweep.append(SweepRow(label, variant(b, f"sweep{k}", quality, threads, exclude)))

    same = compare_outputs(b)
    if not a.no_quality:
        http, make, fl = R[ROW_HTTP], R[ROW_MAKE], R[ROW_FLOOR]
        quality_ours(b, http)
        for t, twin in ((make, same), (fl, same and http_is_floor(b))):
            if twin:
                t.ssim = list(http.ssim)
            else:
                quality_ours(b, t)
        for row in r.sweep:
            quality_ours(b, row.timing)
        for key in (ROW_BASELINE_HOST, ROW_BASELINE_PROJECT):
            if isinstance(R[key], Timing):
                quality_baseline(b, R[key])
        r.notes.append(
            "SSIM: each output against the frames its encoder was given (the source through "
            "that output's own filter chain, computed in the same FFmpeg run as the decode of the "
            "output; for ours the chains come from the ZIP's manifest), FFmpeg's `ssim` filter, "
            "Y plane, mean over the outputs (lowest in brackets). Identical to comparing with a "
            "lossless x264 render of the same command line (checked in tests/test_bench.py).")
    if STALLS:
        r.notes.append("Deadlocked runs (killed, discarded and run again): " + "; ".join(STALLS))
    if a.no_io:
        reason = "skipped (--quick)" if a.quick else "skipped (--no-io)"
        for row in IO_ROWS:
            r.io[row] = reason
    else:
        streaming_io(b)
