"""Resumable uploads (tus 1.0.0) at ``/api/uploads``: ``POST`` creates one, ``PATCH`` appends at
its offset, ``HEAD`` says the offset, ``DELETE`` ends it; a finished upload becomes a job
through ``POST /api/jobs`` with JSON ``{"uploads": [...]}`` (``web/jobs.py``).

Bytes stream to ``<data>/resumable/<id>.bin`` with the multipart upload's backpressure and idle
timeout, never whole in memory. The stored offset only moves after the bytes it counts were
fsynced, at the end of each ``PATCH`` (also when the client goes away mid-way), so a crash
between chunks resumes exactly there and a crash inside one loses at most that chunk. An upload
not finished and used within ``VR_UPLOAD_TTL`` is deleted by the janitor; its announced length
counts against the storage cap from the start. Authentication is the API's (a token or a key);
headers and their checks are ``web/tus.py``.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path

import trio
from quart import Blueprint, Response, current_app, request

from pipeline.media.naming import display_name
from pipeline.state.rows import Resumable

from . import tus
from .errors import APIError, error_response
from .metrics import count_upload
from .uploads import BATCH, _IdleWindow

bp = Blueprint("resumable", __name__)

# Ids of uploads a PATCH, a DELETE or a job being made is working on: a second request on one
# of them at the same time gets 409.
_busy: set[str] = set()
# While a PATCH streams, its bytes are fsynced and the offset saved every this many bytes, so a
# crash or a silent network drop in a long transfer loses at most this much.
SAVE_EVERY = 64 << 20


@contextmanager
def claim_uploads(ids: list[str]):
    """Hold these uploads for one request (409 ``upload_busy`` if another holds one)."""
    taken = [i for i in ids if i in _busy]
    if taken:
        raise APIError(409, "upload_busy", "Another request is using this upload.",
                       extra={"upload": taken[0]})
    _busy.update(ids)
    try:
        yield
    finally:
        _busy.difference_update(ids)


@bp.after_request
async def _tus_header(resp: Response) -> Response:
    """Every answer here says the protocol version, errors from outside this module too."""
    resp.headers.setdefault("Tus-Resumable", tus.VERSION)
    return resp


def _service():
    return current_app.extensions["service"]


def file_path(settings, upload_id: str) -> Path:
    return settings.resumable_dir / f"{upload_id}.bin"


def _tus_error(exc: tus.TusError, headers: dict | None = None) -> Response:
    resp = error_response(exc.status, exc.code, exc.message,
                          {**tus.base_headers(), **(headers or {})})
    if exc.status == 412:
        resp.headers["Tus-Version"] = tus.VERSION
    return resp


def _state_headers(upload: Resumable) -> dict[str, str]:
    return {**tus.base_headers(), "Upload-Offset": str(upload.offset),
            "Upload-Length": str(upload.length), "Upload-Expires": tus.expires_header(upload.expires_at),
            "Cache-Control": "no-store"}


@bp.route("/api/uploads", methods=["POST", "OPTIONS"], provide_automatic_options=False)
async def collection():
    settings = _service().settings
    if request.method == "OPTIONS":
        return Response(b"", status=204, headers=tus.options_headers(settings.max_upload))
    try:
        return await _create()
    except tus.TusError as exc:
        return _tus_error(exc)


async def _create() -> Response:
    service = _service()
    settings = service.settings
    headers = request.headers
    tus.check_version(headers.get("Tus-Resumable"))
    if "Upload-Defer-Length" in headers:
        raise tus.TusError(400, "length_required", "Send Upload-Length: this server needs to "
                           "know the size up front (creation-defer-length is not offered).")
    length = tus.parse_size("Upload-Length", headers.get("Upload-Length"))
    if length == 0:
        raise tus.TusError(400, "empty_file", "The file is empty.")
    if length > settings.max_upload:
        raise tus.TusError(413, "upload_too_large",
                           f"The file is larger than the limit of {settings.max_upload} bytes.")
    meta = tus.parse_metadata(headers.get("Upload-Metadata"))
    name = display_name(meta.get("filename") or meta.get("name") or "video")
    if not await service.janitor.make_room(length):
        raise tus.TusError(507, "storage_full", "Not enough storage for this file, even after "
                           "removing finished jobs. Wait for running jobs to finish, or delete "
                           "some jobs.")
    now = service.clock()
    upload = Resumable(id="u" + secrets.token_hex(8), name=name, length=length, offset=0,
                       created_at=now, expires_at=now + settings.upload_ttl)
    path = file_path(settings, upload.id)
    await trio.to_thread.run_sync(_create_file, path)
    try:
        await service.store.create_resumable(upload)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    service.log.info("resumable upload created", extra={"uploadId": upload.id, "bytes": length})
    return Response(b"", status=201, headers={
        **tus.base_headers(), "Location": f"/api/uploads/{upload.id}", "Upload-Offset": "0",
        "Upload-Expires": tus.expires_header(upload.expires_at)})


@bp.route("/api/uploads/<upload_id>", methods=["HEAD", "PATCH", "DELETE"])
async def item(upload_id: str):
    try:
        tus.check_version(request.headers.get("Tus-Resumable"))
        upload = await _open(upload_id)
        if request.method == "HEAD":
            return Response(b"", status=200, headers=_state_headers(upload))
        try:
            with claim_uploads([upload_id]):
                if request.method == "DELETE":
                    return await _terminate(upload)
                return await _append(upload)
        except APIError as exc:
            raise tus.TusError(exc.status, exc.code, exc.message) from None
    except tus.TusError as exc:
        return _tus_error(exc)


async def _open(upload_id: str) -> Resumable:
    service = _service()
    upload = await service.store.resumable(upload_id)
    if upload is None:
        raise tus.TusError(404, "upload_not_found", "There is no upload with this id.")
    if upload.expires_at <= service.clock():
        raise tus.TusError(410, "upload_expired", "This upload has expired. Start it again.")
    return upload


async def _terminate(upload: Resumable) -> Response:
    service = _service()
    await trio.to_thread.run_sync(lambda: file_path(service.settings, upload.id).unlink(missing_ok=True))
    await service.store.delete_resumables([upload.id])
    service.log.info("resumable upload terminated", extra={"uploadId": upload.id})
    return Response(b"", status=204, headers=tus.base_headers())


async def _append(upload: Resumable) -> Response:
    service = _service()
    headers = request.headers
    if headers.get("Content-Type", "").split(";")[0].strip().lower() != tus.OFFSET_TYPE:
        raise tus.TusError(415, "bad_content_type", f"Send the bytes as {tus.OFFSET_TYPE}.")
    offset = tus.parse_size("Upload-Offset", headers.get("Upload-Offset"))
    if offset != upload.offset:
        raise tus.TusError(409, "wrong_offset",
                           f"This upload is at byte {upload.offset}, not {offset}: ask with HEAD "
                           "and send from there.")
    declared = request.content_length
    if declared is not None and offset + declared > upload.length:
        raise tus.TusError(413, "past_the_end", "These bytes go past the upload's length.")
    written = await _receive(upload, file_path(service.settings, upload.id))
    done = Resumable(**{**upload.__dict__, "offset": upload.offset + written})
    if done.complete:
        service.log.info("resumable upload complete", extra={"uploadId": upload.id,
                                                             "bytes": done.length})
    return Response(b"", status=204, headers={
        **tus.base_headers(), "Upload-Offset": str(done.offset),
        "Upload-Expires": tus.expires_header(done.expires_at)})


async def _receive(upload: Resumable, path: Path) -> int:
    """Append the request body at the upload's offset; returns the bytes now safely stored.

    Whatever ends the transfer (the end of the body, a stall, the client going away, a full
    disk), the bytes received are fsynced and the offset saved before this returns or raises.
    """
    service = _service()
    settings = service.settings
    room = upload.length - upload.offset
    fh = await trio.to_thread.run_sync(_open_at, path, upload.offset)
    written = saved = 0
    count = count_upload()
    pending = bytearray()
    try:
        window = _IdleWindow(settings.upload_idle_timeout)
        chunks = request.body.__aiter__()
        while (chunk := await _next(window, chunks)) is not None:
            count(len(chunk))
            if written + len(pending) + len(chunk) > room:
                raise tus.TusError(413, "past_the_end", "These bytes go past the upload's length.")
            pending += chunk
            if len(pending) >= BATCH:
                data, pending = bytes(pending), bytearray()
                await trio.to_thread.run_sync(_write, fh, data)
                written += len(data)
                if written - saved >= SAVE_EVERY:
                    await trio.to_thread.run_sync(_sync, fh)
                    await service.store.set_resumable_offset(upload.id, upload.offset + written)
                    saved = written
                window.restart()
    finally:
        with trio.CancelScope(shield=True):
            try:
                if pending:  # what arrived before the end, a stall or a disconnect is kept
                    await trio.to_thread.run_sync(_write, fh, bytes(pending))
                    written += len(pending)
            finally:
                await trio.to_thread.run_sync(_close_synced, fh)
                if written > saved:
                    await service.store.set_resumable_offset(upload.id, upload.offset + written)
    return written


async def _next(window: _IdleWindow, chunks) -> bytes | None:
    try:
        return await window.receive(chunks)
    except APIError as exc:  # the idle timeout
        raise tus.TusError(exc.status, exc.code, exc.message) from None


# -- blocking helpers (worker threads) ------------------------------------------------------------


def _create_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as fh:
        os.fsync(fh.fileno())


def _open_at(path: Path, offset: int):
    """The upload's file open for writing at ``offset``; bytes after it (an earlier transfer cut
    off before its offset was saved) are dropped."""
    fh = open(path, "r+b")
    fh.truncate(offset)
    fh.seek(offset)
    return fh


def _write(fh, data: bytes) -> None:
    fh.write(data)


def _sync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _close_synced(fh) -> None:
    try:
        fh.flush()
        os.fsync(fh.fileno())
    finally:
        fh.close()
