"""Zipper: one STORE ZIP of a job's finished outputs, with ``manifest.json`` at the root.

Layout: ``manifest.json``, then one folder per source video named after the source (safe and
unique, see ``naming.unique_stems``) holding ``<stem>_v01.mp4 …``. Members are stored, never
recompressed (H.264 does not shrink), so the archive's exact length is known before the first
byte is sent, ZIP64 records included when needed.

The bytes are a pure function of the members (names, sizes, modification times, contents) and
the manifest, and the layout (``pipeline.delivery.ziplayout``, which owns the ZIP records and ZIP64)
gives every record's offset without reading a member: any byte range is produced by seeking
inside the member files (``Archive.batches``), for resumed downloads (HTTP ``Range``), and
``Archive.etag`` names exactly these bytes. Local headers carry no CRC (a data descriptor after
each member does), so the only reads beyond the range asked for are what CRC-32s still need: a
member's data descriptor and the central directory need its CRC, computed once per file
(``_crc_cache``) while streaming it, or by reading what of it the range skipped.
(``zipstream-ng``, used before, cannot seek.)

This module is the job's face of the archive: the pure part (``archive_members``,
``build_manifest``, ``archive_filename``) only reads the job dict and sizes; ``open_archive``
does the I/O and ``Archive`` produces the bytes of any range.

Resource handling: ``open_archive`` opens every member file up front and holds the descriptors
until ``Archive.close()``, so a janitor deleting the job's files mid-download cannot break a
stream that has started (the data stays readable until the descriptors close). Files are read in
``READ_CHUNK`` pieces and handed out in batches of about ``BATCH`` bytes, so memory stays flat
whatever the archive's size.

Error handling: members whose file is missing when the archive is opened are left out and named
under ``missing`` in the manifest; ``open_archive`` raises ``NothingToZip`` when no member is
left. A file that shrinks while being streamed raises ``OSError`` (the stream cannot stay valid).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import BinaryIO

import trio

from pipeline.delivery.ziplayout import (
    LAYOUT_VERSION,
    Layout,
    central_directory,
    data_descriptor,
    layout,
    local_header,
)
from pipeline.media.describe import describe
from pipeline.media.effects import VariationParams
from pipeline.media.formats import Placement
from pipeline.media.naming import default_job_name, safe_name, unique_stems, variation_file
from pipeline.state.rows import Job, Output
from pipeline.state.states import VideoStatus

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
# Bytes read from a member file at a time.
READ_CHUNK = 1 << 20
# Bytes handed to the event loop per worker-thread hop: fewer hops, still bounded memory.
BATCH = 1 << 20


class NothingToZip(Exception):
    """No finished output of the job is on disk."""


@dataclass(frozen=True)
class Member:
    """One variation file in the archive."""

    arcname: str  # "<stem>/<stem>_v01.mp4"
    path: Path
    source: str  # the source video's display name
    video_id: str
    output: Output = field(compare=False, repr=False)


# -- pure core ----------------------------------------------------------------------------------


def archive_members(job: Job) -> list[Member]:
    """The archive's variation members, in video then variation order. Pure.

    Only completed videos contribute. Folder names are computed over *all* the job's videos (in
    upload order), so a video's folder keeps its name whichever videos have finished.
    """
    videos = sorted(job.videos, key=lambda v: v.index)
    stems = unique_stems([v.name for v in videos])
    members = []
    for video, stem in zip(videos, stems, strict=True):
        if video.status != VideoStatus.COMPLETED:
            continue
        for out in sorted(video.outputs or (), key=lambda o: o.index):
            members.append(Member(
                arcname=f"{stem}/{variation_file(stem, out.variation_index, out.format)}",
                path=Path(out.path),
                source=video.name,
                video_id=video.id,
                output=out,
            ))
    return members


def build_manifest(job: Job, members: list[Member], sizes: dict[str, int],
                   missing: list[str] = ()) -> dict:
    """The ``manifest.json`` document. Pure; ``sizes`` maps arcname to the bytes stored."""
    placement = Placement.from_dict(job.options.get("placement"))
    # A silent source's variations did nothing to sound: no pitch or gain in their words.
    sound = {v.id: v.has_sound for v in job.videos}
    doc = {
        "manifestVersion": MANIFEST_VERSION,
        "jobId": job.id,
        "name": job.name,
        "seed": job.seed,
        "variationsPerVideo": job.variations,
        "excludedEffects": job.options.get("exclude", []),
        "placement": placement.to_dict(),
        "createdAt": _iso(job.created_at),
        "completedAt": _iso(job.completed_at),
        "variations": [
            {
                "source": m.source,
                "file": m.arcname,
                "index": m.output.index + 1,
                # Which variation (its number in the name) in which placement format.
                "variation": m.output.variation_index + 1,
                "format": m.output.format,
                "seed": m.output.seed,
                "params": m.output.params,
                "effects": describe(VariationParams.from_dict(m.output.applied_params),
                                    sound.get(m.video_id, True)),
                "graph": m.output.graph,
                # The FFmpeg options after this file's maps, paths left out: with `graph`,
                # enough to render it again by hand (README, "Manifest").
                "encoderArgs": list(m.output.encoder_args) if m.output.encoder_args else None,
                "duration": m.output.duration,
                "size": sizes[m.arcname],
                # PDQ and Chromaprint figures, re-rolls taken (docs/distinctness.md), the
                # job API's shape; null where they were not measured.
                "distinctness": m.output.distinctness,
                # Measured integrated loudness and true peak; null where levels were left alone.
                "loudness": m.output.loudness,
            }
            for m in members
        ],
    }
    unfinished = [v.name for v in sorted(job.videos, key=lambda v: v.index)
                  if v.status != VideoStatus.COMPLETED]
    if unfinished:
        doc["unfinishedSources"] = unfinished
    if missing:
        doc["missing"] = list(missing)
    return doc


def manifest_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def archive_filename(job: Job) -> str:
    """The download's file name, from the job's name: ``<name>.zip`` for a name it was given;
    ``<first source's stem>-variations.zip`` (``… + 2-variations.zip`` with more sources) for
    one named after its files."""
    names = [v.name for v in job.videos]
    if job.name and job.name != default_job_name(names):
        return f"{safe_name(job.name)}.zip"
    if not names:
        return f"video-refresher-{job.id}.zip"
    more = f" + {len(names) - 1}" if len(names) > 1 else ""
    return f"{unique_stems(names[:1])[0]}{more}-variations.zip"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- I/O ------------------------------------------------------------------------------------------

# CRC-32 of member files already read, by file identity: a resumed download then needs no
# reads beyond its range. Outputs never change in place (a re-render writes a new file).
_CRC_CACHE_SIZE = 4096
_crc_cache: dict[tuple[int, int, int, int], int] = {}
_crc_lock = threading.Lock()


def _file_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _cached_crc(key) -> int | None:
    with _crc_lock:
        return _crc_cache.get(key)


def _remember_crc(key, crc: int) -> None:
    with _crc_lock:
        _crc_cache[key] = crc
        while len(_crc_cache) > _CRC_CACHE_SIZE:
            del _crc_cache[next(iter(_crc_cache))]


class Archive:
    """An opened archive: exact ``length``, a strong ``etag`` and ``last_modified`` (an HTTP
    date) for these bytes, and the bytes of any range from ``batches(start, stop)``.

    Resource handling: holds one open file per member until ``close()`` (also a context manager).
    ``batches()`` may be called more than once, each iterated from one thread at a time.
    """

    def __init__(self, lay: Layout, sources: list[bytes | BinaryIO], keys: list, manifest: dict,
                 etag: str, last_modified: float):
        self.layout = lay
        self._sources = sources
        self._keys = keys
        self.manifest = manifest
        self.length = lay.length
        self.etag = etag
        self.last_modified = formatdate(last_modified, usegmt=True)
        # Per member: CRC-32 of its first ``upto`` bytes; complete when upto == size.
        self._crc = [(zlib.crc32(s), len(s)) if isinstance(s, bytes)
                     else (c, e.size) if (c := _cached_crc(k)) is not None else (0, 0)
                     for s, k, e in zip(sources, keys, lay.entries, strict=True)]

    def batches(self, start: int = 0, stop: int | None = None, size: int = BATCH) -> Iterator[bytes]:
        """The bytes ``[start, stop)`` of the archive in pieces of about ``size`` bytes."""
        stop = self.length if stop is None else min(stop, self.length)
        buf = bytearray()
        for piece in self._pieces(max(0, start), stop):
            if not buf and len(piece) >= size:
                yield piece  # a whole file chunk: no copy
                continue
            buf += piece
            if len(buf) >= size:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)

    def _pieces(self, start: int, stop: int) -> Iterator[bytes]:
        lay = self.layout
        for i, e in enumerate(lay.entries):
            if e.end <= start:
                continue
            if e.offset >= stop:
                return
            yield from _slice(local_header(e), e.offset, start, stop)
            lo, hi = max(start, e.data_offset), min(stop, e.descriptor_offset)
            if lo < hi:
                yield from self._data(i, lo - e.data_offset, hi - e.data_offset)
            if stop > e.descriptor_offset:
                yield from _slice(data_descriptor(e, self._full_crc(i)), e.descriptor_offset,
                                  start, stop)
        if stop > lay.central_offset:
            crcs = [self._full_crc(i) for i in range(len(lay.entries))]
            yield from _slice(central_directory(lay, crcs), lay.central_offset, start, stop)

    def _data(self, i: int, lo: int, hi: int) -> Iterator[bytes]:
        """Member ``i``'s bytes ``[lo, hi)``, extending its CRC while they pass by."""
        source, e = self._sources[i], self.layout.entries[i]
        if isinstance(source, bytes):
            yield source[lo:hi]
            return
        crc, upto = self._crc[i]
        if upto < lo:
            crc, upto = self._extend_crc(i, lo)
        for chunk in _pread(source, lo, hi):
            if upto < e.size and upto == lo:
                crc, upto = zlib.crc32(chunk, crc), upto + len(chunk)
                self._set_crc(i, crc, upto)
            lo += len(chunk)
            yield chunk

    def _full_crc(self, i: int) -> int:
        crc, upto = self._crc[i]
        if upto < self.layout.entries[i].size:
            crc, upto = self._extend_crc(i, self.layout.entries[i].size)
        return crc

    def _extend_crc(self, i: int, to: int) -> tuple[int, int]:
        crc, upto = self._crc[i]
        for chunk in _pread(self._sources[i], upto, to):
            crc = zlib.crc32(chunk, crc)
        self._set_crc(i, crc, to)
        return crc, to

    def _set_crc(self, i: int, crc: int, upto: int) -> None:
        self._crc[i] = (crc, upto)
        if upto == self.layout.entries[i].size:
            _remember_crc(self._keys[i], crc)

    def close(self) -> None:
        for s in self._sources:
            if not isinstance(s, bytes):
                s.close()
        self._sources = [s if isinstance(s, bytes) else b"" for s in self._sources]

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _slice(record: bytes, offset: int, start: int, stop: int) -> Iterator[bytes]:
    """The part of ``record`` (at ``offset`` in the archive) inside ``[start, stop)``."""
    lo, hi = max(start - offset, 0), min(stop - offset, len(record))
    if lo < hi:
        yield record[lo:hi]


