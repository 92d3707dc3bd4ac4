"""Presenters: store rows and pipeline events → the public JSON shapes (camelCase, no server
paths). The only place that makes the API's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.state.events import Event, JobChanged, JobDeleted, Progress, VideoChanged


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def video_json(v: dict) -> dict:
    out = {
        "id": v["id"],
        "name": v["name"],
        "size": v["size"],
        "duration": v["duration"],
        "status": v["status"],
        "progress": round(v["progress"] or 0.0, 1),
        "error": v["error"],
        "attempts": v["attempts"],
        "retryable": bool(v["retryable"]) and v["status"] in ("failed", "interrupted", "cancelled")
        and bool(v.get("uploadPath")),
    }
    if v.get("stderrTail"):
        out["log"] = v["stderrTail"]
    if "outputs" in v:
        out["outputs"] = [
            {"index": o["index"], "name": o["name"], "size": o["size"], "duration": o["duration"],
             **({"distance": o["distance"]} if o.get("distance") is not None else {})}
            for o in v["outputs"]
        ]
    else:
        out["outputCount"] = v.get("outputCount", 0)
    return out


def job_json(job: dict) -> dict:
    videos = [video_json(v) for v in job.get("videos", [])]
    progress = sum(v["progress"] for v in videos) / len(videos) if videos else 0.0
    counts: dict[str, int] = {}
    for v in videos:
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    return {
        "id": job["id"],
        "status": job["status"],
        "createdAt": iso(job["createdAt"]),
        "startedAt": iso(job["startedAt"]),
        "completedAt": iso(job["completedAt"]),
        "expiresAt": iso(job["expiresAt"]),
        "variationsPerVideo": job["variationsPerVideo"],
        "seed": job["seed"],
        "excludedEffects": job["options"].get("exclude", []),
        "progress": round(progress, 1),
        "counts": counts,
        "videos": videos,
    }


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
                     "job": job_json(event.job) if event.job is not None else None}]
    raise TypeError(f"no message for {event!r}")


@dataclass(frozen=True)
class Snapshot(Event):
    """The WebSocket's answer to ``{"subscribe": jobId}``: the job as it is now (None: unknown
    job, or ``job_id`` None for all jobs). Sent through the subscriber's queue, so it is ordered
    with the events around it."""

    job: dict | None = field(default=None, compare=False)
