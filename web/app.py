"""The Quart-Trio application: a thin HTTP/WebSocket face over the pipeline service.

``create_app`` wires the cross-cutting parts (error shapes, the token check, security headers,
CORS, body limits) and registers one blueprint per resource: ``web/jobs.py`` (health, login,
jobs), ``web/delivery.py`` (download, cancel, retry, delete, WebSocket), ``web/files.py`` (one
variation or preview at a time), ``web/metrics.py`` and
``web/ui_files.py`` (the browser app). Views translate HTTP into service calls and store reads;
no business rules live here.
"""

from __future__ import annotations

from quart import Response, current_app, has_request_context, has_websocket_context, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from pipeline.actors.lifecycle import Conflict, Gone, JobNotFound, LifecycleError
from pipeline.actors.scheduler import is_disk_full
from pipeline.service import Service

from .auth import Auth, TokenError
from .cors import install_cors
from .delivery import bp as delivery_bp
from .errors import HTTP_CODES, APIError, error_response
from .files import bp as files_bp
from .flow import FlowControlledConnection, FlowControlledRequest, limit_bodies
from .jobs import bp as jobs_bp
from .keys import authenticate
from .keys import bp as keys_bp
from .metrics import install_metrics
from .openapi import install_openapi
from .queue import bp as queue_bp
from .resumable import bp as resumable_bp
from .ui_files import bp as ui_bp

# The lifecycle's refusals (retry, cancel, download, one file) as HTTP statuses.
LIFECYCLE_STATUS = {JobNotFound: 404, Conflict: 409, Gone: 410}
PUBLIC_API = {"/api/health", "/api/auth", "/api/openapi.json"}
LOGOUT = ("/api/auth", "DELETE")  # needs the token it ends
# What the browser fetches by itself (a link, an <img>, a <video>) cannot send a header: these
# GET endpoints also take the token as ``?token=``.
QUERY_TOKEN = {"delivery.download", "files.output_file", "files.output_preview",
               "files.video_preview", "queue.video_log"}
DISK_FULL = ("The server's disk is full. Delete some jobs, or wait for running jobs to finish, "
             "then try again.")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


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

    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(LifecycleError, _lifecycle_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _crash)
    # Before the token check: CORS preflights carry no token (web/cors.py).
    install_cors(app, service.settings.cors_origins)
    # Only the upload streams a big body; any other body over 64 KB is refused with 413.
    limit_bodies(app, streamed={"jobs.create_job", "resumable.item"})
    app.before_request(_require_token)
    app.after_request(_headers)

    app.register_blueprint(jobs_bp)
    app.register_blueprint(delivery_bp)
    app.register_blueprint(files_bp)
    app.register_blueprint(queue_bp)
    app.register_blueprint(keys_bp)
    app.register_blueprint(resumable_bp)
    install_metrics(app, service)  # GET /metrics, public and aggregate only
    app.register_blueprint(ui_bp)
    # Last: it documents the routes registered above (web/openapi.py).
    install_openapi(app)
    return app


# -- cross-cutting ----------------------------------------------------------------------------


async def _api_error(exc: APIError):
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.extra)


async def _lifecycle_error(exc: LifecycleError):
    return error_response(LIFECYCLE_STATUS.get(type(exc), 409), exc.code, exc.message)


async def _http_error(exc: HTTPException):
    code, message = HTTP_CODES.get(exc.code or 500, ("http_error", exc.description or ""))
    return error_response(exc.code or 500, code, message)


async def _crash(exc: Exception):
    log = current_app.extensions["service"].log
    # Also handles errors raised in a WebSocket handler, where ``request`` does not exist.
    path = request.path if has_request_context() \
        else websocket.path if has_websocket_context() else None
    if is_disk_full(exc):  # not a fault of ours or the client's: say what helps
        log.warning("disk full", extra={"path": path})
        return error_response(507, "storage_full", DISK_FULL)
    log.exception("unhandled error", extra={"path": path})
    return error_response(500, *HTTP_CODES[500])


async def _require_token():
    path = request.path
    if not path.startswith("/api/") or path in PUBLIC_API and (path, request.method) != LOGOUT:
        return None
    if request.method == "OPTIONS" and request.endpoint == "resumable.collection":
        return None  # tus discovery: what the server offers, nothing about its uploads
    token = _bearer(request.headers.get("Authorization"))
    if token is None and request.method in ("GET", "HEAD") and request.endpoint in QUERY_TOKEN:
        token = request.args.get("token")
    try:
        await authenticate(token)
    except TokenError as exc:
        return error_response(401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"})
    return None


async def _headers(resp: Response):
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")
    else:
        resp.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None
