"""``video-refresher`` command line: ``serve`` (the HTTP service) and ``make`` (offline batch)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from pipeline.config import ConfigError, load_settings, validate
from pipeline.media.ffmpeg import FFmpegNotFound


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="video-refresher",
                                description="Turn video creatives into unique variations.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the web service (API, WebSocket, browser app)")
    s.add_argument("--host", help="address to bind (VR_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (VR_PORT, default 8080)")
    s.add_argument("--data-dir", type=Path, help="data folder (VR_DATA_DIR, default ./data)")

    m = sub.add_parser("make", help="render variations of local files into a ZIP, no server")
    m.add_argument("inputs", nargs="+", type=Path, help="source videos (MP4, MOV, WebM, MKV, AVI …)")
    m.add_argument("-n", "--variations", type=int, default=5, help="variations per video (1-20)")
    m.add_argument("--seed", help="seed for reproducible variations")
    m.add_argument("--exclude", action="append", default=[],
                   help="effect family to leave out (e.g. mirror); repeatable")
    m.add_argument("--include", action="append", default=[],
                   help="opt-in effect family to add (rotation, hue, pitch); repeatable")
    m.add_argument("--formats", help="placement formats, comma list of source (default), "
                   "9:16, 1:1, 4:5, 16:9")
    m.add_argument("--fit", help="crop (default) or pad: how a picture takes another shape")
    m.add_argument("--focus", help="where a crop sits: center (default), left, right, top, bottom")
    m.add_argument("--loudness", help="loudness target in LUFS, e.g. -14 (default: levels "
                   "left alone)")
    m.add_argument("--preset", help="reels, tiktok, shorts, feed or youtube: formats, fit and "
                   "loudness at once")
    m.add_argument("-o", "--output", required=True, help="ZIP file to write")
    m.add_argument("--work-dir", type=Path, help="scratch folder (default: next to the output)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _foreign_install() -> str | None:
    """Why the ``web``/``pipeline`` packages imported here may be another's (web/__init__.py)."""
    import web

    others = web.shared_with() if getattr(web, "DISTRIBUTION", None) == "video-refresher" \
        else ["another package (PyPI's web.py?)"]
    return None if not others else ("the top-level 'web'/'pipeline' packages are shared with "
                                    + ", ".join(others) + "; install video-refresher into a "
                                    "virtual environment of its own")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if clash := _foreign_install():
        _error(clash)
        return 2
    try:
        settings = load_settings()
        if args.command == "serve":
            settings = settings.with_overrides(host=args.host, port=args.port, data_dir=args.data_dir)
            validate(settings)
            from pipeline.state.lock import DataDirInUse
            from web.logs import setup_logging
            from web.server import CannotStart, run_server

            setup_logging()
            try:
                run_server(settings)
            except (CannotStart, DataDirInUse) as exc:
                _error(str(exc))
                return 1
            return 0
        from pipeline.make import run_make

        return run_make(settings, args)
    except (ConfigError, FFmpegNotFound) as exc:
        _error(str(exc))
        return 2


def run() -> NoReturn:
    """The ``video-refresher`` command: `main`, then, after ``make``, `exit_at_once`."""
    argv = sys.argv[1:]
    code = main(argv)
    # The subcommand is the first word: the parser has no options before it but --help.
    if argv[:1] == ["make"] and sys.gettrace() is None and sys.getprofile() is None:
        exit_at_once(code)
    sys.exit(code)


def exit_at_once(code: int) -> NoReturn:
    """End a finished ``make`` without the interpreter's teardown.

    By then the ZIP is written and closed, the scratch folder removed, every FFmpeg reaped and
    no thread is doing anything; what is left is freeing the 455 modules that were imported
    (trio, NumPy, PyAV), 35–40 ms of a run that renders a short clip in 1.5 s. Only the
    standard streams still hold unwritten bytes, so they are flushed first. `run` leaves the
    normal exit to a traced or profiled process (``coverage``, ``python -m cProfile``), whose
    tools write their results at exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started without it (``>&-``)
                stream.flush()
        except (OSError, ValueError):  # closed, or its reader gone: nothing more can be said
            pass
    os._exit(code)


def _error(text: str) -> None:
    """``error: …`` on stderr; nowhere when there is none (never on stdout instead)."""
    if sys.stderr is not None:
        print(f"error: {text}", file=sys.stderr)


if __name__ == "__main__":
    run()
