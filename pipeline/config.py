"""Configuration from the environment (12-factor); CLI flags override it.

Durations accept plain seconds or a unit suffix (``90``, ``90s``, ``5m``, ``24h``, ``2d``); sizes
accept plain bytes or a suffix (``500000``, ``500KB``, ``3GB``, ``4GiB``). A bad value raises
``ConfigError`` with a one-line message naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.media.encoder import QUALITIES, X264_PRESETS


class ConfigError(Exception):
    pass


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_NUM_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``24h`` or ``2d``."""
    m = _NUM_UNIT.match(str(text))
    if not m or m.group(2).lower() not in _DURATION_UNITS:
        raise ValueError(f"{text!r} is not a duration (use e.g. 90, 90s, 5m, 24h)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]


def parse_size(text: str) -> int:
    """Bytes from ``500000``, ``500KB``, ``3GB`` or ``4GiB``."""
    m = _NUM_UNIT.match(str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (use e.g. 500000, 500MB, 3GB, 4GiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_trusted_proxy(text: str) -> str | int | None:
    """``fly``, a number of proxy hops (``0`` = none), or empty for none."""
    value = str(text).strip().lower()
    if value in ("", "0"):
        return None
    if value == "fly":
        return "fly"
    if re.fullmatch(r"[0-9]+", value):
        return int(value)
    raise ValueError(f"{text!r} is not 'fly' or a number of proxy hops (e.g. 1)")


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) // 2)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 8080
    password: str | None = None
    secret: str | None = None
    storage_cap: int = 3 * 1000**3
    job_ttl: float = 24 * 3600.0
    # How long an expired job stays in the list (as "expired") before its row is removed.
    expired_keep: float = 24 * 3600.0
    evict_at: float = 0.85
    janitor_interval: float = 300.0
    max_upload: int = 4 * 1000**3
    max_files: int = 10
    workers: int = field(default_factory=default_workers)
    # The encoder profile (pipeline/media/encoder.py): "fast", "balanced" or "small".
    quality: str = "balanced"
    # An x264 preset that replaces the profile's (and its option changes); None: the profile's.
    preset: str | None = None
    ffmpeg: str | None = None
    token_ttl: float = 24 * 3600.0
    # Grace period for FFmpeg after "q" before SIGTERM, then SIGKILL.
    stop_grace: float = 5.0
    # A render whose output time does not advance for this long is stopped and failed.
    stall_timeout: float = 120.0
    cors_origins: tuple[str, ...] = ()
    # An upload that sends nothing for this long is dropped (slow-loris clients).
    upload_idle_timeout: float = 60.0
    # PDQ match threshold (bits of 256, see pipeline/media/distinct.py): two frames at most this
    # far apart are the same picture. A variation with a frame that matches its source or a
    # sibling is re-rolled. 31 is PDQ's own recommendation; a plain re-encode, a mirror or a
    # speed change measure 0–2, default variations mostly 40–110. -1: nothing matches, which
    # turns re-rolls off.
    pdq_match: int = 31
    # How each output's pictures are checked before delivery: "sampled" reads every packet and
    # decodes the keyframes and the audio (pipeline/media/packets.py); "full" decodes every
    # frame in an FFmpeg process as well (about a quarter more CPU on a five-output render).
    verify: str = "sampled"
    # Where the client address for the login limit comes from: None = the socket peer; "fly" =
    # the Fly-Client-IP header; N = the Nth address from the right of X-Forwarded-For. Only set
    # it behind such proxies: anyone can send those headers.
    trusted_proxy: str | int | None = None
    # Where job completed/failed/cancelled events are POSTed (pipeline/actors/notifier.py), and
    # the key their HMAC-SHA256 signature is made with; no URL: no webhooks.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # A resumable upload not finished and turned into a job within this long is deleted.
    upload_ttl: float = 24 * 3600.0

    @property
    def db_path(self) -> Path:
        return self.data_dir / "refresher.db"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def resumable_dir(self) -> Path:
        """Resumable (tus) uploads in progress, one ``<id>.bin`` each."""
        return self.data_dir / "resumable"

    def with_overrides(self, **kw: object) -> Settings:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


# (env name, field, parser)
_ENV: list[tuple[str, str, object]] = [
    ("VR_DATA_DIR", "data_dir", Path),
    ("VR_HOST", "host", str),
    ("VR_PORT", "port", int),
    ("VR_PASSWORD", "password", str),
    ("VR_SECRET", "secret", str),
    ("VR_STORAGE_CAP", "storage_cap", parse_size),
    ("VR_JOB_TTL", "job_ttl", parse_duration),
    ("VR_EXPIRED_KEEP", "expired_keep", parse_duration),
    ("VR_EVICT_AT", "evict_at", float),
    ("VR_JANITOR_INTERVAL", "janitor_interval", parse_duration),
    ("VR_MAX_UPLOAD", "max_upload", parse_size),
    ("VR_MAX_FILES", "max_files", int),
    ("VR_WORKERS", "workers", int),
    ("VR_QUALITY", "quality", lambda s: s.strip().lower()),
    ("VR_PRESET", "preset", lambda s: s.strip().lower()),
    ("VR_FFMPEG", "ffmpeg", str),
    ("VR_TOKEN_TTL", "token_ttl", parse_duration),
    ("VR_STOP_GRACE", "stop_grace", parse_duration),
    ("VR_STALL_TIMEOUT", "stall_timeout", parse_duration),
    ("VR_PDQ_MATCH", "pdq_match", int),
    ("VR_VERIFY", "verify", lambda s: s.strip().lower()),
    ("VR_CORS_ORIGINS", "cors_origins", lambda s: tuple(o.strip() for o in s.split(",") if o.strip())),
    ("VR_UPLOAD_IDLE_TIMEOUT", "upload_idle_timeout", parse_duration),
    ("VR_TRUSTED_PROXY", "trusted_proxy", parse_trusted_proxy),
    ("VR_WEBHOOK_URL", "webhook_url", str.strip),
    ("VR_WEBHOOK_SECRET", "webhook_secret", str),
    ("VR_UPLOAD_TTL", "upload_ttl", parse_duration),
]

ENV_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _ENV)

VERIFY_MODES = ("sampled", "full")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default ``os.environ``). Raises ``ConfigError`` on a bad value."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, attr, parse in _ENV:
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            values[attr] = parse(raw)  # type: ignore[operator]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{name}: {exc}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    if not (0 < s.port < 65536):
        raise ConfigError(f"VR_PORT: {s.port} is not a TCP port")
    if not (0.0 < s.evict_at <= 1.0):
        raise ConfigError(f"VR_EVICT_AT: {s.evict_at} must be between 0 and 1")
    if s.max_files < 1:
        raise ConfigError("VR_MAX_FILES: must be at least 1")
    if s.workers < 1:
        raise ConfigError("VR_WORKERS: must be at least 1")
    if s.preset is not None and s.preset not in X264_PRESETS:
        raise ConfigError(f"VR_PRESET: {s.preset!r} is not an x264 preset")
    if s.quality not in QUALITIES:
        raise ConfigError(f"VR_QUALITY: {s.quality!r} is not one of {', '.join(QUALITIES)}")
    if s.upload_ttl <= 0:
        raise ConfigError("VR_UPLOAD_TTL: must be more than 0 seconds")
    if s.upload_idle_timeout <= 0:
        raise ConfigError("VR_UPLOAD_IDLE_TIMEOUT: must be more than 0 seconds")
    if s.max_upload < 1 or s.storage_cap < 1:
        raise ConfigError("VR_MAX_UPLOAD and VR_STORAGE_CAP must be positive")
    if s.verify not in VERIFY_MODES:
        raise ConfigError(f"VR_VERIFY: {s.verify!r} is not one of {', '.join(VERIFY_MODES)}")
    if s.webhook_url is not None:
        if not _is_http_url(s.webhook_url):
            raise ConfigError(f"VR_WEBHOOK_URL: {s.webhook_url!r} is not an http(s) URL")
        if not s.webhook_secret:
            raise ConfigError("VR_WEBHOOK_SECRET: must be set with VR_WEBHOOK_URL (the receiver "
                              "checks each delivery's signature with it)")
    if not (-1 <= s.pdq_match <= 256):
        raise ConfigError(f"VR_PDQ_MATCH: {s.pdq_match} must be between -1 and 256")


def _is_http_url(text: str) -> bool:
    """An http(s) URL with a host and, if it names one, a port that exists (``urlsplit`` raises
    for a broken IPv6 host, and ``.port`` for a port out of range)."""
    try:
        url = urlsplit(text)
        _ = url.port
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)
