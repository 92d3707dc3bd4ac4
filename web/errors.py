"""User-facing API errors: a stable snake_case ``code`` and a human sentence."""

from __future__ import annotations

from quart import jsonify


class APIError(Exception):
    """``extra``: more fields of the error object (``upload``: the resumable upload it is about)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def error_response(status: int, code: str, message: str, headers: dict | None = None,
                   extra: dict | None = None):
    resp = jsonify({"error": {"code": code, "message": message, **(extra or {})}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


# Codes for HTTP errors raised by Quart/Werkzeug itself.
HTTP_CODES = {
    400: ("bad_request", "The request could not be understood."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This method is not allowed here."),
    408: ("request_timeout", "The request took too long to arrive."),
    413: ("payload_too_large", "The request is too large."),
    415: ("unsupported_media_type", "This content type is not supported."),
    431: ("headers_too_large", "The request headers are too large."),
    500: ("internal_error", "Something went wrong on our side."),
}
