"""API keys for scripts: ``POST/GET /api/keys``, ``DELETE /api/keys/{id}``, and the check that
lets a key stand in for a login token.

A key is ``vrk_`` and 43 random URL-safe characters (256 bits), shown once when it is made.
The store keeps only its SHA-256 (a key is random and long, so a plain hash cannot be reversed
or guessed; a slow password hash would add nothing but a delay to every request). A key works
as ``Authorization: Bearer vrk_…`` (or ``?token=`` where a token may come that way) on every
``/api/*`` route a login token opens, except these three: making and listing keys needs a
login, so a leaked key cannot mint more or find the others. Deleting a key revokes it at once:
every request looks its hash up.
"""

from __future__ import annotations

import hashlib
import math
import secrets

from quart import Blueprint, Response, current_app, g, jsonify

from . import models
from .auth import TokenError
from .errors import APIError
from .flow import json_body
from .views import iso

bp = Blueprint("keys", __name__)

PREFIX = "vrk_"
MAX_NAME = 100


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def is_api_key(token: str) -> bool:
    return token.startswith(PREFIX)


async def authenticate(token: str | None) -> float:
    """Check a login token or an API key; returns when it expires (``inf`` for a key: it lasts
    until revoked). Raises ``TokenError``. A key's row is kept in ``g.api_key``."""
    if token and is_api_key(token):
        service = _service()
        key = await service.store.use_api_key(key_hash(token), service.clock())
        if key is None:
            raise TokenError("invalid_key", "This API key is not valid (revoked, or mistyped).")
        g.api_key = key
        return math.inf
    return current_app.extensions["auth"].verify(token)


async def key_revoked(key_id: str) -> bool:
    return all(k.id != key_id for k in await _service().store.api_keys())


def _service():
    return current_app.extensions["service"]


def _login_only() -> None:
    if g.get("api_key") is not None:
        raise APIError(403, "login_required",
                       "API keys cannot create, list or revoke keys: log in with the password.")


def _key_model(key, secret: str | None = None) -> models.ApiKey:
    fields = {"id": key.id, "name": key.name, "createdAt": iso(key.created_at),
              "lastUsedAt": iso(key.last_used_at)}
    if secret is not None:
        fields["key"] = secret
    return models.ApiKey(**fields)


@bp.post("/api/keys")
async def create_key():
    _login_only()
    data = await json_body()
    name = data.get("name") if isinstance(data, dict) else None
    name = " ".join(name.split()) if isinstance(name, str) else ""
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise APIError(400, "bad_name", f'Send {{"name": "..."}}: printable text of 1 to '
                       f"{MAX_NAME} characters, to tell the key apart later.")
    service = _service()
    secret = new_key()
    key = await service.store.create_api_key("k" + secrets.token_hex(6), name, key_hash(secret),
                                             service.clock())
    service.log.info("API key created", extra={"keyId": key.id, "keyName": name})
    return jsonify(_key_model(key, secret).dump()), 201


@bp.get("/api/keys")
async def list_keys():
    _login_only()
    keys = await _service().store.api_keys()
    return jsonify(models.ApiKeyList(keys=[_key_model(k) for k in keys]).dump())


@bp.delete("/api/keys/<key_id>")
async def delete_key(key_id: str):
    _login_only()
    service = _service()
    if not await service.store.delete_api_key(key_id):
        raise APIError(404, "key_not_found", "There is no API key with this id.")
    service.log.info("API key revoked", extra={"keyId": key_id})
    return Response(b"", status=204)
