"""The tus 1.0.0 resumable upload protocol's headers: pure parsing and the answers' headers
(https://tus.io/protocols/resumable-upload, core plus the creation, termination and expiration
extensions). The routes that use them are ``web/resumable.py``.

No maintained tus server fits a Quart-Trio app that must keep its own authentication, storage
cap, backpressure and idle timeout (the ASGI ones, asgi-tus and tussi, are standalone apps with
their own storage and auth), so this module stays small and is tested against the spec's
examples (``tests/test_tus.py``).
"""

from __future__ import annotations

import base64
import binascii
import re
from email.utils import formatdate

VERSION = "1.0.0"
EXTENSIONS = "creation,termination,expiration"
OFFSET_TYPE = "application/offset+octet-stream"
_KEY = re.compile(r"^[^\s,]+$")


class TusError(Exception):
    """A request the protocol refuses: the HTTP status, a stable code and a sentence."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check_version(value: str | None) -> None:
    """``Tus-Resumable`` must name the version this server speaks (412 otherwise)."""
    if value != VERSION:
        raise TusError(412, "tus_version", f"Send the header Tus-Resumable: {VERSION}.")


def parse_size(name: str, value: str | None) -> int:
    """A non-negative integer header (``Upload-Length``, ``Upload-Offset``); 400 otherwise."""
    if value is None or not re.fullmatch(r"[0-9]{1,19}", value.strip()):
        raise TusError(400, "bad_header", f"{name} must be a whole number of bytes.")
    return int(value.strip())


def parse_metadata(value: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value may be left
    out). Values are decoded as UTF-8 (invalid bytes replaced); 400 for a malformed header."""
    out: dict[str, str] = {}
    if not value or not value.strip():
        return out
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        if not parts[0] or len(parts) > 2 or not _KEY.match(parts[0]) or parts[0] in out:
            raise TusError(400, "bad_metadata", "Upload-Metadata must be comma-separated "
                           "'key base64value' pairs with distinct keys.")
        try:
            raw = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
        except (binascii.Error, ValueError):
            raise TusError(400, "bad_metadata",
                           f"Upload-Metadata: the value of {parts[0]!r} is not base64.") from None
        out[parts[0]] = raw.decode("utf-8", "replace")
    return out


def expires_header(ts: float) -> str:
    """``Upload-Expires``: an RFC 9110 HTTP date."""
    return formatdate(ts, usegmt=True)


def base_headers() -> dict[str, str]:
    return {"Tus-Resumable": VERSION}


def options_headers(max_size: int) -> dict[str, str]:
    return {"Tus-Resumable": VERSION, "Tus-Version": VERSION, "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(max_size)}
