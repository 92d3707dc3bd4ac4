"""``video-refresher make``: the server's pipeline without a server, for scripts and benchmarks.

It runs the same actors (intake, scheduler, runner) on a scratch data folder next to the output,
shows a progress bar, then writes the same ZIP (one folder per source, ``manifest.json``) as the
download endpoint. Exit status: 0 when every video completed, 1 when some or all failed (the ZIP
holds what finished; none is written when nothing did) or the ZIP could not be written, 2 on bad
arguments, 128 + the signal's number when SIGINT, SIGTERM or SIGHUP stopped it.

The scratch folder is always a new one that the run creates (inside ``--work-dir`` when given,
else beside the output) and the only thing it removes: a run never deletes a folder it was
given, and no two runs share one.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import secrets
import shutil
import signal
import sqlite3
import sys
import tempfile
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
from pipeline.state.rows import Job
from pipeline.state.states import VideoStatus

BAR_WIDTH = 30


def run_make(settings: Settings, args) -> int:
    if unusable := [_not_a_file(p) for p in args.inputs if not p.is_file()]:
        _say(f"error: {'; '.join(unusable)}", err=True)
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
    given = str(args.output)
    output = Path(given).resolve()
    if problem := _output_problem(given, output, args.inputs):
        _say(f"error: {problem}", err=True)
        return 2
    try:
        work = _scratch_folder(args.work_dir, output)
    except OSError as exc:
        _say(f"error: no scratch folder in {args.work_dir or output.parent}: "
             f"{exc.strerror or exc}", err=True)
        return 2
    # Its own report says what failed ("failed: name: why"); the service's log keeps to errors
    # (a crash, with its traceback), not a warning line per failed video beside the bar.
    logging.getLogger("video_refresher").setLevel(logging.ERROR)
    # The scratch folder lives only for this run: the janitor must never expire or evict it.
    settings = Settings(**{**settings.__dict__, "data_dir": work, "janitor_interval": math.inf,
                           "storage_cap": 1 << 62})
    try:
        return trio.run(_make, settings, list(args.inputs), args.variations, args.seed,
                        (options, placement), output, not args.quiet and sys.stderr is not None)
    except KeyboardInterrupt:  # before or after the signal watch (`_stop_on_signal`)
        return _stopped(signal.SIGINT)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            return _stopped(signal.SIGINT)
        if not _out_of_space(group, work):
            raise
        return _no_space(work)
    except (OSError, sqlite3.Error) as exc:
        if not _out_of_space(exc, work):
            raise
        return _no_space(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _no_space(work: Path) -> int:
    _say(f"error: no space left in the scratch folder {work}; no ZIP written", err=True)
    return 1


def _out_of_space(exc: BaseException, work: Path) -> bool:
    """Whether a crash of the run's tasks came from a full disk: ENOSPC, or SQLite failing
    (it says "database or disk is full", or only "disk I/O error" when it cannot even map its
    WAL index) while the scratch folder's file system has less than 1 MiB free."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_out_of_space(e, work) for e in exc.exceptions)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if not isinstance(exc, sqlite3.Error):
        return False
    try:
        return shutil.disk_usage(work).free < 1 << 20
    except OSError:
        return False


def _not_a_file(path: Path) -> str:
    """Why an input that is not a regular file cannot be read as a video."""
    if path.is_dir():
        return f"{path} is a folder; name the videos in it"
    if path.exists():
        return f"{path} is not a regular file (a pipe or a device); save the video to a file"
    return f"no such file: {path}"


def _output_problem(given: str, output: Path, inputs: list[Path]) -> str | None:
    """Why ``-o`` cannot be the ZIP: a folder, one of the inputs (which it would replace), or in
    a folder that cannot be made or written to. Makes the output's folder when it is missing."""
    if given.endswith(("/", os.sep)) or output.is_dir():
        return f"{given} is a folder; -o names the ZIP file to write"
    for src in inputs:
        if src.resolve() == output or (output.exists() and os.path.samefile(src, output)):
            return f"-o {given} is one of the inputs; name another file for the ZIP"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot make the folder for {given}: {exc.strerror or exc}"
    if not os.access(output.parent, os.W_OK | os.X_OK):
        return f"cannot write into {output.parent}"
    return None


def _scratch_folder(work_dir: Path | None, output: Path) -> Path:
    """A new folder for this run alone: inside ``work_dir`` (created if need be) or else beside
    the output, named after it. Raises OSError."""
    base = (work_dir or output.parent).resolve()
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".work", dir=base))


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, name))


def _stopped(signum: int) -> int:
    _say(f"stopped by {signal.Signals(signum).name}: no ZIP written", err=True)
    return 128 + signum


async def _stop_on_signal(cancel: trio.CancelScope, stopped_by: list[int]) -> None:
    """Cancel the run on SIGINT, SIGTERM or SIGHUP (Ctrl-C, ``kill``, ``timeout``, a closed
    terminal): FFmpeg is stopped and reaped and the scratch folder removed as on any end."""
    with trio.open_signal_receiver(*_STOP_SIGNALS) as signals:
        async for signum in signals:
            stopped_by.append(signum)
            cancel.cancel()
            return


async def _make(settings: Settings, inputs: list[Path], n: int, seed: str | None,
                choices: tuple[EffectOptions, Placement], output: Path, show: bool) -> int:
    started = time.monotonic()
    render, stopped_by = trio.CancelScope(), []
    async with trio.open_nursery() as watch:
        # Watched until the ZIP is written: a signal after the render has ended lets it finish.
        watch.start_soon(_stop_on_signal, render, stopped_by)
        with render:
            job = await _render(settings, inputs, n, seed, choices, show)
        if stopped_by:
            watch.cancel_scope.cancel()
            return _stopped(stopped_by[0])
        code = await _report(job, output, choices[1], started) if job is not None else 2
        watch.cancel_scope.cancel()
    return code


async def _render(settings: Settings, inputs: list[Path], n: int, seed: str | None,
                  choices: tuple[EffectOptions, Placement], show: bool) -> Job | None:
    """Run the job through the service's actors; its final row, or None when intake refused."""
    options, placement = choices
    service = Service(settings)
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
                    return None
                if show:
                    nursery.start_soon(_progress_bar, sub, [f.video_id for f in files], n)
                await service.wait_idle()
            job = await service.store.get_job(job_id)
            nursery.cancel_scope.cancel()
    finally:
        service.close()
    if show:
        _say("", err=True)
    return job


async def _report(job: Job, output: Path, placement: Placement, started: float) -> int:
    """Say what failed, write the ZIP of what finished, and say what it holds."""
    failed = [v for v in job.videos if v.status != "completed"]
    for v in failed:
        _say(f"failed: {v.name}: {v.error}", err=True)
    try:
        size = await trio.to_thread.run_sync(write_zip, job, output)
    except NothingToZip:
        _say("error: no video could be processed; no ZIP written", err=True)
        return 1
    except OSError as exc:
        _say(f"error: could not write {output}: {exc.strerror or exc}", err=True)
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
