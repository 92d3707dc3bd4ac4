"""Streaming multipart upload straight into the data dir (never whole in memory, never /tmp).

The body is read chunk by chunk from Quart and fed to ``streaming-form-data``'s parser in a
worker thread; every file part of field ``videos`` goes to its own file with a generated name.

Resource handling: ``receive_upload`` writes only inside ``job_dir``; on any error, including
cancellation when the client disconnects, the caller removes ``job_dir`` (see ``web.app``).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException, parse_content_boundary
from streaming_form_data.targets import BaseTarget, ValueTarget

from pipeline.naming import display_name

from .errors import APIError

# Feed the parser in batches this big: fewer thread hops, still bounded memory.
BATCH = 1 << 20
# An upload that makes less than MIN_PROGRESS bytes of progress in this many seconds is dropped:
# a silent client, and a slow-loris one dripping a byte now and then. The service passes
# ``VR_UPLOAD_IDLE_TIMEOUT``. Time spent parsing and writing on our side does not count.
IDLE_TIMEOUT = 60.0
MIN_PROGRESS = 1024
# Write errors that mean "the disk is full", answered 507 rather than blamed on the client.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
MAX_FIELD = 1024


@dataclass
class ReceivedFile:
    video_id: str
    name: str
    path: Path
    size: int = 0


@dataclass
class ParsedUpload:
    files: list[ReceivedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    total: int = 0


class _TooManyFiles(Exception):
    pass


class _VideoTarget(BaseTarget):
    """Writes each ``videos`` part to ``<job_dir>/<video id>.upload``."""

    def __init__(self, job_dir: Path, max_files: int):
        super().__init__()
        self.job_dir = job_dir
        self.max_files = max_files
        self.files: list[ReceivedFile] = []
        self._fh = None

    def on_start(self) -> None:
        if len(self.files) >= self.max_files:
            raise _TooManyFiles()
        vid = "v" + secrets.token_hex(6)
        f = ReceivedFile(vid, display_name(self.multipart_filename), self.job_dir / f"{vid}.upload")
        self.files.append(f)
        self._fh = open(f.path, "xb")

    def on_data_received(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        self.files[-1].size += len(chunk)

    def on_finish(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    @property
    def in_part(self) -> bool:
        """Whether a file part started and has not ended (a truncated body)."""
        return self._fh is not None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class _CloseDelimiter:
    """Finds the multipart close delimiter (``--<boundary>--``) in the body as it streams by.

    The parser does not say whether it reached the end: a body cut short anywhere (inside a
    part's headers, a field's value, between parts) just leaves the parts after the cut out.
    The close delimiter cannot occur inside a part (there it would end the part), so seeing it
    means every part arrived. What follows it (an epilogue, RFC 2046) is not for the parser:
    streaming-form-data 2.1 drops the last part's data when more than two bytes follow.
    """

    def __init__(self, boundary: bytes):
        self._marker = b"\r\n--" + boundary + b"--"
        # A body with no part at all starts with the close delimiter, without the CRLF.
        self._tail = b"\r\n"
        self.seen = False

    def feed(self, data: bytes) -> int:
        """How many leading bytes of ``data`` belong to the multipart body (up to the end of
        the close delimiter); 0 once it has been seen."""
        if self.seen:
            return 0
        keep = len(self._marker) - 1
        # The marker may straddle two chunks: look across the joint first, then inside.
        joint = (self._tail + data[:keep]).find(self._marker)
        if joint >= 0:
            self.seen = True
            return joint + len(self._marker) - len(self._tail)
        inside = data.find(self._marker)
        if inside >= 0:
            self.seen = True
            return inside + len(self._marker)
        self._tail = (self._tail + data)[-keep:] if len(data) < keep else data[-keep:]
        return len(data)


def _small_field(chunk: bytes) -> None:
    if len(chunk) > MAX_FIELD:
        raise APIError(400, "field_too_large", "A form field is too large.")


async def receive_upload(request, job_dir: Path, *, max_upload: int, max_files: int,
                         idle_timeout: float = IDLE_TIMEOUT,
                         on_bytes: Callable[[int], None] | None = None) -> ParsedUpload:
    """Parse a multipart upload into ``job_dir``. Raises ``APIError`` for bad requests.

    ``on_bytes`` is called with the size of every body chunk received (for metrics).

    Error handling: a client sending less than ``MIN_PROGRESS`` bytes in ``idle_timeout``
    seconds gets 408; a full disk (``ENOSPC``/``EDQUOT``) gets 507 ``storage_full``; malformed
    multipart gets 400, and so does a body without its close delimiter (``incomplete_upload``).
    """
    ctype = request.headers.get("Content-Type", "")
    if not ctype.lower().startswith("multipart/form-data") or "boundary=" not in ctype:
        raise APIError(400, "expected_multipart",
                       "Send the videos as multipart/form-data in the field 'videos'.")
    length = request.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_upload:
        raise APIError(413, "upload_too_large", _too_large(max_upload))

    try:
        parser = StreamingFormDataParser(headers={"Content-Type": ctype})
        end = _CloseDelimiter(parse_content_boundary({"Content-Type": ctype}))
    except ParseFailedException:
        raise APIError(400, "expected_multipart",
                       "The multipart/form-data Content-Type needs a boundary.") from None
    try:
        await trio.to_thread.run_sync(lambda: job_dir.mkdir(parents=True, exist_ok=False))
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise _disk_full() from None
        raise
    videos = _VideoTarget(job_dir, max_files)
    values = {name: ValueTarget(validator=_small_field) for name in ("variations", "seed", "effects")}
    parser.register("videos", videos)
    for name, target in values.items():
        parser.register(name, target)

    result = ParsedUpload()
    pending = bytearray()

    def feed(data: bytes) -> None:
        try:
            parser.data_received(data)
        except _TooManyFiles:
            raise APIError(413, "too_many_files",
                           f"Too many files: at most {max_files} per upload.") from None
        except APIError:
            raise
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise _disk_full() from None
            raise
        except Exception as exc:  # the parser's own errors: malformed multipart
            raise APIError(400, "bad_multipart", f"The upload is not valid multipart data ({exc}).") from None

    try:
        body = request.body.__aiter__()
        window_end, window_bytes = trio.current_time() + idle_timeout, 0
        while True:
            with trio.move_on_at(window_end) as idle:
                try:
                    chunk = await body.__anext__()
                except StopAsyncIteration:
                    break
            if idle.cancelled_caught:
                raise APIError(408, "upload_timeout", "The upload stalled and was dropped.")
            window_bytes += len(chunk)
            if window_bytes >= MIN_PROGRESS:
                window_end, window_bytes = trio.current_time() + idle_timeout, 0
            result.total += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
            if result.total > max_upload:
                raise APIError(413, "upload_too_large", _too_large(max_upload))
            used = end.feed(chunk)
            pending += chunk if used == len(chunk) else chunk[:used]
            if len(pending) >= BATCH:
                data, pending = bytes(pending), bytearray()
                await trio.to_thread.run_sync(feed, data)
                window_end, window_bytes = trio.current_time() + idle_timeout, 0
        if pending:
            await trio.to_thread.run_sync(feed, bytes(pending))
        if not end.seen:
            raise APIError(400, "incomplete_upload",
                           "The upload ended before it was complete (its closing multipart "
                           "boundary is missing). Send it again.")
    finally:
        videos.close()
    result.files = videos.files
    for name, target in values.items():
        if target.value:
            # As sent: each field's own check decides what else it accepts.
            result.fields[name] = target.value.decode("utf-8", "replace")
    return result


def _disk_full() -> APIError:
    return APIError(507, "storage_full",
                    "The server's disk is full. Wait for running jobs to finish, or delete some jobs.")


def _too_large(limit: int) -> str:
    return f"The upload is larger than the limit of {_human(limit)}."


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"
