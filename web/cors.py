"""CORS for the origins in ``VR_CORS_ORIGINS`` only; without it the API is same-origin only.

An allowed ``Origin`` is echoed in ``Access-Control-Allow-Origin`` (never ``*``: the answer
depends on the origin, hence ``Vary: Origin``). Preflights (``OPTIONS`` with
``Access-Control-Request-Method``) are answered 204 before the token check, since browsers send
them without credentials; an origin that is not allowed gets the 204 without the allow headers,
so the browser refuses the real request. No cookies are used (tokens travel in a header), so
``Access-Control-Allow-Credentials`` is never sent. ``*`` in the list allows every origin.
"""

from __future__ import annotations

from quart import Response, request

ALLOW_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
# The tus headers too: a browser tus client on another allowed origin (web/resumable.py).
ALLOW_HEADERS = ("Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Offset, "
                 "Upload-Metadata")
# Response headers a cross-origin script may read besides the CORS-safelisted ones.
EXPOSE_HEADERS = ("Content-Disposition, Content-Length, Retry-After, WWW-Authenticate, Location, "
                  "Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Upload-Offset, "
                  "Upload-Length, Upload-Expires")
MAX_AGE = "600"


def install_cors(app, origins: tuple[str, ...]) -> None:
    """Register the CORS hooks on ``app``; call it before the token check is registered.

    Nothing is registered when ``origins`` is empty.
    """
    allowed = frozenset(origins)
    if not allowed:
        return

    def is_allowed(origin: str | None) -> bool:
        return bool(origin) and (origin in allowed or "*" in allowed)

    @app.before_request
    async def _preflight():
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        resp = Response(b"", status=204)
        origin = request.headers.get("Origin")
        if is_allowed(origin):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            resp.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            resp.headers["Access-Control-Max-Age"] = MAX_AGE
        return resp

    @app.after_request
    async def _cors_headers(resp: Response):
        resp.vary.add("Origin")
        origin = request.headers.get("Origin")
        if is_allowed(origin):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return resp
