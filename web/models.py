"""The API's response shapes, as pydantic models: ``web.views`` builds every JSON body by
filling one of these and dumping it, and ``web.openapi`` documents the same classes, so the
document cannot drift from what is served. Field names are the API's camelCase.

``extra="forbid"``: a view that sends a field the model does not declare fails at once (in
the tests), instead of serving an undocumented field. Optional fields that a view leaves unset
are left out of the body (``dump``), as the API always did (``log``, ``distance``).
"""

from __future__ import annotations

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


class PlacementPreset(Shape):
    """A named placement: what ``preset=<name>`` sets (each can still be given on its own)."""

    name: str
    label: str
    formats: list[str]
    fit: str
    loudness: float


class Health(Shape):
    """Service health, the FFmpeg in use, the upload limits, the effect families and the
    placement formats."""

    status: str = Field(description='"ok", or "unavailable" with problems listed')
    version: str
    ffmpeg: str
    ffmpegPath: str
    limits: Limits
    effects: list[EffectFamily]
    formats: list[str] = Field(default_factory=list, description="Values of `formats`.")
    fits: list[str] = Field(default_factory=list, description="Values of `fit`.")
    focuses: list[str] = Field(default_factory=list, description="Values of `focus`.")
    presets: list[PlacementPreset] = Field(default_factory=list)
    problems: list[str] | None = None


class Token(Shape):
    """A signed token for the Authorization header (or ?token= on download links)."""

    token: str
    expiresAt: str


class VideoFigures(Shape):
    """PDQ (Meta's near-duplicate hash of frames) at the same content moments as the source."""

    metric: str = Field(description='"pdq"')
    frames: int = Field(description="Frames compared.")
    sourceMatches: int = Field(description="Frames within the match threshold (31) of the source's "
                               "(any of its 8 mirror/turn transforms): a matcher would call them copies.")
    sourceDistance: int = Field(description="Median distance to the source, in bits of 256.")
    siblingMatches: int | None = Field(description="The worst other variation of this video: frames "
                                       "within the threshold; null with one variation.")
    siblingDistance: int | None = Field(description="The worst other variation's median distance.")


class AudioFigures(Shape):
    """Chromaprint fingerprints: similarity = 1 − bit-error rate of the best-aligned overlap."""

    metric: str = Field(description='"chromaprint"')
    sourceSimilarity: float | None = Field(description="1 = the same recording, about 0.6 unrelated.")
    siblingSimilarity: float | None = Field(description="The most similar other variation's.")


class Distinctness(Shape):
    """How each variation compares with its source and siblings (docs/distinctness.md)."""

    video: VideoFigures
    audio: AudioFigures | None = Field(description="null for a video without sound.")
    rerolls: int = Field(description="Times this variation was drawn again for matching.")


class Loudness(Shape):
    """An output's loudness as measured after normalising (EBU R128, FFmpeg ``ebur128``)."""

    target: float = Field(description="The job's target, LUFS.")
    integrated: float = Field(description="Measured integrated loudness, LUFS.")
    truePeak: float = Field(description="Measured true peak, dBTP.")
    range: float | None = Field(None, description="Loudness range, LU.")


class Placement(Shape):
    """The shapes a job's variations are delivered in (README, "Placement formats")."""

    formats: list[str] = Field(description="source, 9:16, 1:1, 4:5, 16:9; in the order asked.")
    fit: str = Field(description="crop or pad")
    focus: str = Field(description="Where a crop window sits: center, left, right, top, bottom.")
    loudness: float | None = Field(None, description="Target LUFS; null: levels left alone.")


class Output(Shape):
    index: int = Field(description="0-based output number within its video; the n in its URL "
                       "is index + 1.")
    variation: int = Field(0, description="0-based variation (v01 in its name is 0).")
    format: str = Field("source", description="Its placement format: source, 9:16, 1:1, 4:5 or "
                        "16:9.")
    width: int | None = Field(None, description="Display width in pixels.")
    height: int | None = Field(None, description="Display height in pixels.")
    loudness: Loudness | None = Field(None, description="null when levels were left alone.")
    name: str
    size: int
    duration: float | None = None
    effects: list[str] = Field(description='The effects in words: ["mirrored", "5 % zoom", …].')
    distinctness: Distinctness | None = Field(None, description="null when not measured.")
    url: str = Field(description="The file (Range requests, ?token=, ?download=1).")
    previewUrl: str | None = Field(None, description="A JPEG contact strip of frames of this "
                                   "variation; absent where its frames could not be taken.")


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
    previewUrl: str | None = Field(None, description="A JPEG contact strip of the source, once "
                                   "it has variations (the frames the render tapped).")
    startedAt: str | None = Field(None, description="When its current or last render began.")
    finishedAt: str | None = Field(None, description="When it last completed, failed or was "
                                   "cancelled.")
    queuePosition: int | None = Field(None, description="Place in line while queued, 1 = next.")
    startsInSeconds: float | None = Field(None, description="While queued: about when it starts "
                                          "(null: no estimate yet, or the queue is paused).")
    etaSeconds: float | None = Field(None, description="While queued or rendering: about how long "
                                     "until it is done, from the renders measured on this "
                                     "machine (null until it can be estimated).")
    logUrl: str = Field(description="text/plain: every FFmpeg command and its stderr, by attempt.")


class Job(Shape):
    """A job with its videos."""

    id: str
    name: str = Field(description="As given at upload, else the first file's name and how many more.")
    status: str = Field(description="queued, processing, completed, failed, cancelled or expired")
    createdAt: str
    startedAt: str | None = None
    completedAt: str | None = None
    expiresAt: str | None = None
    variationsPerVideo: int
    seed: str
    excludedEffects: list[str]
    placement: Placement
    progress: float
    etaSeconds: float | None = Field(None, description="About how long until its last video is "
                                     "done; null when not pending or not yet estimable.")
    counts: dict[str, int]
    videos: list[Video]


class JobList(Shape):
    """Jobs, newest first."""

    jobs: list[Job]


class Queue(Shape):
    """The render queue: paused (kept across restarts), and how much waits and runs."""

    paused: bool = Field(description="Running renders finish; nothing new starts.")
    queued: int
    running: int
    workers: int = Field(description="Renders at once (VR_WORKERS).")
    etaSeconds: float | None = Field(None, description="About how long until all is done.")


class ApiKey(Shape):
    """An API key: ``key`` (``vrk_…``) only in the answer that made it; it is never shown again."""

    id: str
    name: str
    key: str | None = Field(None, description="The key itself, only when it is made.")
    createdAt: str
    lastUsedAt: str | None = None


class ApiKeyList(Shape):
    keys: list[ApiKey]


class UploadedVideo(Shape):
    id: str
    name: str
    size: int


class JobCreated(Shape):
    """The upload was accepted and queued."""

    jobId: str
    name: str
    status: str
    videos: list[UploadedVideo]
    variationsPerVideo: int
    seed: str
    statusUrl: str
