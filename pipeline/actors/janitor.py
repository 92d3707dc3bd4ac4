"""Janitor actor: expiry, storage-cap eviction, orphan clean-up, and job deletion.

``Janitor.run`` sweeps once at start and then every ``settings.janitor_interval``. One sweep
(``Janitor.sweep``), in order:

1. jobs whose ``expiresAt`` passed: marked ``expired``, their outputs and uploads deleted; the
   row stays listed for ``settings.expired_keep`` and is then removed;
2. orphans: folders and files under ``uploads/`` and ``outputs/`` that no row knows (older than
   ``orphan_grace``, so an upload still arriving is never touched), rows whose output files are
   gone (the output row is dropped; a job with nothing left on disk is marked ``expired``), and
   upload paths that point at nothing (cleared, so the video is no longer offered for retry);
3. eviction: while stored bytes, plus the bytes reserved for outputs still to render, exceed
   ``evict_at * storage_cap``, the finished job that completed first is marked ``expired`` and
   its files deleted. Queued and processing jobs are never evicted.

Storage counts what is on disk under ``uploads/`` and ``outputs/`` and, for every video still
to render, what its outputs are expected to take and have not written yet (``reserved``):
admitting an upload reserves room for its variations, not only for its own bytes (otherwise
6.73 MB ended up stored under a 6 MB cap), and the reservation is released as they land.

Time comes from ``service.clock`` (injectable), so expiry is tested without waiting; file ages for
the orphan grace come from the file system's own clock (``time.time``), like the mtimes they are
compared with.

Resource handling: sweeps, ``make_room`` and ``delete_job`` hold one lock, so two passes never
delete concurrently. A job's state changes before its files go (``Store.expire_job`` refuses a job
that a retry has re-queued meanwhile). Downloads in progress keep their open files readable.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from pipeline.context import JanitorContext
from pipeline.media.naming import video_folder_files
from pipeline.state.rows import Job
from pipeline.state.states import JobStatus, VideoStatus

# Terminal jobs the janitor may evict to make room, oldest completion first.
EVICTABLE = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
# Bytes a video's outputs are expected to take per byte of its source and variation, reserved
# until they land. Outputs (x264 ultrafast CRF 23) measured 0.92-1.90x their source on Debian's
# opencv-doc sample videos (MPEG-4, Cinepak and MS-MPEG-4 AVIs, 0.9-8.1 MB) and 1.6-2.4x on
# this suite's generated test patterns; a high-bitrate camera file comes out smaller. 2 keeps
# the cap for all but the noisiest sources.
OUTPUT_SIZE_RATIO = 2.0
# Files younger than this are never treated as orphans (an upload may still be arriving, or a
# job's rows may not be written yet).
ORPHAN_GRACE = 15 * 60.0

log = logging.getLogger("video_refresher.janitor")


def expected_output_bytes(source_bytes: int, variations: int = 1) -> int:
    """What the outputs of a source of ``source_bytes`` are expected to take, ``variations``
    of them (see ``OUTPUT_SIZE_RATIO``)."""
    return int(source_bytes * variations * OUTPUT_SIZE_RATIO)


@dataclass(frozen=True)
class DiskUsage:
    total: int
    by_job: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepReport:
    expired: tuple[str, ...] = ()
    purged: tuple[str, ...] = ()
    evicted: tuple[str, ...] = ()
    orphans_removed: tuple[str, ...] = ()
    outputs_forgotten: int = 0
    usage: int = 0


@dataclass(frozen=True)
class JanitorStatistics:
    sweeps: int
    expired: int
    evicted: int
    purged: int
    orphans_removed: int
    last_usage: int


class Janitor:
    def __init__(self, service: JanitorContext, *, orphan_grace: float = ORPHAN_GRACE):
        self.service = service
        self.settings = service.settings
        self.orphan_grace = orphan_grace
        self._lock = trio.Lock()
        self._counts = {"sweeps": 0, "expired": 0, "evicted": 0, "purged": 0, "orphans": 0}
        self._last_usage = 0

    def statistics(self) -> JanitorStatistics:
        c = self._counts
        return JanitorStatistics(c["sweeps"], c["expired"], c["evicted"], c["purged"],
                                 c["orphans"], self._last_usage)

    # -- the actor --------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Sweep now and then every ``janitor_interval`` until cancelled.

        Error handling: a failed sweep is logged and retried at the next interval; it never
        stops the service.
        """
        # Before ``started()``: the web server accepts uploads only after this.
        await self.remove_interrupted_uploads()
        task_status.started()
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("janitor sweep failed")
            await trio.sleep(self.settings.janitor_interval)

    async def sweep(self) -> SweepReport:
        """One full pass (expiry, orphans, eviction); returns what it did."""
        async with self._lock:
            now = self.service.clock()
            expired, purged = await self._expire(now)
            orphans, forgotten, lost = await self._clean_orphans(now)
            orphans += await self._expire_resumables(now)
            limit = self.settings.evict_at * self.settings.storage_cap
            reserved = await self.reserved()
            evicted, usage = await self._evict_until(lambda u: u.total + reserved <= limit)
        c = self._counts
        c["sweeps"] += 1
        c["expired"] += len(expired) + len(lost)
        c["purged"] += len(purged)
        c["evicted"] += len(evicted)
        c["orphans"] += len(orphans)
        self._last_usage = usage.total
        report = SweepReport(tuple(expired + lost), tuple(purged), tuple(evicted), tuple(orphans),
                             forgotten, usage.total)
        if expired or lost or purged or evicted or orphans or forgotten:
            log.info("janitor sweep", extra={
                "expired": len(expired) + len(lost), "purged": len(purged),
                "evicted": len(evicted), "orphans": len(orphans), "usage": usage.total,
            })
        return report

    async def remove_interrupted_uploads(self) -> list[str]:
        """At start-up, delete ``uploads/<job>`` folders that no job row knows.

        Before the service accepts requests no upload can be arriving, so such a folder is what
        a killed process left of an upload in flight (intake writes the rows of a job in one
        transaction, only after every file arrived). Waiting for the orphan grace would keep it
        counted against the storage cap for nothing.
        """
        known = await self.service.store.all_job_ids()
        removed: list[str] = []
        async with self._lock:
            for entry in await trio.to_thread.run_sync(_scandir, self.settings.uploads_dir):
                if entry.name in known:
                    continue
                await trio.to_thread.run_sync(_remove_path, Path(entry.path))
                removed.append(entry.name)
                log.info("removed interrupted upload", extra={"jobId": entry.name})
        self._counts["orphans"] += len(removed)
        return removed

    async def make_room(self, nbytes: int) -> bool:
        """Make ``nbytes`` fit under the storage cap, evicting finished jobs oldest first.

        Returns False, evicting nothing, when it cannot fit even with every finished job gone
        (queued and processing jobs are never evicted).
        """
        cap = self.settings.storage_cap
        async with self._lock:
            usage = await trio.to_thread.run_sync(self.disk_usage)
            need = await self.reserved() + nbytes
            if usage.total + need <= cap:
                return True
            rows = await self.service.store.job_rows()
            evictable = sum(usage.by_job.get(j.id, 0) for j in rows if j.status in EVICTABLE)
            if usage.total - evictable + need > cap:
                return False
            evicted, usage = await self._evict_until(lambda u: u.total + need <= cap)
            self._counts["evicted"] += len(evicted)
            if evicted:
                log.info("evicted to make room", extra={"jobs": evicted, "needed": nbytes})
            return usage.total + need <= cap

    async def reserved(self) -> int:
        """Bytes still to come: the outputs of the videos still to render (for each,
        ``OUTPUT_SIZE_RATIO`` × source size × variations, less what it has written so far) and
        the rest of every resumable upload in progress."""
        store = self.service.store
        pending = await store.pending_renders()
        uploads = sum(u.length - u.offset for u in await store.resumables())
        return uploads + await trio.to_thread.run_sync(self._reserved, pending)

    async def _expire_resumables(self, now: float) -> list[str]:
        """Delete resumable uploads past their expiry, and files there that no row knows."""
        store = self.service.store
        uploads = await store.resumables()
        gone = [u.id for u in uploads if u.expires_at <= now]
        known = {f"{u.id}.bin" for u in uploads if u.expires_at > now}
        removed = await trio.to_thread.run_sync(self._remove_resumable_files, known,
                                                {f"{g}.bin" for g in gone})
        await store.delete_resumables(gone)
        for upload_id in gone:
            log.info("resumable upload expired", extra={"uploadId": upload_id})
        return removed

    def _remove_resumable_files(self, known: set[str], gone: set[str]) -> list[str]:
        """Remove the files of expired uploads (``gone``), and those no row knows once they are
        older than the orphan grace (a row may still be on its way)."""
        removed = []
        fresh_after = time.time() - self.orphan_grace
        for entry in _scandir(self.settings.resumable_dir):
            path = Path(entry.path)
            if entry.name in known:
                continue
            if entry.name in gone or _newest_mtime(path) <= fresh_after:
                _remove_path(path)
                removed.append(str(path.relative_to(self.settings.data_dir)))
        return removed

    async def delete_job(self, job_id: str) -> bool:
        """Remove a job's files and rows, cancelling its renders first. False if unknown."""
        service = self.service
        job = await service.store.job_row(job_id)
        if job is None:
            return False
        if job.status in (JobStatus.QUEUED, JobStatus.PROCESSING):
            await service.cancel_job(job_id)
        async with self._lock:
            # Files first: on a full disk SQLite cannot write the deletion ("database or disk
            # is full") until they have made room, and deleting is what a full disk asks for.
            await trio.to_thread.run_sync(self._remove_job_files, job_id)
            await service.ledger.deleted(job_id)
        return True

    # -- steps ------------------------------------------------------------------------------

    async def _expire(self, now: float) -> tuple[list[str], list[str]]:
        store = self.service.store
        expired, purged = [], []
        for job in await store.job_rows():
            exp = job.expires_at
            if job.status == JobStatus.EXPIRED:
                if exp is None or exp + self.settings.expired_keep <= now:
                    await trio.to_thread.run_sync(self._remove_job_files, job.id)
                    await self.service.ledger.deleted(job.id)
                    purged.append(job.id)
            elif exp is not None and exp <= now and job.status in EVICTABLE:
                if await self._retire(job.id):
                    expired.append(job.id)
        return expired, purged

    async def _evict_until(self, enough) -> tuple[list[str], DiskUsage]:
        """Evict finished jobs, oldest completion first, until ``enough(usage)`` holds."""
        usage = await trio.to_thread.run_sync(self.disk_usage)
        evicted: list[str] = []
        if enough(usage):
            return evicted, usage
        for job in await self.service.store.job_rows():
            if job.status not in EVICTABLE or not usage.by_job.get(job.id):
                continue
            if await self._retire(job.id, "evicted"):
                evicted.append(job.id)
                usage = await trio.to_thread.run_sync(self.disk_usage)
                if enough(usage):
                    break
        return evicted, usage

    async def _retire(self, job_id: str, reason: str = "expired") -> bool:
        """Mark a finished job expired, then delete its files and tell subscribers."""
        if not await self.service.ledger.expired(job_id, reason):
            return False
        await trio.to_thread.run_sync(self._remove_job_files, job_id)
        return True

    async def _clean_orphans(self, now: float) -> tuple[list[str], int, list[str]]:
        store = self.service.store
        jobs = {}
        for row in await store.job_rows():
            job = await store.get_job(row.id)
            if job is not None:
                jobs[job.id] = job
        removed = await trio.to_thread.run_sync(self._remove_unknown_files, jobs)

        # Rows whose files are gone.
        forgotten = 0
        lost: list[str] = []
        for job in jobs.values():
            if job.status == JobStatus.EXPIRED:
                continue
            had_outputs = left = 0
            for v in job.videos:
                if v.upload_path and v.status not in (VideoStatus.QUEUED, VideoStatus.PROCESSING):
                    if not await trio.to_thread.run_sync(os.path.exists, v.upload_path):
                        await store.clear_upload_path(v.id)
                if v.status != VideoStatus.COMPLETED:
                    continue
                for o in v.outputs:
                    had_outputs += 1
                    if await trio.to_thread.run_sync(os.path.exists, o.path):
                        left += 1
                    else:
                        await store.delete_output(v.id, o.index)
                        forgotten += 1
            if had_outputs and not left and job.status in EVICTABLE:
                if await self._retire(job.id, "files_gone"):
                    lost.append(job.id)
        return removed, forgotten, lost

    # -- blocking helpers (run in a worker thread) --------------------------------------------

    def disk_usage(self) -> DiskUsage:
        """Bytes under ``uploads/`` and ``outputs/``, in total and per job folder."""
        by_job: dict[str, int] = {}
        total = 0
        for root in (self.settings.uploads_dir, self.settings.outputs_dir,
                     self.settings.resumable_dir):
            for entry in _scandir(root):
                n = _tree_size(Path(entry.path))
                total += n
                if entry.is_dir(follow_symlinks=False):
                    by_job[entry.name] = by_job.get(entry.name, 0) + n
        return DiskUsage(total, by_job)

    def _reserved(self, pending: list[tuple[str, str, int]]) -> int:
        total = 0
        for job_id, video_id, source_bytes in pending:
            written = _tree_size(self.settings.outputs_dir / job_id / video_id) \
                if _is_plain_name(job_id) and _is_plain_name(video_id) else 0
            total += max(0, expected_output_bytes(source_bytes) - written)
        return total

    def _remove_job_files(self, job_id: str) -> None:
        for root in (self.settings.outputs_dir, self.settings.uploads_dir):
            if _is_plain_name(job_id):
                _remove_path(root / job_id)

    def _remove_unknown_files(self, jobs: dict[str, Job]) -> list[str]:
        """Delete what no row knows, skipping anything touched within the orphan grace."""
        removed: list[str] = []
        fresh_after = time.time() - self.orphan_grace

        def drop(path: Path) -> None:
            if _newest_mtime(path) <= fresh_after:
                _remove_path(path)
                removed.append(str(path.relative_to(self.settings.data_dir)))

        def keep_only(folder: Path, names: set[str]) -> None:
            for fentry in _scandir(folder):
                if fentry.name not in names:
                    drop(Path(fentry.path))

        def job_folders(root: Path):
            """``(folder, job)`` for each folder of ``root`` that names a job; the rest go."""
            for entry in _scandir(root):
                job = jobs.get(entry.name)
                if job is None or not entry.is_dir(follow_symlinks=False):
                    drop(Path(entry.path))
                else:
                    yield Path(entry.path), job

        for path, job in job_folders(self.settings.outputs_dir):
            videos = {v.id: v for v in job.videos}
            for ventry in _scandir(path):
                vpath = Path(ventry.path)
                video = videos.get(ventry.name)
                if video is None or not ventry.is_dir(follow_symlinks=False) \
                        or job.status == JobStatus.EXPIRED:
                    drop(vpath)
                    continue
                if video.status in (VideoStatus.QUEUED, VideoStatus.PROCESSING):
                    continue  # the runner owns this folder (and its *.part files)
                keep_only(vpath, video_folder_files([Path(o.path) for o in video.outputs or ()]))

        for path, job in job_folders(self.settings.uploads_dir):
            if job.status == JobStatus.EXPIRED:
                drop(path)
                continue
            keep_only(path, {Path(v.upload_path).name for v in job.videos if v.upload_path})
        return removed


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _tree_size(path: Path) -> int:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    return sum(_tree_size(Path(e.path)) for e in _scandir(path))


def _newest_mtime(path: Path) -> float:
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
    for e in _scandir(path) if path.is_dir() and not path.is_symlink() else ():
        newest = max(newest, _newest_mtime(Path(e.path)))
    return newest


def _remove_path(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _is_plain_name(name: str) -> bool:
    """A single path component (ids come from the store, but never trust a path join)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name
