"""Presenters: store rows → the public JSON shapes of DESIGN §4 (camelCase, no server paths)."""

from __future__ import annotations

from datetime import UTC, datetime


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
