"""Shared-password login: signed expiring tokens and a per-client failure limit.

Tokens are ``<payload>.<signature>`` with an HMAC-SHA256 signature over a base64url JSON payload
holding the expiry time. Passwords and signatures are compared in constant time, as bytes:
``hmac.compare_digest`` raises ``TypeError`` on a non-ASCII ``str``, and whatever a client sends
(any Unicode, lone surrogates from JSON escapes included) must answer 401, never 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections import deque
from collections.abc import Callable
from pathlib import Path

FAILURES_PER_MINUTE = 10
WINDOW = 60.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Auth:
    def __init__(self, password: str, secret: bytes, ttl: float, clock: Callable[[], float]):
        self._password = password.encode("utf-8")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    # -- passwords ------------------------------------------------------------------------

    def check_password(self, candidate: str) -> bool:
        return hmac.compare_digest(_bytes(candidate), self._password)

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 when not blocked)."""
        q = self._prune(client)
        if len(q) < FAILURES_PER_MINUTE:
            return 0.0
        return max(1.0, WINDOW - (self._clock() - q[0]))

    def record_failure(self, client: str) -> None:
        self._prune(client).append(self._clock())
        if len(self._failures) > 10_000:  # bound memory against spoofed-address floods
            self._failures = {k: v for k, v in self._failures.items() if v}

    def _prune(self, client: str) -> deque[float]:
        q = self._failures.setdefault(client, deque())
        cutoff = self._clock() - WINDOW
        while q and q[0] <= cutoff:
            q.popleft()
        return q

    # -- tokens ---------------------------------------------------------------------------

    def issue(self) -> tuple[str, float]:
        expires = self._clock() + self.ttl
        payload = _b64(json.dumps({"exp": round(expires, 3), "n": secrets.token_hex(4)}).encode())
        return f"{payload}.{self._sign(payload.encode('ascii')).decode('ascii')}", expires

    def verify(self, token: str | None) -> float:
        """Return the token's expiry time; raise ``TokenError`` if missing, bad or expired."""
        if not token:
            raise TokenError("auth_required", "Log in first: this needs a valid token.")
        payload, _, sig = _bytes(token).partition(b".")
        if not payload or not sig or not hmac.compare_digest(sig, self._sign(payload)):
            raise TokenError("invalid_token", "The token is not valid. Log in again.")
        try:
            exp = float(json.loads(_unb64(payload.decode("ascii")))["exp"])
        except (ValueError, KeyError, TypeError):
            raise TokenError("invalid_token", "The token is not valid. Log in again.") from None
        if exp <= self._clock():
            raise TokenError("token_expired", "Your session has expired. Log in again.")
        return exp

    def _sign(self, payload: bytes) -> bytes:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest()).encode("ascii")


def _bytes(text: str) -> bytes:
    """``text`` as UTF-8 whatever it holds; lone surrogates pass through instead of raising."""
    return text.encode("utf-8", "surrogatepass")


def load_or_create_secret(data_dir: Path, configured: str | None) -> bytes:
    """``VR_SECRET`` if set, else a random key kept in ``<data>/secret.key`` (mode 0600)."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    key = secrets.token_hex(32).encode("ascii")
    _write_private(path, key)
    return key


def load_or_create_password(data_dir: Path, configured: str | None) -> tuple[str, bool]:
    """``VR_PASSWORD`` if set, else one generated once and kept in ``<data>/password.txt``.

    Returns ``(password, newly_generated)`` so the caller prints it only the first time.
    """
    if configured:
        return configured, False
    path = data_dir / "password.txt"
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(12)
    _write_private(path, password.encode("utf-8"))
    return password, True


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)
