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
from streaming_form_data.targets import BaseTarget

from pipeline.media import formats
from pipeline.media.naming import display_name

from .errors import APIError
from .multipart import Framing, full_name, raw_filename

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
    """Writes each ``videos`` part to ``<job_dir>/<video id>.upload``.

    File names: the parser's, or the full one from ``framing``'s raw headers (see ``Framing``),
    which has scanned every part's headers before the parser reaches them.
    """

    def __init__(self, job_dir: Path, max_files: int, framing: Framing):
        super().__init__()
        self.job_dir = job_dir
        self.max_files = max_files
        self.files: list[ReceivedFile] = []
        self._fh = None
        self._framing = framing
        self._next_part = 0

    def on_start(self) -> None:
        if len(self.files) >= self.max_files:
            raise _TooManyFiles()
        vid = "v" + secrets.token_hex(6)
        name = full_name(self.multipart_filename, self._raw_filename())
        f = ReceivedFile(vid, display_name(name), self.job_dir / f"{vid}.upload")
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

    def _raw_filename(self) -> str | None:
        """The lenient file name of the next ``videos`` part in the raw headers."""
        headers = self._framing.headers
        while self._next_part < len(headers):
            self._next_part += 1
            raw = raw_filename(headers[self._next_part - 1], "videos")
            if raw is not None:
                return raw
        return None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class _Field(BaseTarget):
    """One of the form's small fields: sent at most once, at most ``MAX_FIELD`` bytes in all
    (a field sent again was glued to the first: ``variations=1`` and ``variations=2`` read as
    12; and each piece was checked alone, so repeats could fill the memory)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.value = bytearray()
        self._parts = 0

    def on_start(self) -> None:
        self._parts += 1
        if self._parts > 1:
            raise APIError(400, "duplicate_field",
                           f"The form field '{self.name}' is sent more than once; send it once.")

    def on_data_received(self, chunk: bytes) -> None:
        if len(self.value) + len(chunk) > MAX_FIELD:
            raise APIError(400, "field_too_large", f"The form field '{self.name}' is too large "
                           f"(at most {MAX_FIELD} bytes).")
        self.value += chunk


# The form's small fields, kept as sent (each field's own check decides what it accepts).
_FIELDS = ("variations", "seed", "effects", "name", *formats.FIELDS)


async def receive_upload(request, job_dir: Path, *, max_upload: int, max_files: int,
                         idle_timeout: float = IDLE_TIMEOUT,
                         on_bytes: Callable[[int], None] | None = None) -> ParsedUpload:
    """Parse a multipart upload into ``job_dir``. Raises ``APIError`` for bad requests.

    ``on_bytes`` is called with the size of every body chunk received (for metrics).

    Error handling: a client sending less than ``MIN_PROGRESS`` bytes in ``idle_timeout``
    seconds gets 408; a full disk (``ENOSPC``/``EDQUOT``) gets 507 ``storage_full``; malformed
    multipart gets 400, and so does a body without its close delimiter (``incomplete_upload``).
    """
    ctype = _multipart_type(request.headers, max_upload)
    parser, framing = _parser_for(ctype)
    await _make_job_dir(job_dir)
    videos = _VideoTarget(job_dir, max_files, framing)
    values = {name: _Field(name) for name in _FIELDS}
    parser.register("videos", videos)
    for name, target in values.items():
        parser.register(name, target)

    result = ParsedUpload()
    try:
        result.total = await _stream_body(request.body, framing, _feeder(parser, max_files),
                                          max_upload=max_upload, idle_timeout=idle_timeout,
                                          on_bytes=on_bytes)
    finally:
        videos.close()
    result.files = videos.files
    for name, target in values.items():
        if target.value:
            result.fields[name] = target.value.decode("utf-8", "replace")
    return result


def _multipart_type(headers, max_upload: int) -> str:
    """The request's multipart Content-Type, after refusing what the headers already rule out:
    another type (400) or a declared length over ``max_upload`` (413)."""
    ctype = headers.get("Content-Type", "")
    # Type and parameter names are case-insensitive (RFC 9110): MULTIPART/FORM-DATA; BOUNDARY=x.
    if not ctype.lower().startswith("multipart/form-data") or "boundary=" not in ctype.lower():
        raise APIError(400, "expected_multipart",
                       "Send the videos as multipart/form-data in the field 'videos'.")
    length = headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_upload:
        raise APIError(413, "upload_too_large", _too_large(max_upload))
    return ctype


def _parser_for(ctype: str) -> tuple[StreamingFormDataParser, Framing]:
    """The parser for a body of type ``ctype`` and the framing that runs ahead of it; 400 when
    the type has no usable boundary."""
    try:
        parser = StreamingFormDataParser(headers={"Content-Type": ctype})
        framing = Framing(parse_content_boundary({"Content-Type": ctype}))
    except ParseFailedException:
        raise APIError(400, "expected_multipart",
                       "The multipart/form-data Content-Type needs a boundary.") from None
    return parser, framing


async def _make_job_dir(job_dir: Path) -> None:
    """Create ``job_dir`` (it must not exist yet); a full disk is 507."""
    try:
        await trio.to_thread.run_sync(lambda: job_dir.mkdir(parents=True, exist_ok=False))
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise _disk_full() from None
        raise


def _feeder(parser: StreamingFormDataParser, max_files: int) -> Callable[[bytes], None]:
    """A function (run in a worker thread) that feeds ``parser``, its errors made ``APIError``:
    too many files 413, a full disk 507, the parser's own errors (malformed multipart) 400."""

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
            raise APIError(400, "bad_multipart", _bad_multipart(exc)) from None

    return feed


