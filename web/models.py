"""The API's response shapes, as pydantic models: ``web.views`` builds every JSON body by
filling one of these and dumping it, and ``web.openapi`` documents the same classes, so the
document cannot drift from what is served. Field names are the API's camelCase.

``extra="forbid"``: a view that sends a field the model does not declare fails at once (in
the tests), instead of serving an undocumented field. Optional fields that a view leaves unset
are left out of the body (``dump``), as the API always did (``log``, ``distance``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def dump(self) -> dict:
        """The JSON body: the fields that were set, unset optional ones left out."""
        return self.model_dump(mode="json", exclude_unset=True)


class ErrorDetail(Shape):
    code: str = Field(description="Stable snake_case code.")
    message: str = Field(description="A human sentence.")


class Error(Shape):
    """An error: a stable code and a human sentence."""

    error: ErrorDetail


class Limits(Shape):
    maxUpload: int = Field(description="Bytes per upload request.")
    maxFiles: int = Field(description="Files per upload request.")
    maxVariations: int


class EffectFamily(Shape):
    name: str
    default: bool = Field(description="On unless turned off with -name; false: only with +name.")
    geometric: bool = Field(description="Changes the picture's geometry (a job keeps one).")


class Health(Shape):
    """Service health, the FFmpeg in use, the upload limits and the effect families."""

    status: str = Field(description='"ok", or "unavailable" with problems listed')
    version: str
    ffmpeg: str
    ffmpegPath: str
    limits: Limits
    effects: list[EffectFamily]
    problems: list[str] | None = None


class Token(Shape):
    """A signed token for the Authorization header (or ?token= on download links)."""

    token: str
    expiresAt: str


class Output(Shape):
    index: int
    name: str
    size: int
    duration: float | None = None
    distance: dict[str, Any] | None = None


class Video(Shape):
    id: str
    name: str
    size: int
    duration: float | None = None
    status: str
    progress: float
    error: str | None = None
    attempts: int
    retryable: bool
    log: str | None = None
    outputs: list[Output] | None = None
    outputCount: int | None = None


class Job(Shape):
    """A job with its videos."""

    id: str
    status: str = Field(description="queued, processing, completed, failed, cancelled or expired")
    createdAt: str
    startedAt: str | None = None
    completedAt: str | None = None
    expiresAt: str | None = None
    variationsPerVideo: int
    seed: str
    excludedEffects: list[str]
    progress: float
    counts: dict[str, int]
    videos: list[Video]


class JobList(Shape):
    """Jobs, newest first."""

    jobs: list[Job]


class UploadedVideo(Shape):
    id: str
    name: str
    size: int


class JobCreated(Shape):
    """The upload was accepted and queued."""

    jobId: str
    status: str
    videos: list[UploadedVideo]
    variationsPerVideo: int
    seed: str
    statusUrl: str