def _pread(fh: BinaryIO, lo: int, hi: int) -> Iterator[bytes]:
    """Bytes ``[lo, hi)`` of ``fh``, in ``READ_CHUNK`` pieces."""
    offset = lo
    while offset < hi:
        chunk = os.pread(fh.fileno(), min(READ_CHUNK, hi - offset), offset)
        if not chunk:
            raise OSError(f"{fh.name} shrank while being zipped ({offset} of {hi} bytes)")
        offset += len(chunk)
        yield chunk


def open_archive(job: Job) -> Archive:
    """Open the job's finished outputs as a STORE ZIP of known length. Blocking (run in a
    thread). Reads no member data.

    Raises ``NothingToZip`` when no finished output file is on disk.
    """
    members = archive_members(job)
    files: list[BinaryIO] = []
    present: list[Member] = []
    stats: list[os.stat_result] = []
    missing: list[str] = []
    try:
        for m in members:
            try:
                fh = open(m.path, "rb")
            except FileNotFoundError:
                missing.append(m.arcname)
                continue
            files.append(fh)
            present.append(m)
            stats.append(os.fstat(fh.fileno()))
        if not present:
            raise NothingToZip("no finished output of this job is on disk")
        sizes = {m.arcname: st.st_size for m, st in zip(present, stats, strict=True)}
        manifest = build_manifest(job, present, sizes, missing)
        doc = manifest_bytes(manifest)
        newest = max(int(st.st_mtime) for st in stats)
        lay = layout([(MANIFEST, len(doc), newest)] + [
            (m.arcname, st.st_size, int(st.st_mtime)) for m, st in zip(present, stats, strict=True)])
        keys = [None] + [_file_key(st) for st in stats]
        tag = hashlib.sha256(repr((LAYOUT_VERSION, doc, keys[1:],
                                   [m.arcname for m in present])).encode()).hexdigest()[:32]
        return Archive(lay, [doc, *files], keys, manifest, f'"{tag}"', newest)
    except BaseException:
        for fh in files:
            fh.close()
        raise


async def stream_archive(archive: Archive, start: int = 0,
                         stop: int | None = None) -> AsyncIterator[bytes]:
    """Yield the archive's bytes ``[start, stop)``; each batch is produced in a worker thread.
    Closes the archive.

    Memory stays at about one batch whatever the archive's size.
    """
    batches = archive.batches(start, stop)
    try:
        while True:
            chunk = await trio.to_thread.run_sync(next, batches, None)
            if chunk is None:
                return
            yield chunk
    finally:
        batches.close()
        archive.close()


def write_zip(job: Job, path: Path) -> int:
    """Write the job's ZIP to ``path`` (atomically: ``*.part``, fsync, rename). Returns its size.

    Same bytes as the download. Blocking. Raises ``NothingToZip`` like ``open_archive``.
    """
    path = Path(path)
    part = path.with_name(path.name + ".part")
    with open_archive(job) as archive:
        try:
            with open(part, "wb") as out:
                for chunk in archive.batches():
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return archive.length
