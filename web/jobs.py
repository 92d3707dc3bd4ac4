"""Health, login and the jobs resource: ``/api/health``, ``/api/auth``, ``/api/jobs[/{id}]``.

Thin views: they check what the client sent, ask the service (intake, store, janitor) and
answer with ``web.views`` shapes. Uploads stream through ``web.uploads``; nothing is left behind
when one is refused.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
from pathlib import Path

import trio
from quart import Blueprint, Response, current_app, g, jsonify, request

import pipeline
from pipeline.actors.intake import IntakeRejected, UploadedFile
from pipeline.actors.janitor import expected_output_bytes
from pipeline.media import formats
from pipeline.media.effects import FAMILIES, GEOMETRIC, OPT_IN, EffectOptions
from pipeline.media.ffmpeg import ffmpeg_version
from pipeline.media.formats import Placement
from pipeline.state.progress import until_finished
from pipeline.state.states import JOB_TERMINAL

from . import models
from .auth import TokenError, client_address
from .errors import APIError
from .flow import SMALL_BODY, json_body, loads_or_none
from .metrics import count_upload
from .resumable import claim_uploads, file_path
from .uploads import ReceivedFile, receive_upload
from .views import iso, job_json, job_model

bp = Blueprint("jobs", __name__)

MAX_VARIATIONS = 20
# ``GET /api/jobs/{id}?wait=``: the longest wait a client may ask for (seconds), under the idle
# timeout of the proxies usually in front of the service (Fly's: 60 s); a client that needs
# longer asks again.
MAX_WAIT = 60.0
# A waiting request's queue of job events (it takes them as they come, so the queue stays short;
# should it overflow, the wait ends early with the job as it is then).
WAIT_EVENTS = 64


def _service():
    return current_app.extensions["service"]


# -- health and auth --------------------------------------------------------------------------


@bp.get("/api/health")
async def health():
    service = _service()
    settings = service.settings
    problems = []
    try:
        await service.store.check()
    except Exception as exc:
        problems.append(f"database: {exc}")
    try:
        await trio.to_thread.run_sync(_check_writable, settings.data_dir)
    except OSError as exc:
        problems.append(f"data dir: {exc}")
    body = models.Health(
        status="ok" if not problems else "unavailable",
        version=pipeline.__version__,
        ffmpeg=await trio.to_thread.run_sync(ffmpeg_version, service.ffmpeg),
        ffmpegPath=service.ffmpeg,
        # What the upload form checks before sending (the server enforces them anyway).
        limits=models.Limits(maxUpload=settings.max_upload, maxFiles=settings.max_files,
                             maxVariations=MAX_VARIATIONS),
        # The effect families and which are on unless turned off (`-name`) or only when
        # asked for (`+name`): the upload form and the job page read them from here.
        effects=[models.EffectFamily(name=name, default=name not in OPT_IN,
                                     geometric=name in GEOMETRIC) for name in FAMILIES],
        # The placement formats, fits and presets a job may ask for.
        formats=list(formats.RATIOS), fits=list(formats.FITS), focuses=list(formats.FOCUSES),
        presets=[models.PlacementPreset(name=p.name, label=p.label, formats=list(p.formats),
                                        fit=p.fit, loudness=p.loudness)
                 for p in formats.PRESETS.values()],
    )
    if problems:
        body.problems = problems
        return jsonify(body.dump()), 503
    return jsonify(body.dump())


@bp.post("/api/auth")
async def login():
    auth = current_app.extensions["auth"]
    client = client_address(request.remote_addr, request.headers, _service().settings.trusted_proxy)
    wait = auth.blocked(client)
    if wait:
        raise APIError(429, "too_many_attempts",
                       f"Too many wrong passwords. Try again in {int(wait)} seconds.",
                       {"Retry-After": str(int(wait))})
    data = await json_body()
    if not isinstance(data, dict) or not isinstance(data.get("password"), str):
        raise APIError(400, "password_required", 'Send {"password": "..."} as JSON.')
    if not auth.check_password(data["password"]):
        auth.record_failure(client)
        raise APIError(401, "wrong_password", "That password is not right.")
    token, expires = auth.issue()
    return jsonify(models.Token(token=token, expiresAt=iso(expires)).dump())


@bp.delete("/api/auth")
async def logout():
    """End the session of the login token sent (``Authorization: Bearer``): it, and every link
    made with it (``?token=``), is refused from now on. API keys are revoked with
    ``DELETE /api/keys/{id}``."""
    if g.get("api_key") is not None:
        raise APIError(400, "not_a_session",
                       "An API key is not a login session: revoke it with DELETE /api/keys/{id}.")
    auth, service = current_app.extensions["auth"], _service()
    token = request.headers["Authorization"].split(None, 1)[1].strip()
    try:
        digest, expires = auth.revoke(token)
    except TokenError as exc:  # it expired (or was logged out) since the request's check
        raise APIError(401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"}) from None
    await service.store.revoke_token(digest, expires, service.clock())
    return Response(b"", status=204)


# -- jobs -------------------------------------------------------------------------------------


@bp.get("/api/jobs")
async def list_jobs():
    service = _service()
    jobs = await service.store.list_jobs()
    queue = await service.queue_view()
    return jsonify(models.JobList(jobs=[job_model(j, queue) for j in jobs]).dump())


@bp.post("/api/jobs")
async def create_job():
    if request.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json":
        return await create_job_from_uploads()
    service = _service()
    settings = service.settings
    job_id = "j" + secrets.token_hex(8)
    job_dir = settings.uploads_dir / job_id
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) <= settings.max_upload:
        await _check_room_for_upload(service, int(length))
    accepted = False
    try:
        upload = await receive_upload(
            request, job_dir, max_upload=settings.max_upload, max_files=settings.max_files,
            idle_timeout=settings.upload_idle_timeout, on_bytes=count_upload(),
        )
        variations, seed, options = _job_fields(upload.fields)
        placement = job_placement(upload.fields)
        name = _job_name(upload.fields)
        files = _check_files(upload.files)
        await _check_room_for_outputs(service, files, variations, len(placement.formats))
        result = await service.submit({
            "job_id": job_id,
            "files": tuple(UploadedFile(f.video_id, f.name, f.path, f.size) for f in files),
            "variations": variations,
            "seed": seed,
            "options": options,
            "name": name,
            "placement": placement,
        })
        if isinstance(result, IntakeRejected):
            raise APIError(result.status, result.code, result.message)
        accepted = True
    finally:
        if not accepted:
            # Synchronous on purpose: this also runs while the handler is being cancelled
            # (client gone), and must leave nothing behind.
            shutil.rmtree(job_dir, ignore_errors=True)
    return _created(job_id, result, variations)


def _created(job_id: str, result, variations: int):
    return jsonify(models.JobCreated(
        jobId=job_id,
        name=result.name,
        status="queued",
        videos=[models.UploadedVideo(**v) for v in result.videos],
        variationsPerVideo=variations,
        seed=result.seed,
        statusUrl=f"/api/jobs/{job_id}",
    ).dump()), 202


async def create_job_from_uploads():
    """``POST /api/jobs`` with JSON ``{"uploads": [id, …], "variations", "effects", "name",
    "seed"}``: a job from finished resumable uploads. A refused file is named by its upload id
    (``error.upload``) and every upload stays as it was, so the client can drop that one and
    send the rest."""
    service = _service()
    settings = service.settings
    ids, fields = await _uploads_request(settings.max_files)
    variations, seed, options = _job_fields(fields)
    placement = job_placement(fields)
    name = _job_name(fields)
    with claim_uploads(ids):
        return await _job_from_uploads(service, ids, variations, seed, options, name, placement)


async def _job_from_uploads(service, ids: list[str], variations: int, seed, options, name,
                            placement: Placement):
    settings = service.settings
    uploads = [await _finished_upload(service, i) for i in ids]
    files = [ReceivedFile("v" + secrets.token_hex(6), u.name, Path(), u.length) for u in uploads]
    await _check_room_for_outputs(service, files, variations, len(placement.formats))
    job_id = "j" + secrets.token_hex(8)
    job_dir = settings.uploads_dir / job_id
    moves = [(file_path(settings, u.id), job_dir / f"{f.video_id}.upload")
             for u, f in zip(uploads, files, strict=True)]
    try:
        await trio.to_thread.run_sync(_move_all, job_dir, moves)
    except FileNotFoundError:
        raise APIError(404, "upload_not_found", "An upload's file is gone (deleted meanwhile): "
                       "upload it again.") from None
    accepted = False
    try:
        result = await service.submit({
            "job_id": job_id,
            "files": tuple(UploadedFile(f.video_id, f.name, dst, f.size)
                           for f, (_, dst) in zip(files, moves, strict=True)),
            "variations": variations, "seed": seed, "options": options, "name": name,
            "placement": placement,
        })
        if isinstance(result, IntakeRejected):
            refused = next((u.id for u, f in zip(uploads, files, strict=True)
                            if f.video_id == result.video_id), None)
            raise APIError(result.status, result.code, result.message,
                           extra={"upload": refused} if refused else None)
        accepted = True
    finally:
        if not accepted:  # every upload back where it was, as it was
            _move_back(job_dir, moves)
    with trio.CancelScope(shield=True):  # the job owns the files now, whoever hangs up
        await service.store.delete_resumables([u.id for u in uploads])
    return _created(job_id, result, variations)


async def _uploads_request(max_files: int) -> tuple[list[str], dict[str, str]]:
    """The JSON body's upload ids (1 to ``max_files``, distinct) and its other fields, as text
    (the multipart form's checks then apply to them)."""
    raw = bytearray()
    async for chunk in request.body:
        raw += chunk
        if len(raw) > SMALL_BODY:  # as every other small body (web/flow.py)
            raise APIError(413, "payload_too_large", "The request is too large.")
    data = loads_or_none(bytes(raw))
    ids = data.get("uploads") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise APIError(400, "no_uploads", 'Send {"uploads": ["<upload id>", …]} with the ids '
                       "of finished uploads (the last part of each upload's Location).")
    if len(ids) > max_files:
        raise APIError(413, "too_many_files", f"Too many files: at most {max_files} per job.")
    if len(set(ids)) != len(ids):
        raise APIError(400, "duplicate_upload", "Each upload can be used once per job.")
    fields = {}
    for key in ("variations", "seed", "effects", "name", *formats.FIELDS):
        value = data.get(key)
        if key == "formats" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value) or None
        if key == "loudness" and isinstance(value, float):
            value = repr(value)
        if value is not None and not isinstance(value, bool) and isinstance(value, int | str):
            fields[key] = str(value)
        elif value is not None:
            kind = {"variations": "a whole number", "loudness": "a number of LUFS",
                    "formats": "a list of format names"}.get(key, "text")
            raise APIError(400, f"bad_{key}", f"{key} must be {kind}.")
    return ids, fields


