"""Run the whole service in one ``trio.run``: Hypercorn and the pipeline actors side by side.

Shutdown (SIGINT/SIGTERM) in two steps: Hypercorn stops accepting and finishes open requests
within its graceful timeout; then the actors' scope is cancelled, so runners stop FFmpeg
(``q`` → SIGTERM → SIGKILL) and mark their videos ``interrupted``.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
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
    auth.remember_revoked(service.store.sync.revoked_tokens(time.time()))
    return service, create_app(service, auth), password, generated


class CannotStart(Exception):
    """The service cannot start; the message says why in one sentence (``video-refresher``
    prints it as its one ``error:`` line)."""


class CannotListen(CannotStart):
    """The address the service should listen on cannot be had."""


def check_address(host: str, port: int) -> None:
    """Bind ``host:port`` once and let it go, so that a port in use (or not allowed) stops the
    start in one sentence, before the service touches its data folder, and not after it has
    said it listens. Raises CannotListen."""
    # As Hypercorn binds (hypercorn.config: IPv6 when the host has a colon, else IPv4, the
    # name resolved by bind itself, "" for every interface), so the check refuses only what
    # Hypercorn would.
    bare = host.replace("[", "").replace("]", "")
    try:
        with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET,
                           socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((bare, port))
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {host}: {exc.strerror}") from None
    except OSError as exc:
        raise CannotListen(_listen_problem(host, port, exc)) from None


_LISTEN_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is in use (by another program, or another Video "
                "Refresher); choose another with VR_PORT or --port")
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port}; use one above 1023 (VR_PORT or --port)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


async def serve(settings: Settings) -> None:
    check_address(settings.host, settings.port)
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


def run_server(settings: Settings) -> None:
    """Serve until a signal stops it. Raises `CannotStart` (the address cannot be had, also
    when it was taken between the check and Hypercorn; the data folder cannot be used) or
    ``DataDirInUse`` (another service holds the data folder)."""
    try:
        trio.run(serve, settings)
    except BaseExceptionGroup as group:
        first = _first_leaf(group)
        if len(group.exceptions) > 1 or not isinstance(first, OSError) \
                or first.errno not in _LISTEN_ERRORS:
            raise
        raise CannotListen(_listen_problem(settings.host, settings.port, first)) from None
    except OSError as exc:
        raise CannotStart(str(exc)) from None


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first

