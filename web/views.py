"""Presenters: store rows and pipeline events → the public JSON shapes (camelCase, no server
paths). The only place that makes the API's JSON; each body is one of ``web.models``' classes,
filled here and dumped, and the OpenAPI document is made from the same classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.actors.scheduler import QueueView
from pipeline.media import formats
from pipeline.media.describe import describe
from pipeline.media.effects import VariationParams
from pipeline.media.formats import Placement
from pipeline.media.naming import default_job_name
from pipeline.media.probe import MediaInfo
from pipeline.state.events import Event, JobChanged, JobDeleted, Progress, VideoChanged
from pipeline.state.rows import Job, Output, Video
from pipeline.state.states import RETRYABLE, VideoStatus

from . import models


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def output_url(job_id: str, video_id: str, number: int) -> str:
    """A variation's file; ``number`` is its variation number (index + 1, as in its name)."""
    return f"/api/jobs/{job_id}/videos/{video_id}/outputs/{number}"


def video_preview_url(job_id: str, video_id: str) -> str:
    return f"/api/jobs/{job_id}/videos/{video_id}/preview"


def output_effects(o: Output, has_audio: bool = True) -> list[str]:
    """The effects in words, as rendered (``Output.applied_params``)."""
    return describe(VariationParams.from_dict(o.applied_params), has_audio)


def output_model(o: Output, job_id: str, video_id: str,
                 size: tuple[int, int] | None = None, has_audio: bool = True) -> models.Output:
    url = output_url(job_id, video_id, o.index + 1)
    fields = {"index": o.index, "variation": o.variation_index, "format": o.format,
              "name": o.name, "size": o.size, "duration": o.duration,
              "effects": output_effects(o, has_audio), "url": url}
    if size is not None:
        fields["width"], fields["height"] = size
    if o.loudness is not None:
        fields["loudness"] = models.Loudness(**o.loudness)
    # The figures and the contact strip come from the same frames: no figures, no strip.
    if o.distinctness is not None:
        fields["distinctness"] = models.Distinctness(**o.distinctness)
        fields["previewUrl"] = f"{url}/preview"
    return models.Output(**fields)


def video_log_url(job_id: str, video_id: str) -> str:
    return f"/api/jobs/{job_id}/videos/{video_id}/log"


def job_name(job: Job) -> str:
    """The job's name; jobs made before names were kept are named after their files."""
    return job.name or default_job_name([v.name for v in job.videos])


def output_size(v: Video, o: Output, placement: Placement) -> tuple[int, int] | None:
    """An output's display size, from its source's probe and the job's placement."""
    info = MediaInfo.from_dict(v.info)
    if info is None:
        return None
    return formats.output_size(o.format, placement.fit, info.display_width, info.display_height,
                               info.display_sar)


def video_model(v: Video, queue: QueueView | None = None,
                placement: Placement | None = None) -> models.Video:
    placement = placement or Placement()
    fields = {
        "id": v.id,
        "name": v.name,
        "size": v.size,
        "duration": v.duration,
        "status": str(v.status),
        "progress": round(v.progress, 1),
        "error": v.error,
        "attempts": v.attempts,
        "retryable": v.retryable and v.status in RETRYABLE and bool(v.upload_path),
        "startedAt": iso(v.started_at),
        "finishedAt": iso(v.finished_at),
        "logUrl": video_log_url(v.job_id, v.id),
    }
    estimate = queue.estimates.get(v.id) if queue is not None else None
    if estimate is not None:
        fields["queuePosition"] = estimate.position
        fields["startsInSeconds"] = estimate.starts_in if estimate.position else None
        fields["etaSeconds"] = estimate.eta
    if v.stderr_tail:
        fields["log"] = v.stderr_tail
    if v.outputs is not None:
        fields["outputs"] = [output_model(o, v.job_id, v.id, output_size(v, o, placement),
                                          v.has_sound)
                             for o in v.outputs]
        if v.status == VideoStatus.COMPLETED and any(o.distinctness for o in v.outputs):
            fields["previewUrl"] = video_preview_url(v.job_id, v.id)
    else:
        fields["outputCount"] = v.output_count
    return models.Video(**fields)


def job_model(job: Job, queue: QueueView | None = None) -> models.Job:
    """The job's JSON; with ``queue``, its pending videos' places and estimates too."""
    placement = Placement.from_dict(job.options.get("placement"))
    videos = [video_model(v, queue, placement) for v in job.videos]
    progress = sum(v.progress for v in videos) / len(videos) if videos else 0.0
    counts: dict[str, int] = {}
    for v in videos:
        counts[v.status] = counts.get(v.status, 0) + 1
    eta = queue.job_eta([v.id for v in job.videos]) if queue is not None else None
    return models.Job(
        id=job.id,
        name=job_name(job),
        status=str(job.status),
        createdAt=iso(job.created_at),
        startedAt=iso(job.started_at),
        completedAt=iso(job.completed_at),
        expiresAt=iso(job.expires_at),
        variationsPerVideo=job.variations,
        seed=job.seed,
        excludedEffects=job.options.get("exclude", []),
        placement=models.Placement(**placement.to_dict()),
        progress=round(progress, 1),
        etaSeconds=eta,
        counts=counts,
        videos=videos,
    )


def job_json(job: Job, queue: QueueView | None = None) -> dict:
    """``GET /api/jobs/{id}`` (and each entry of the list, the WebSocket's snapshots)."""
    return job_model(job, queue).dump()


def queue_model(queue: QueueView) -> models.Queue:
    return models.Queue(paused=queue.paused, queued=queue.queued, running=queue.running,
                        workers=queue.workers, etaSeconds=queue.job_eta(list(queue.estimates)))


def event_messages(event: Event) -> list[dict]:
    """The WebSocket messages for one pipeline event, in order. A video's change is followed
    by its job's status, as clients update both."""
    match event:
        case VideoChanged():
            video = {"type": "video", "jobId": event.job_id, "videoId": event.video_id,
                     "status": str(event.status)}
            if event.progress is not None:
                video["progress"] = event.progress
            if event.error is not None:
                video["error"] = event.error
            return [video, {"type": "job", "jobId": event.job_id, "status": str(event.job_status)}]
        case Progress():
            return [{"type": "progress", "jobId": event.job_id, "videoId": event.video_id,
                     "progress": event.progress}]
        case JobChanged():
            return [{"type": "job", "jobId": event.job_id, "status": str(event.status)}]
        case JobDeleted():
            return [{"type": "job", "jobId": event.job_id, "status": "deleted"}]
        case Snapshot():
            return [{"type": "subscribed", "jobId": event.job_id,
                     "job": job_json(event.job, event.queue) if event.job is not None else None}]
    raise TypeError(f"no message for {event!r}")


@dataclass(frozen=True)
class Snapshot(Event):
    """The WebSocket's answer to ``{"subscribe": jobId}``: the job as it is now (None: unknown
    job, or ``job_id`` None for all jobs). Sent through the subscriber's queue, so it is ordered
    with the events around it."""

    job: Job | None = field(default=None, compare=False)
    queue: QueueView | None = field(default=None, compare=False)