async def _finished_upload(service, upload_id: str):
    upload = await service.store.resumable(upload_id)
    extra = {"upload": upload_id}
    if upload is None or upload.expires_at <= service.clock():
        raise APIError(404, "upload_not_found", f"There is no finished upload {upload_id!r} "
                       "(unknown, expired or already used).", extra=extra)
    if not upload.complete:
        raise APIError(409, "upload_incomplete", f"{upload.name!r} is not fully uploaded yet "
                       f"({upload.offset} of {upload.length} bytes).", extra=extra)
    return upload


def _move_all(job_dir: Path, moves: list[tuple[Path, Path]]) -> None:
    job_dir.mkdir(parents=True, exist_ok=False)
    done = []
    try:
        for src, dst in moves:
            os.replace(src, dst)
            done.append((src, dst))
    except BaseException:
        _move_back(job_dir, done)
        raise


def _move_back(job_dir: Path, moves: list[tuple[Path, Path]]) -> None:
    for src, dst in moves:
        try:
            os.replace(dst, src)
        except FileNotFoundError:
            pass
    shutil.rmtree(job_dir, ignore_errors=True)


@bp.get("/api/jobs/<job_id>")
async def get_job(job_id: str):
    """The job; with ``?wait=S``, answered once the job has ended (completed, failed, cancelled,
    expired or deleted), after ``S`` seconds, or when the server stops, whichever comes first:
    a client learns the end without polling."""
    service = _service()
    wait = wait_seconds(request.args.get("wait"))
    if wait:
        job = await _job_once_ended(service, job_id, wait)
    else:
        job = await service.store.get_job(job_id)
    if job is None:
        raise APIError(404, "job_not_found", "There is no job with this id.")
    return jsonify(job_json(job, await service.queue_view()))


