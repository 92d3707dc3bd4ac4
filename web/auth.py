"""Shared-password login: signed expiring tokens, log-out, and a per-client failure limit.

Tokens are ``<payload>.<signature>`` with an HMAC-SHA256 signature over a base64url JSON payload
holding the expiry time. A token logged out (``DELETE /api/auth``) is refused until it would have
expired: its SHA-256 is kept in memory and in the database. Passwords and signatures are
compared in constant time, as bytes: ``hmac.compare_digest`` raises ``TypeError`` on a
non-ASCII ``str``, and whatever a client sends (any Unicode, lone surrogates from JSON escapes
included) must answer 401, never 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FAILURES_PER_MINUTE = 10
WINDOW = 60.0
# Clients with recent failures remembered at most: a flood from many addresses (an IPv6 /64
# holds 2**64) forgets the clients whose last failure is oldest instead of growing without end.
MAX_CLIENTS = 10_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AuthStatistics:
    tracked_clients: int  # clients with failures inside the window, at most MAX_CLIENTS


class Auth:
    def __init__(self, password: str, secret: bytes, ttl: float, clock: Callable[[], float]):
        self._password = password.encode("utf-8")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        # Tokens logged out before they expired: digest → expiry (kept in the database too,
        # `remember_revoked`, so a restart does not bring them back).
        self._revoked: dict[str, float] = {}

    # -- passwords ------------------------------------------------------------------------

    def check_password(self, candidate: str) -> bool:
        return hmac.compare_digest(_bytes(candidate), self._password)

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 when not blocked). Records nothing."""
        q = self._failures.get(client)
        if q is None:
            return 0.0
        self._prune(q)
        if len(q) < FAILURES_PER_MINUTE:
            return 0.0
        return max(1.0, WINDOW - (self._clock() - q[0]))

    def record_failure(self, client: str) -> None:
        # Re-inserted at the end: the dict stays ordered by last failure, oldest first, so both
        # expired clients and, past MAX_CLIENTS, the least recent ones are dropped from the front.
        q = self._failures.pop(client, None) or deque(maxlen=FAILURES_PER_MINUTE)
        self._prune(q)
        q.append(self._clock())
        self._failures[client] = q
        cutoff = self._clock() - WINDOW
        while self._failures:
            oldest = next(iter(self._failures))
            if len(self._failures) <= MAX_CLIENTS and self._failures[oldest][-1] > cutoff:
                break
            del self._failures[oldest]

    def statistics(self) -> AuthStatistics:
        return AuthStatistics(tracked_clients=len(self._failures))

    def _prune(self, q: deque[float]) -> None:
        cutoff = self._clock() - WINDOW
        while q and q[0] <= cutoff:
            q.popleft()

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
        if self.revoked(token):
            raise TokenError("token_revoked", "This session was logged out. Log in again.")
        return exp

    def revoke(self, token: str) -> tuple[str, float]:
        """Log ``token`` out (it must verify): every later use is refused. Returns its digest
        and expiry, for the database."""
        exp = self.verify(token)
        digest = token_digest(token)
        now = self._clock()
        self._revoked = {d: e for d, e in self._revoked.items() if e > now}
        self._revoked[digest] = exp
        return digest, exp

    def revoked(self, token: str) -> bool:
        """Whether ``token`` was logged out."""
        return token_digest(token) in self._revoked

    def remember_revoked(self, revoked: dict[str, float]) -> None:
        """The logged-out tokens kept in the database (at start-up)."""
        self._revoked.update(revoked)

    def _sign(self, payload: bytes) -> bytes:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest()).encode("ascii")


def token_digest(token: str) -> str:
    """What the database keeps of a logged-out token: its SHA-256, never the token."""
    return hashlib.sha256(_bytes(token)).hexdigest()


def _bytes(text: str) -> bytes:
    """``text`` as UTF-8 whatever it holds; lone surrogates pass through instead of raising."""
    return text.encode("utf-8", "surrogatepass")


def client_address(peer: str | None, headers, trusted: str | int | None) -> str:
    """The address the login limit counts failures against.

    ``trusted`` is ``VR_TRUSTED_PROXY``: ``None``, the socket ``peer``; ``"fly"``, the
    ``Fly-Client-IP`` header (Fly's proxy sets it, replacing any the client sent); ``N``, the
    Nth address from the right of all ``X-Forwarded-For`` values (each of the N proxies appends
    the address it saw, so entries further left are the client's own and may be forged).
    ``headers`` is Werkzeug's ``Headers`` (``get``/``getlist``). When the header is missing, too
    short or not an address, the peer counts: the request did not come through the proxies.
    """
    fallback = peer or "unknown"
    if trusted is None:
        return fallback
    if trusted == "fly":
        value = headers.get("Fly-Client-IP")
    else:
        entries = [e for v in headers.getlist("X-Forwarded-For") for e in v.split(",")]
        value = entries[-int(trusted)] if len(entries) >= int(trusted) else None
    return _ip(value) or fallback


def _ip(value: str | None) -> str | None:
    """``value`` as a canonical IP address (a port or IPv6 brackets removed), else None."""
    text = (value or "").strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":")[0]  # IPv4 with a port
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


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
