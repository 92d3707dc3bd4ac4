"""Zipper: one STORE ZIP of a job's finished outputs, with ``manifest.json`` at the root.

Layout: ``manifest.json``, then one folder per source video named after the source (safe and
unique, see ``naming.unique_stems``) holding ``<stem>_v01.mp4 …``. Members are stored, never
recompressed (H.264 does not shrink), so the archive's exact length is known before the first
byte is sent: ``zipstream-ng``'s sized mode computes it, ZIP64 records included when needed.

The pure part (``archive_members``, ``build_manifest``, ``archive_filename``) only reads the job
dict; ``open_archive`` does the I/O.

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

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import trio
from zipstream import ZipStream

from .naming import unique_stems, variation_file
from .states import VideoStatus

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
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
    output: dict = field(compare=False, repr=False)


# -- pure core ----------------------------------------------------------------------------------


def archive_members(job: dict) -> list[Member]:
    """The archive's variation members, in video then variation order. Pure.

    Only completed videos contribute. Folder names are computed over *all* the job's videos (in
    upload order), so a video's folder keeps its name whichever videos have finished.
    """
    videos = sorted(job.get("videos", []), key=lambda v: v["index"])
    stems = unique_stems([v["name"] for v in videos])
    members = []
    for video, stem in zip(videos, stems, strict=True):
        if video["status"] != VideoStatus.COMPLETED:
            continue
        for out in sorted(video.get("outputs", []), key=lambda o: o["index"]):
            members.append(Member(
                arcname=f"{stem}/{variation_file(stem, out['index'])}",
                path=Path(out["path"]),
                source=video["name"],
                video_id=video["id"],
                output=out,
            ))
    return members


def build_manifest(job: dict, members: list[Member], sizes: dict[str, int],
                   missing: list[str] = ()) -> dict:
    """The ``manifest.json`` document. Pure; ``sizes`` maps arcname to the bytes stored."""
    doc = {
        "manifestVersion": MANIFEST_VERSION,
        "jobId": job["id"],
        "seed": job.get("seed"),
        "variationsPerVideo": job.get("variationsPerVideo"),
        "excludedEffects": (job.get("options") or {}).get("exclude", []),
        "createdAt": _iso(job.get("createdAt")),
        "completedAt": _iso(job.get("completedAt")),
        "variations": [
            {
                "source": m.source,
                "file": m.arcname,
                "index": m.output["index"] + 1,
                "seed": m.output.get("seed"),
                "params": m.output.get("params") or {},
                "graph": m.output.get("graph") or "",
                "duration": m.output.get("duration"),
                "size": sizes[m.arcname],
                # pHash distances to the source and siblings, re-rolls taken (pipeline/distinct.py);
                # null for outputs rendered before distinctness was measured.
                "distance": m.output.get("distance"),
            }
            for m in members
        ],
    }
    unfinished = [v["name"] for v in sorted(job.get("videos", []), key=lambda v: v["index"])
                  if v["status"] != VideoStatus.COMPLETED]
    if unfinished:
        doc["unfinishedSources"] = unfinished
    if missing:
        doc["missing"] = list(missing)
    return doc


def manifest_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def archive_filename(job: dict) -> str:
    """The download's file name: ``<source stem>-variations.zip`` for one source, else by job id."""
    videos = job.get("videos", [])
    if len(videos) == 1:
        return f"{unique_stems([videos[0]['name']])[0]}-variations.zip"
    return f"video-refresher-{job['id']}.zip"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- I/O ------------------------------------------------------------------------------------------


class Archive:
    """An opened archive: exact ``length`` known, bytes produced by ``batches()``.

    Resource handling: holds one open file per member until ``close()`` (also a context manager).
    ``batches()`` may be iterated once, from any single thread at a time.
    """

    def __init__(self, stream: ZipStream, files: list[BinaryIO], manifest: dict):
        self._stream = stream
        self._files = files
        self.manifest = manifest
        self.length = len(stream)
        self._iter: Iterator[bytes] | None = None

    def batches(self, size: int = BATCH) -> Iterator[bytes]:
        """The archive's bytes in pieces of about ``size`` bytes."""
        buf = bytearray()
        for chunk in self._stream:
            if not buf and len(chunk) >= size:
                yield chunk  # a whole file chunk: no copy
                continue
            buf += chunk
            if len(buf) >= size:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        self._files = []

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_exactly(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``fh`` from its start, in ``READ_CHUNK`` pieces."""
    offset = 0
    while offset < size:
        chunk = os.pread(fh.fileno(), min(READ_CHUNK, size - offset), offset)
        if not chunk:
            raise OSError(f"{fh.name} shrank while being zipped ({offset} of {size} bytes)")
        offset += len(chunk)
        yield chunk


def open_archive(job: dict) -> Archive:
    """Open the job's finished outputs as a sized STORE ZIP stream. Blocking (run in a thread).

    Raises ``NothingToZip`` when no finished output file is on disk.
    """
    members = archive_members(job)
    files: list[BinaryIO] = []
    present: list[Member] = []
    sizes: dict[str, int] = {}
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
            sizes[m.arcname] = os.fstat(fh.fileno()).st_size
        if not present:
            raise NothingToZip("no finished output of this job is on disk")
        manifest = build_manifest(job, present, sizes, missing)
        stream = ZipStream(sized=True)
        stream.add(manifest_bytes(manifest), MANIFEST)
        for m, fh in zip(present, files, strict=True):
            stream.add(_read_exactly(fh, sizes[m.arcname]), m.arcname, size=sizes[m.arcname])
        return Archive(stream, files, manifest)
    except BaseException:
        for fh in files:
            fh.close()
        raise


async def stream_archive(archive: Archive) -> AsyncIterator[bytes]:
    """Yield the archive's bytes; each batch is produced in a worker thread. Closes the archive.

    Memory stays at about one batch whatever the archive's size.
    """
    batches = archive.batches()
    try:
        while True:
            chunk = await trio.to_thread.run_sync(next, batches, None)
            if chunk is None:
                return
            yield chunk
    finally:
        batches.close()
        archive.close()


def write_zip(job: dict, path: Path) -> int:
    """Write the job's ZIP to ``path`` (atomically: ``*.part``, fsync, rename). Returns its size.

    Same bytes layout as the download. Blocking. Raises ``NothingToZip`` like ``open_archive``.
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