def wait_seconds(raw: str | None) -> float:
    """``?wait=`` in seconds (absent or empty: 0). Raises ``APIError`` (400)."""
    if raw is None or not raw.strip():
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_WAIT:
        raise APIError(400, "bad_wait", f"wait must be a number of seconds from 0 to {MAX_WAIT:g}.")
    return value


async def _job_once_ended(service, job_id: str, seconds: float):
    """The job (None when there is none) once it has ended, after ``seconds``, or when the
    server begins to stop, whichever comes first."""
    # Subscribed before the read: an end after it is then either in the row or an event.
    with service.hub.subscribe(job_id, max_events=WAIT_EVENTS) as sub:
        job = await service.store.get_job(job_id)
        if job is None or job.status in JOB_TERMINAL:
            return job
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when, service.stopping.wait, nursery.cancel_scope)
            with trio.move_on_after(seconds):
                await until_finished(sub)
            nursery.cancel_scope.cancel()
    return await service.store.get_job(job_id)


async def _cancel_when(event_wait, scope: trio.CancelScope) -> None:
    await event_wait()
    scope.cancel()


# -- checks -----------------------------------------------------------------------------------


async def _check_room_for_upload(service, length: int) -> None:
    """Refuse an announced upload that cannot fit under the cap or on the disk, before a byte
    of it is written."""
    if not await service.janitor.make_room(length):
        raise APIError(507, "storage_full",
                       "Not enough storage for this upload, even after removing finished "
                       "jobs. Wait for running jobs to finish, or delete some jobs.")
    if length > await trio.to_thread.run_sync(_free_bytes, service.settings.data_dir):
        raise APIError(507, "storage_full",
                       "The server's disk is full. Wait for running jobs to finish, or delete "
                       "some jobs.")


