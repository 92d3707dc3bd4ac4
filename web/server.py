"""Run the whole service in one ``trio.run``: Hypercorn and the pipeline actors side by side.

Shutdown (SIGINT/SIGTERM) in two steps: Hypercorn stops accepting and finishes open requests
within its graceful timeout; then the actors' scope is cancelled, so runners stop FFmpeg
(``q`` → SIGTERM → SIGKILL) and mark their videos ``interrupted``.
"""

from __future__ import annotations

import logging
import signal
import sys
import time

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from pipeline.config import Settings
from pipeline.media.ffmpeg import ffmpeg_version
from pipeline.service import Service, log

from .app import create_app
from .auth import Auth, load_or_create_password, load_or_create_secret
from .views import job_json


def build(settings: Settings) -> tuple[Service, object, str, bool]:
    service = Service(settings, render_job=job_json)
    password, generated = load_or_create_password(settings.data_dir, settings.password)
    secret = load_or_create_secret(settings.data_dir, settings.secret)
    auth = Auth(password, secret, settings.token_ttl, time.time)
    return service, create_app(service, auth), password, generated


async def serve(settings: Settings) -> None:
    service, app, password, generated = build(settings)
    if generated:
        print(f"Generated password (shown once, kept in {settings.data_dir / 'password.txt'}): "
              f"{password}", flush=True)
    elif not settings.password:
        print(f"Using the generated password kept in {settings.data_dir / 'password.txt'}",
              flush=True)
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    # Logger objects, not "-": Hypercorn then adds no handler of its own, so each line goes
    # once through the root JSON handler (web/logs.py). The access format leaves out the query
    # string, which may hold a download token.
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'
    config.graceful_timeout = 3.0
    config.keep_alive_timeout = 75.0
    # Bound header size against oversized-header abuse.
    config.h11_max_incomplete_size = 64 * 1024
    # Clients only send small {"subscribe": …} commands over the WebSocket (default: 16 MB).
    config.websocket_max_message_size = 64 * 1024
    shutdown = service.stopping
    try:
        async with trio.open_nursery() as root:
            root.start_soon(_watch_signals, shutdown)
            await root.start(service.run)
            log.info("listening", extra={"url": f"http://{settings.host}:{settings.port}",
                                         "ffmpeg": service.ffmpeg,
                                         "ffmpegVersion": ffmpeg_version(service.ffmpeg),
                                         "dataDir": str(settings.data_dir)})
            print(f"Video Refresher listening on http://{settings.host}:{settings.port}", flush=True)
            await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait)
            log.info("stopping: saving state")
            root.cancel_scope.cancel()
    finally:
        service.close()
        log.info("stopped")


async def _watch_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            shutdown.set()
            return


def run_server(settings: Settings) -> int:
    try:
        trio.run(serve, settings)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
