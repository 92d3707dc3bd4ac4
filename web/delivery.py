"""Delivery and lifecycle endpoints: ZIP download, cancel, retry, delete, and the WebSocket.

A thin face over ``pipeline.actors.lifecycle`` (the rules) and ``pipeline.delivery.zipper``
(the archive); the app answers their refusals (``web/app.py: LIFECYCLE_STATUS``). Every path
here is under ``/api/``, so the app's ``before_request`` has already checked the token for HTTP
(header, or ``?token=`` for the download); WebSockets skip ``before_request``, so ``/api/ws``
checks its own token.

WebSocket protocol (``/api/ws?token=…``):
- without a valid token the socket is accepted, then closed with code 4401 (a close before
  accept would be an HTTP 403 the browser cannot tell apart from other failures);
- on connect the server sends ``{"type":"hello","jobs":[…]}`` (the same jobs as ``GET
  /api/jobs``), then the hub's events ``{"type":"job"|"video"|"progress", …}``;
- the client may send ``{"subscribe": jobId}`` (or ``null`` for all jobs); the server answers
  ``{"type":"subscribed","jobId":…,"job":{…}|null}`` with a snapshot of that job, then only its
  events;
- a client too slow to take the state events is closed with code 4408 (it should re-sync from
  ``GET /api/jobs`` and reconnect); progress ticks are merged, never queued; when the token
  expires the socket is closed with 4401.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import trio
from quart import Blueprint, Response, current_app, g, jsonify, websocket

from pipeline.actors.lifecycle import (
    cancel_job,
    cancel_video,
    delete_job,
    open_download,
    retry_video,
)
from pipeline.delivery.zipper import archive_filename, stream_archive
from pipeline.state.progress import SubscriberLagging

from .auth import TokenError
from .flow import loads_or_none
from .keys import authenticate, key_revoked
from .metrics import count_bytes
from .ranges import ranged_response
from .views import Snapshot, event_messages, job_json

bp = Blueprint("delivery", __name__)

# State events a WebSocket client may have pending before it is closed as lagging.
WS_QUEUE = 256
KEY_RECHECK = 5.0
CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4401
CLOSE_LAGGING = 4408


def _service():
    return current_app.extensions["service"]


# -- HTTP ---------------------------------------------------------------------------------------


@bp.get("/api/jobs/<job_id>/download")
async def download(job_id: str):
    """The job's ZIP; one ``Range: bytes=…`` range gives 206 (resumed downloads).

    The archive's bytes are fixed by its members, and ``ETag`` names them: ``If-Range`` with
    that tag keeps the range, anything else (another tag, a weak one, a date) gets all of it.
    Several ranges, other units or bad syntax also get all of it (RFC 9110 allows ignoring
    ``Range``); a range starting past the end is 416 with ``Content-Range: bytes */<length>``.
    ``If-None-Match`` with that tag is 304: the client's copy is this archive.
    """
    job, archive = await open_download(_service(), job_id)
    counter = current_app.extensions["metrics"].add_download
    try:
        resp = ranged_response(
            archive.length, archive.etag, "application/zip",
            lambda start, stop: count_bytes(stream_archive(archive, start, stop), counter),
            {"Last-Modified": archive.last_modified,
             "Content-Disposition": content_disposition(archive_filename(job))})
    except BaseException:
        archive.close()
        raise
    if resp.status_code == 304:  # the client holds these bytes: the archive is not read
        archive.close()
        return resp
    resp.timeout = None  # a multi-GB download may take long; the client sets the pace
    return resp


@bp.post("/api/jobs/<job_id>/cancel")
async def cancel(job_id: str):
    job = await cancel_job(_service(), job_id)
    return await _accepted(job)


@bp.post("/api/jobs/<job_id>/videos/<video_id>/cancel")
async def cancel_one(job_id: str, video_id: str):
    job = await cancel_video(_service(), job_id, video_id)
    return await _accepted(job)


@bp.post("/api/jobs/<job_id>/videos/<video_id>/retry")
async def retry(job_id: str, video_id: str):
    job = await retry_video(_service(), job_id, video_id)
    return await _accepted(job)


@bp.delete("/api/jobs/<job_id>")
async def delete(job_id: str):
    await delete_job(_service(), job_id)
    return Response(b"", status=204)


async def _accepted(job):
    """202 with the job as ``GET /api/jobs/{id}`` gives it, places in line included."""
    return jsonify(job_json(job, await _service().queue_view())), 202


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 name (RFC 6266)."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    ascii_name = ascii_name.replace('"', "_").replace("\\", "_")
    if ascii_name == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# -- WebSocket ----------------------------------------------------------------------------------


@bp.websocket("/api/ws")
async def ws():
    token = websocket.args.get("token")
    try:
        token_expires = await authenticate(token)
    except TokenError as exc:
        await websocket.accept()
        await websocket.close(CLOSE_UNAUTHORIZED, exc.message)
        return
    await websocket.accept()
    service = _service()
    # ``?job=<id>`` follows one job from the start: its first message is that job's
    # ``subscribed`` snapshot instead of the whole history's ``hello``.
    follow = websocket.args.get("job") or None
    # Subscribe before taking the snapshot: every event after it is then either already in
    # the snapshot or delivered after it, so the client ends up with the current state.
    with service.hub.subscribe(follow, max_events=WS_QUEUE) as sub:
        if follow is None:
            jobs = await service.store.list_jobs()
            queue = await service.queue_view()
            await _send(websocket, {"type": "hello", "jobs": [job_json(j, queue) for j in jobs]})
        else:
            snapshot = Snapshot(follow, await service.store.get_job(follow),
                                await service.queue_view())
            for message in event_messages(snapshot):
                await _send(websocket, message)
        key = g.get("api_key")
        # Why the socket closes: the token's or key's end unless something else comes first.
        close = [CLOSE_UNAUTHORIZED, ("This API key was revoked." if key is not None
                                      else "Your session has expired. Log in again.")]
        with trio.move_on_after(max(0.0, token_expires - time.time())):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_ws_commands, service, sub)
                nursery.start_soon(_close_when_stopping, service, nursery.cancel_scope, close)
                if key is not None:
                    nursery.start_soon(_close_when_revoked, key.id, nursery.cancel_scope)
                else:
                    nursery.start_soon(_close_when_logged_out, token, nursery.cancel_scope, close)
                try:
                    while True:
                        for message in event_messages(await sub.receive()):
                            await _send(websocket, message)
                except SubscriberLagging:
                    close[:] = [CLOSE_LAGGING, "Too far behind: re-sync from /api/jobs."]
                nursery.cancel_scope.cancel()
        await websocket.close(*close)


async def _close_when_stopping(service, scope: trio.CancelScope, close: list) -> None:
    """On shutdown, close with 1001 (going away) while the server can still say so: Hypercorn
    cuts what is still open after its grace period, which a client sees as 1006."""
    await service.stopping.wait()
    close[:] = [CLOSE_GOING_AWAY, "The server is stopping; reconnect in a moment."]
    scope.cancel()


async def _ws_commands(service, sub) -> None:
    """Apply ``{"subscribe": jobId}`` messages; anything else is ignored."""
    while True:
        raw = await websocket.receive()
        msg = loads_or_none(raw)
        if not isinstance(msg, dict) or "subscribe" not in msg:
            continue
        job_id = msg["subscribe"]
        if job_id is not None and not isinstance(job_id, str):
            continue
        sub.subscribe(job_id)
        job = await service.store.get_job(job_id) if job_id else None
        # Goes through the subscriber's queue, so it is ordered with the events around it.
        sub.push(Snapshot(job_id, job, await service.queue_view()))


async def _close_when_revoked(key_id: str, scope: trio.CancelScope) -> None:
    """A socket opened with an API key closes within ``KEY_RECHECK`` seconds of its revocation."""
    while not await key_revoked(key_id):
        await trio.sleep(KEY_RECHECK)
    scope.cancel()


async def _close_when_logged_out(token: str, scope: trio.CancelScope, close: list) -> None:
    """A socket opened with a login token closes within ``KEY_RECHECK`` seconds of its log-out
    (``DELETE /api/auth``): it was still sent every job's events until the token expired."""
    auth = current_app.extensions["auth"]
    while not auth.revoked(token):
        await trio.sleep(KEY_RECHECK)
    close[:] = [CLOSE_UNAUTHORIZED, "This session was logged out. Log in again."]
    scope.cancel()


async def _send(ws, message: dict) -> None:
    await ws.send(json.dumps(message, separators=(",", ":")))
