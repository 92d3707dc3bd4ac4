"""``video-refresher make``: the server's pipeline without a server, for scripts and benchmarks.

It runs the same actors (intake, scheduler, runner) on a scratch data folder next to the output,
shows a progress bar, then writes the same ZIP (one folder per source, ``manifest.json``) as the
download endpoint. Exit status: 0 when every video completed, 1 when some failed (the ZIP still
holds what finished), 2 on bad arguments.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

import trio

from pipeline.actors.intake import IntakeRejected, UploadedFile
from pipeline.config import Settings
from pipeline.delivery.zipper import NothingToZip, write_zip
from pipeline.media.effects import EffectOptions
from pipeline.media.formats import Placement, parse_placement
from pipeline.media.naming import display_name
from pipeline.service import Service
from pipeline.state.events import Progress, VideoChanged
from pipeline.state.states import VideoStatus

BAR_WIDTH = 30


def run_make(settings: Settings, args) -> int:
    missing = [str(p) for p in args.inputs if not p.is_file()]
    if missing:
        _say(f"error: no such file: {', '.join(missing)}", err=True)
        return 2
    if not 1 <= args.variations <= 20:
        _say("error: -n must be between 1 and 20", err=True)
        return 2
    try:
        items = [f"-{e.lstrip('-')}" for e in args.exclude]
        items += [f"+{e.lstrip('+')}" for e in args.include]
        options = EffectOptions.parse(",".join(items) or None)
        placement = parse_placement(
            formats=getattr(args, "formats", None), fit=getattr(args, "fit", None),
            focus=getattr(args, "focus", None), loudness=getattr(args, "loudness", None),
            preset=getattr(args, "preset", None))
    except ValueError as exc:
        _say(f"error: {exc}", err=True)
        return 2
    output = args.output.resolve()
    work = (args.work_dir or output.parent / f".{output.name}.work").resolve()
    # The scratch folder lives only for this run: the janitor must never expire or evict it.
    settings = Settings(**{**settings.__dict__, "data_dir": work, "janitor_interval": math.inf,
                           "storage_cap": 1 << 62})
    try:
        return trio.run(_make, settings, list(args.inputs), args.variations, args.seed,
                        (options, placement), output, not args.quiet and sys.stderr is not None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _make(settings: Settings, inputs: list[Path], n: int, seed: str | None,
                choices: tuple[EffectOptions, Placement], output: Path, show: bool) -> int:
    options, placement = choices
    service = Service(settings)
    started = time.monotonic()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            job_id = "j" + secrets.token_hex(8)
            files = await trio.to_thread.run_sync(_stage, settings.uploads_dir / job_id, inputs)
            with service.hub.subscribe(job_id) as sub:
                result = await service.submit({"job_id": job_id, "files": tuple(files),
                                               "variations": n, "seed": seed, "options": options,
                                               "placement": placement})
                if isinstance(result, IntakeRejected):
                    _say(f"error: {result.message}", err=True)
                    nursery.cancel_scope.cancel()
                    return 2
                if show:
                    nursery.start_soon(_progress_bar, sub, [f.video_id for f in files], n)
                await service.wait_idle()
            job = await service.store.get_job(job_id)
            nursery.cancel_scope.cancel()
    finally:
        service.close()
    if show:
        _say("", err=True)
    failed = [v for v in job.videos if v.status != "completed"]
    for v in failed:
        _say(f"failed: {v.name}: {v.error}", err=True)
    try:
        size = await trio.to_thread.run_sync(write_zip, job, output)
    except NothingToZip:
        _say("error: no video could be processed; no ZIP written", err=True)
        return 1
    done = sum(len(v.outputs) for v in job.videos)
    what = "variations" if len(placement.formats) == 1 else \
        f"files in {len(placement.formats)} formats"
    _say(f"wrote {output} ({size / 1e6:.1f} MB, {done} {what} of "
         f"{len(job.videos) - len(failed)} videos) in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


def _say(text: str, *, err: bool = False) -> None:
    """Print a line of the run's report. A reader that went away (``make … | head``) or a
    closed stream costs the line, not the run: the ZIP is what the run is for."""
    stream = sys.stderr if err else sys.stdout
    if stream is None:  # started without it (``2>&-``): print would fall back to stdout
        return
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        pass


def _stage(job_dir: Path, inputs: list[Path]) -> list[UploadedFile]:
    """Link (or copy) the inputs into the scratch uploads folder, as the upload endpoint would."""
    job_dir.mkdir(parents=True)
    files = []
    for src in inputs:
        vid = "v" + secrets.token_hex(6)
        dst = job_dir / f"{vid}.upload"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        files.append(UploadedFile(vid, display_name(src.name), dst, dst.stat().st_size))
    return files


async def _progress_bar(sub, video_ids: list[str], n: int) -> None:
    progress = dict.fromkeys(video_ids, 0.0)
    tty = sys.stderr.isatty()
    last_line = 0.0
    while True:
        event = await sub.receive()
        match event:
            case Progress(video_id=vid) if vid in progress:
                progress[vid] = event.progress
            case VideoChanged(video_id=vid, status=VideoStatus.COMPLETED | VideoStatus.FAILED) \
                    if vid in progress:
                progress[vid] = 100.0
            case VideoChanged(video_id=vid, progress=float() as pct) if vid in progress:
                progress[vid] = pct
        pct = sum(progress.values()) / len(progress)
        done = sum(1 for p in progress.values() if p >= 100)
        filled = int(BAR_WIDTH * pct / 100)
        line = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {pct:5.1f}%  "
                f"{done}/{len(progress)} videos, {n} variations each")
        now = time.monotonic()
        try:
            if tty:
                sys.stderr.write("\r" + line)
                sys.stderr.flush()
            elif now - last_line > 2 or pct >= 100:
                sys.stderr.write(line + "\n")
                last_line = now
        except (OSError, ValueError):  # nobody reads it any more: the run goes on without it
            return
