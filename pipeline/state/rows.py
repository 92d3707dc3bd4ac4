"""Typed rows: what the store returns (``Job``, ``Video``, ``Output``), frozen and in the
pipeline's own names. The API's JSON is made from them in one place (``web/views.py``).

``Video.outputs`` is filled by ``Store.get_job`` (the job page); ``Store.list_jobs`` (history)
gives only ``output_count`` and leaves ``outputs`` None, so a summary is never mistaken for a
video without outputs.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from pipeline.state.states import JobStatus, VideoStatus


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def _current_figures(figures: dict | None) -> dict | None:
    """The stored figures when they are of the current shape (PDQ and Chromaprint); those of
    outputs measured with the earlier pHash (``{"source": …, "siblingsMin": …}``) are dropped, so
    the API and the manifest only ever give one shape."""
    if isinstance(figures, dict) and isinstance(figures.get("video"), dict):
        return figures
    return None


def _args(value: object) -> tuple[str, ...] | None:
    return tuple(str(a) for a in value) if isinstance(value, list) else None


@dataclass(frozen=True)
class Output:
    """One verified output file of a video: one variation in one format."""

    index: int
    name: str
    path: str
    size: int
    duration: float | None = None
    seed: str | None = None
    params: dict = field(default_factory=dict)
    graph: str = ""
    # The FFmpeg options after the output's maps (``encoder.Encoder.output_args``), None where
    # they were not recorded.
    encoder_args: tuple[str, ...] | None = None
    # The distinctness figures (``quality``; the API's ``distinctness``), None where they could
    # not be measured.
    distinctness: dict | None = None
    # The placement format ("source", "9:16", …) and the variation (from 0) this file is.
    format: str = "source"
    variation: int | None = None
    # The output's measured loudness (``loudness.measure``), None when not normalised.
    loudness: dict | None = None

    @property
    def variation_index(self) -> int:
        return self.index if self.variation is None else self.variation

    @property
    def applied_params(self) -> dict:
        """``params`` as rendered: a file brought to a loudness target (``loudness`` measured)
        did not get the variation's own random gain."""
        return {**self.params, "gain_db": 0.0} if self.loudness is not None else self.params

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Output:
        return cls(index=r["idx"], name=r["name"], path=r["path"], size=r["size"],
                   duration=r["duration"], seed=r["seed"], params=_loads(r["params_json"]) or {},
                   graph=r["graph"] or "", encoder_args=_args(_loads(r["encoder_json"])),
                   distinctness=_current_figures(_loads(r["distance_json"])),
                   format=r["format"] or "source", variation=r["variation"],
                   loudness=_loads(r["loudness_json"]))


@dataclass(frozen=True)
class Video:
    """One source video of a job and where its render stands."""

    id: str
    job_id: str
    index: int
    name: str
    upload_path: str | None
    size: int
    duration: float | None
    info: dict
    status: VideoStatus
    progress: float
    attempts: int
    pid: int | None
    error: str | None
    stderr_tail: str | None
    retryable: bool
    outputs: tuple[Output, ...] | None = None
    output_count: int = 0
    # When this attempt's render began and when the video last finished (completed, failed or
    # cancelled); None before.
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def has_sound(self) -> bool:
        """Whether the source has sound (``MediaInfo.has_audio`` of intake's probe), so that its
        variations' pitch and gain changed anything; taken to have when it is not known."""
        return bool(self.info.get("has_audio", True)) if isinstance(self.info, dict) else True

    @classmethod
    def from_row(cls, r: sqlite3.Row, outputs: tuple[Output, ...] | None = None,
                 output_count: int | None = None) -> Video:
        return cls(
            id=r["id"], job_id=r["job_id"], index=r["idx"], name=r["name"],
            upload_path=r["upload_path"], size=r["size"], duration=r["duration"],
            info=_loads(r["info_json"]) or {}, status=VideoStatus(r["status"]),
            progress=r["progress"] or 0.0, attempts=r["attempts"], pid=r["pid"],
            error=r["error"], stderr_tail=r["stderr_tail"], retryable=bool(r["retryable"]),
            outputs=outputs,
            output_count=len(outputs) if output_count is None and outputs is not None
            else output_count or 0,
            started_at=r["started_at"], finished_at=r["finished_at"],
        )


@dataclass(frozen=True)
class Job:
    """A batch of videos rendered with the same seed and options."""

    id: str
    status: JobStatus
    created_at: float
    started_at: float | None
    completed_at: float | None
    expires_at: float | None
    variations: int
    seed: str
    options: dict
    error: str | None
    videos: tuple[Video, ...] = ()
    # The name it was given, or None for jobs made before jobs had names (``display_name``).
    name: str | None = None

    @classmethod
    def from_row(cls, r: sqlite3.Row, videos: tuple[Video, ...] = ()) -> Job:
        return cls(
            id=r["id"], status=JobStatus(r["status"]), created_at=r["created_at"],
            started_at=r["started_at"], completed_at=r["completed_at"],
            expires_at=r["expires_at"], variations=r["variations"], seed=r["seed"],
            options=_loads(r["options_json"]) or {}, error=r["error"], videos=videos,
            name=r["name"],
        )


@dataclass(frozen=True)
class FfmpegRun:
    """One FFmpeg process of a video's render (the per-video log): the attempt it belonged to,
    its exact command line and what it wrote to stderr (bounded)."""

    attempt: int
    started_at: float
    finished_at: float | None
    returncode: int | None
    command: str
    stderr: str

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> FfmpegRun:
        return cls(attempt=r["attempt"], started_at=r["started_at"], finished_at=r["finished_at"],
                   returncode=r["returncode"], command=r["command"], stderr=r["stderr"])


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: never the key itself, only its hash."""

    id: str
    name: str
    created_at: float
    last_used_at: float | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> ApiKey:
        return cls(id=r["id"], name=r["name"], created_at=r["created_at"],
                   last_used_at=r["last_used_at"])


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery owed or made: the job event, its body once built (kept, so every
    retry sends the same signed bytes), and how the tries went."""

    id: int
    job_id: str
    event: str
    created_at: float
    body: str | None
    tries: int
    next_at: float
    delivered_at: float | None
    gave_up_at: float | None
    last_status: int | None
    last_error: str | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Delivery:
        return cls(**{k: r[k] for k in r.keys()})


@dataclass(frozen=True)
class Throughput:
    """A finished render, as the ETA learns from it: the source's size and length, the number
    of variations and the wall-clock seconds the render took."""

    width: int
    height: int
    duration: float
    variations: int
    seconds: float


@dataclass(frozen=True)
class Resumable:
    """A resumable (tus) upload: its file name, its announced length, the bytes safely on disk
    so far (``offset``) and when it expires if it is not finished and used by then."""

    id: str
    name: str
    length: int
    offset: int
    created_at: float
    expires_at: float

    @property
    def complete(self) -> bool:
        return self.offset == self.length

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Resumable:
        return cls(**{k: r[k] for k in r.keys()})