async def _check_room_for_outputs(service, files: list[ReceivedFile], variations: int,
                                  shapes: int = 1) -> None:
    """Room for the outputs too (each video's variations in each of ``shapes`` formats), not
    only for the upload (reserved until they land)."""
    outputs = expected_output_bytes(sum(f.size for f in files), variations * shapes)
    if not await service.janitor.make_room(outputs):
        what = f"{variations} variations" + (f" in {shapes} shapes" if shapes > 1 else "")
        names = ", ".join(f.name for f in files[:3]) + (f" and {len(files) - 3} more"
                                                         if len(files) > 3 else "")
        raise APIError(507, "storage_full",
                       f"Not enough storage for the {what} of {names} (about "
                       f"{outputs / 1e6:.1f} MB), even after removing finished jobs. Ask for "
                       "fewer variations or shapes, wait for running jobs to finish, or "
                       "delete some jobs.")


def _check_files(files: list[ReceivedFile]) -> list[ReceivedFile]:
    if not files:
        raise APIError(400, "no_files", "Add at least one video in the field 'videos'.")
    empty = [f.name for f in files if f.size == 0]
    if empty:
        raise APIError(400, "empty_file", f"{empty[0]!r} is empty.")
    return files


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


def job_placement(fields: dict[str, str]) -> Placement:
    """The job's placement from its ``formats``, ``fit``, ``focus``, ``loudness`` and
    ``preset`` fields (absent: the source's shape, levels left alone). A bad value is a 400
    naming its field (``bad_formats``, …)."""
    for key in formats.FIELDS:
        try:
            formats.parse_placement(**{key: fields.get(key)})
        except formats.FormatError as exc:
            raise APIError(400, f"bad_{key}", f"{exc}.") from None
    return formats.parse_placement(**{k: fields.get(k) for k in formats.FIELDS})


MAX_NAME = 120


def _job_name(fields: dict[str, str]) -> str | None:
    """The job's ``name`` field: printable text of at most ``MAX_NAME`` characters; absent or
    blank, the job is named after its files."""
    name = " ".join(fields.get("name", "").split())
    if not name:
        return None
    if len(name) > MAX_NAME or not name.isprintable():
        raise APIError(400, "bad_name", f"name must be printable text of at most {MAX_NAME} "
                       "characters.")
    return name


def _check_writable(path: Path) -> None:
    probe = path / f".health-{secrets.token_hex(4)}"
    probe.write_bytes(b"ok")
    probe.unlink()


def _free_bytes(path: Path) -> int:
    """Bytes the data dir's file system can still take (the storage cap may be larger)."""
    return shutil.disk_usage(path).free
