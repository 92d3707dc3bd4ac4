"""The render queue and what each render did: ``GET /api/queue``, ``POST /api/queue/pause`` and
``/resume`` (drain: running renders finish, nothing new starts; kept across restarts), and
``GET /api/jobs/{id}/videos/{vid}/log`` (``text/plain``: every FFmpeg run of every attempt, its
exact command line and its stderr)."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify

from pipeline.actors.lifecycle import open_video
from pipeline.actors.runner import DID_NOT_START
from pipeline.state.rows import FfmpegRun

from .views import iso, queue_model

bp = Blueprint("queue", __name__)


def _service():
    return current_app.extensions["service"]


@bp.get("/api/queue")
async def queue():
    return jsonify(queue_model(await _service().queue_view()).dump())


@bp.post("/api/queue/pause")
async def pause():
    service = _service()
    await service.pause_queue()
    return jsonify(queue_model(await service.queue_view()).dump())


@bp.post("/api/queue/resume")
async def resume():
    service = _service()
    await service.resume_queue()
    return jsonify(queue_model(await service.queue_view()).dump())


@bp.get("/api/jobs/<job_id>/videos/<video_id>/log")
async def video_log(job_id: str, video_id: str):
    service = _service()
    video = await open_video(service, job_id, video_id)
    runs = await service.store.ffmpeg_runs(video_id)
    text = render_log(video.name, runs)
    return Response(text.encode("utf-8"), content_type="text/plain; charset=utf-8")


def render_log(name: str, runs: list[FfmpegRun]) -> str:
    """The log as a person reads it: one section per FFmpeg run, grouped by attempt."""
    if not runs:
        return f"{name}: no render has started yet.\n"
    lines = [f"{name}: {len(runs)} FFmpeg run(s) in {runs[-1].attempt} attempt(s)", ""]
    for r in runs:
        if r.returncode is None and r.finished_at is None:
            ended = "still running"
        elif r.returncode is None and r.stderr.startswith(DID_NOT_START):
            ended = f"did not start ({iso(r.finished_at)})"
        elif r.returncode is None:  # stopped by the service: cancelled, stalled, shut down
            ended = f"stopped before it finished at {iso(r.finished_at)}"
        else:
            ended = f"exit code {r.returncode} at {iso(r.finished_at)}"
        lines += [f"== attempt {r.attempt}, started {iso(r.started_at)}, {ended}",
                  "$ " + r.command, r.stderr.rstrip() or "(no output on stderr)", ""]
    return "\n".join(lines)
