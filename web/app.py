"""The Quart-Trio application: a thin HTTP/WebSocket face over the pipeline service.

Views translate HTTP into service calls and store reads; no business rules live here.
"""

from __future__ import annotations

import importlib.resources
import re
import secrets
import shutil
from pathlib import Path

import trio
from quart import (
    Response,
    has_request_context,
    has_websocket_context,
    jsonify,
    request,
    send_from_directory,
    websocket,
)
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

import pipeline
from pipeline.effects import FAMILIES, GEOMETRIC, OPT_IN, EffectOptions
from pipeline.ffmpeg import ffmpeg_version
from pipeline.intake import IntakeRejected, UploadedFile
from pipeline.janitor import expected_output_bytes
from pipeline.scheduler import is_disk_full
from pipeline.service import Service

from .auth import Auth, TokenError, client_address
from .cors import install_cors
from .delivery import bp as delivery_bp
from .errors import HTTP_CODES, APIError, error_response
from .flow import FlowControlledConnection, FlowControlledRequest, limit_bodies
from .metrics import count_upload, install_metrics
from .openapi import install_openapi
from .uploads import receive_upload
from .views import iso, job_json


def _find_ui() -> Path:
    """The browser app's folder: ``web/ui`` in an installed wheel (pyproject.toml puts ``ui/``
    there), else ``ui/`` beside ``web/`` in a source checkout or an editable install.
    ``send_from_directory`` needs a real directory, which a wheel installed on disk is."""
    candidates = [Path(str(importlib.resources.files(__package__) / "ui")),
                  Path(__file__).resolve().parent.parent / "ui"]
    for folder in candidates:
        if (folder / "index.html").is_file():
            return folder.resolve()
    raise RuntimeError("the browser app is missing from this installation (looked in "
                       + ", ".join(map(str, candidates)) + ")")


UI_DIR = _find_ui()

PUBLIC_API = {"/api/health", "/api/auth", "/api/openapi.json"}
MAX_VARIATIONS = 20
DISK_FULL = ("The server's disk is full. Delete some jobs, or wait for running jobs to finish, "
             "then try again.")