def _bad_multipart(exc: Exception) -> str:
    """What to tell a client whose body the multipart parser refused, in its terms."""
    if isinstance(exc, UnicodeDecodeError):
        return ("A part's headers (its file name?) are not UTF-8 text; send the file name as "
                "UTF-8.")
    return "The upload is not valid multipart/form-data."


class _IdleWindow:
    """Receives body chunks while the client keeps making progress: at least ``MIN_PROGRESS``
    bytes in every window of ``timeout`` seconds, else 408. ``restart`` opens a new window (after
    our own work, which does not count against the client)."""

    def __init__(self, timeout: float):
        self._timeout = timeout
        self.restart()

    def restart(self) -> None:
        self._end, self._bytes = trio.current_time() + self._timeout, 0

    async def receive(self, chunks) -> bytes | None:
        """The next chunk of the async iterator ``chunks``, None at its end."""
        with trio.move_on_at(self._end) as idle:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return None
        if idle.cancelled_caught:
            raise APIError(408, "upload_timeout", "The upload stalled and was dropped.")
        self._bytes += len(chunk)
        if self._bytes >= MIN_PROGRESS:
            self.restart()
        return chunk


async def _stream_body(body, framing: Framing, feed: Callable[[bytes], None], *,
                       max_upload: int, idle_timeout: float,
                       on_bytes: Callable[[int], None] | None) -> int:
    """Read ``body`` chunk by chunk, pass the multipart part of it (up to the close delimiter,
    as ``framing`` says) to ``feed`` in a worker thread in batches of ``BATCH`` bytes, and
    return how many bytes the body had.

    Error handling: 408 when the client stalls (``_IdleWindow``), 413 past ``max_upload``, 400
    ``incomplete_upload`` when the body ends before its close delimiter; ``feed``'s errors pass.
    """
    chunks = body.__aiter__()
    window = _IdleWindow(idle_timeout)
    total = 0
    pending = bytearray()
    while (chunk := await window.receive(chunks)) is not None:
        total += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
        if total > max_upload:
            raise APIError(413, "upload_too_large", _too_large(max_upload))
        used = framing.feed(chunk)
        pending += chunk if used == len(chunk) else chunk[:used]
        if len(pending) >= BATCH:
            data, pending = bytes(pending), bytearray()
            await trio.to_thread.run_sync(feed, data)
            window.restart()
    if pending:
        await trio.to_thread.run_sync(feed, bytes(pending))
    if not framing.seen:
        raise APIError(400, "incomplete_upload",
                       "The upload ended before it was complete (its closing multipart "
                       "boundary is missing). Send it again.")
    return total


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