def create_app(service: Service, auth: Auth) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None)
    app.request_class = FlowControlledRequest
    app.asgi_http_class = FlowControlledConnection
    # Uploads are streamed by our own parser with its own limits; Quart's would buffer.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["BODY_TIMEOUT"] = None
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["service"] = service
    app.extensions["auth"] = auth
    settings = service.settings

    # -- cross-cutting ----------------------------------------------------------------------

    @app.errorhandler(APIError)
    async def _api_error(exc: APIError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException):
        code, message = HTTP_CODES.get(exc.code or 500, ("http_error", exc.description or ""))
        return error_response(exc.code or 500, code, message)

    @app.errorhandler(Exception)
    async def _crash(exc: Exception):
        # Also handles errors raised in a WebSocket handler, where ``request`` does not exist.
        path = request.path if has_request_context() \
            else websocket.path if has_websocket_context() else None
        if is_disk_full(exc):  # not a fault of ours or the client's: say what helps
            service.log.warning("disk full", extra={"path": path})
            return error_response(507, "storage_full", DISK_FULL)
        service.log.exception("unhandled error", extra={"path": path})
        return error_response(500, *HTTP_CODES[500])

    # Before the token check: CORS preflights carry no token (web/cors.py).
    install_cors(app, settings.cors_origins)
    # Only the upload streams a big body; any other body over 64 KB is refused with 413.
    limit_bodies(app, streamed={"create_job"})

    @app.before_request
    async def _require_token():
        path = request.path
        if not path.startswith("/api/") or path in PUBLIC_API:
            return None
        token = _bearer(request.headers.get("Authorization"))
        if token is None and request.method == "GET" and path.endswith("/download"):
            token = request.args.get("token")
        try:
            auth.verify(token)
        except TokenError as exc:
            return error_response(401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"})
        return None

    @app.after_request
    async def _headers(resp: Response):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        else:
            resp.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            )
            resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    # Download, cancel, retry, delete and the WebSocket (web/delivery.py).
    app.register_blueprint(delivery_bp)
    # GET /metrics, public and aggregate only (web/metrics.py).
    install_metrics(app, service)

    # -- health and auth --------------------------------------------------------------------

    @app.get("/api/health")
    async def health():
        problems = []
        try:
            await service.store.check()
        except Exception as exc:
            problems.append(f"database: {exc}")
        try:
            await trio.to_thread.run_sync(_check_writable, settings.data_dir)
        except OSError as exc:
            problems.append(f"data dir: {exc}")
        body = {
            "status": "ok" if not problems else "unavailable",
            "version": pipeline.__version__,
            "ffmpeg": await trio.to_thread.run_sync(ffmpeg_version, service.ffmpeg),
            "ffmpegPath": service.ffmpeg,
            # What the upload form checks before sending (the server enforces them anyway).
            "limits": {"maxUpload": settings.max_upload, "maxFiles": settings.max_files,
                       "maxVariations": MAX_VARIATIONS},
            # The effect families and which are on unless turned off (`-name`) or only when
            # asked for (`+name`): the upload form and the job page read them from here.
            "effects": [{"name": name, "default": name not in OPT_IN,
                         "geometric": name in GEOMETRIC} for name in FAMILIES],
        }
        if problems:
            body["problems"] = problems
            return jsonify(body), 503
        return jsonify(body)

    @app.post("/api/auth")
    async def login():
        client = client_address(request.remote_addr, request.headers, settings.trusted_proxy)
        wait = auth.blocked(client)
        if wait:
            raise APIError(429, "too_many_attempts",
                           f"Too many wrong passwords. Try again in {int(wait)} seconds.",
                           {"Retry-After": str(int(wait))})
        data = await request.get_json(force=True, silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("password"), str):
            raise APIError(400, "password_required", 'Send {"password": "..."} as JSON.')
        if not auth.check_password(data["password"]):
            auth.record_failure(client)
            raise APIError(401, "wrong_password", "That password is not right.")
        token, expires = auth.issue()
        return jsonify({"token": token, "expiresAt": iso(expires)})

    # -- jobs -------------------------------------------------------------------------------

    @app.get("/api/jobs")
    async def list_jobs():
        jobs = await service.store.list_jobs()
        return jsonify({"jobs": [job_json(j) for j in jobs]})

    @app.post("/api/jobs")
    async def create_job():
        job_id = "j" + secrets.token_hex(8)
        job_dir = settings.uploads_dir / job_id
        length = request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= settings.max_upload \
                and not await service.janitor.make_room(int(length)):
            raise APIError(507, "storage_full",
                           "Not enough storage for this upload, even after removing finished "
                           "jobs. Wait for running jobs to finish, or delete some jobs.")
        if length.isdigit() and int(length) <= settings.max_upload \
                and int(length) > await trio.to_thread.run_sync(_free_bytes, settings.data_dir):
            raise APIError(507, "storage_full",
                           "The server's disk is full. Wait for running jobs to finish, or delete "
                           "some jobs.")
        accepted = False
        try:
            upload = await receive_upload(
                request, job_dir, max_upload=settings.max_upload, max_files=settings.max_files,
                idle_timeout=settings.upload_idle_timeout, on_bytes=count_upload(),
            )
            variations, seed, options = _job_fields(upload.fields)
            files = upload.files
            if not files:
                raise APIError(400, "no_files", "Add at least one video in the field 'videos'.")
            empty = [f.name for f in files if f.size == 0]
            if empty:
                raise APIError(400, "empty_file", f"{empty[0]!r} is empty.")
            # Room for the variations too, not only for the upload (reserved until they land).
            outputs = expected_output_bytes(sum(f.size for f in files), variations)
            if not await service.janitor.make_room(outputs):
                raise APIError(507, "storage_full",
                               f"Not enough storage for the {variations} variations of this "
                               f"upload (about {outputs / 1e6:.1f} MB), even after removing "
                               "finished jobs. Ask for fewer variations, wait for running jobs "
                               "to finish, or delete some jobs.")
            result = await service.submit({
                "job_id": job_id,
                "files": tuple(UploadedFile(f.video_id, f.name, f.path, f.size) for f in files),
                "variations": variations,
                "seed": seed,
                "options": options,
            })
            if isinstance(result, IntakeRejected):
                raise APIError(result.status, result.code, result.message)
            accepted = True
        finally:
            if not accepted:
                # Synchronous on purpose: this also runs while the handler is being cancelled
                # (client gone), and must leave nothing behind.
                shutil.rmtree(job_dir, ignore_errors=True)
        return jsonify({
            "jobId": job_id,
            "status": "queued",
            "videos": list(result.videos),
            "variationsPerVideo": variations,
            "seed": result.seed,
            "statusUrl": f"/api/jobs/{job_id}",
        }), 202

    @app.get("/api/jobs/<job_id>")
    async def get_job(job_id: str):
        job = await service.store.get_job(job_id)
        if job is None:
            raise APIError(404, "job_not_found", "There is no job with this id.")
        return jsonify(job_json(job))

    # -- the single-page app ----------------------------------------------------------------

    @app.get("/")
    async def index():
        return await send_from_directory(UI_DIR, "index.html")

    @app.get("/ui/<path:path>")
    async def ui_file(path: str):
        return await send_from_directory(UI_DIR, path)

    # Last: it documents the routes registered above (web/openapi.py).
    install_openapi(app)
    return app


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _job_fields(fields: dict[str, str]) -> tuple[int, str | None, EffectOptions]:
    raw = fields.get("variations", "5")
    bad = APIError(400, "bad_variations", f"variations must be a whole number from 1 to {MAX_VARIATIONS}.")
    # ASCII digits only: int() would also take "1_0", "+3", " 3", "３" and "٣".
    if not re.fullmatch(r"[0-9]+", raw):
        raise bad
    variations = int(raw)
    if not 1 <= variations <= MAX_VARIATIONS:
        raise bad
    seed = fields.get("seed", "").strip() or None
    if seed is not None and (len(seed) > 64 or not seed.isprintable()):
        raise APIError(400, "bad_seed", "seed must be printable text of at most 64 characters.")
    try:
        options = EffectOptions.parse(fields.get("effects"))
    except ValueError as exc:
        raise APIError(400, "bad_effects", str(exc)) from None
    return variations, seed, options


def _check_writable(path: Path) -> None:
    probe = path / f".health-{secrets.token_hex(4)}"
    probe.write_bytes(b"ok")
    probe.unlink()


def _free_bytes(path: Path) -> int:
    """Bytes the data dir's file system can still take (the storage cap may be larger)."""
    return shutil.disk_usage(path).free
