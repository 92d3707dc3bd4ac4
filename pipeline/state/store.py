"""SQLite job store (WAL, synchronous=NORMAL, foreign keys on, versioned schema).

``Store`` is synchronous and owns one connection; ``AsyncStore`` runs each call in a worker
thread, one at a time, so the event loop never blocks on the disk.

Resource handling: a single connection serves all calls; ``AsyncStore`` serialises them with a
trio lock, so there is one writer at a time. Calls are not abandoned on cancellation: a write
that started always finishes, so rows never half-change.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from pipeline.state.rows import (
    ApiKey,
    Delivery,
    FfmpegRun,
    Job,
    Output,
    Resumable,
    Throughput,
    Video,
)
from pipeline.state.schema import connect, migrate
from pipeline.state.states import (
    VIDEO_PENDING,
    VIDEO_TERMINAL,
    IllegalTransition,
    JobStatus,
    VideoStatus,
    job_status_from_videos,
)

# The job statuses a webhook tells of, and the event names it sends.
WEBHOOK_EVENTS = {JobStatus.COMPLETED: "job.completed", JobStatus.FAILED: "job.failed",
                  JobStatus.CANCELLED: "job.cancelled"}
# The most of an FFmpeg run's stderr kept for the per-video log (its end, where errors are).
MAX_RUN_LOG = 64 * 1024
# The files one video of job ``j`` becomes: its variations in each of its placement formats
# (the storage cap's reservation and the ETA count files, not variations).
_OUTPUTS_PER_VIDEO = ("(j.variations * COALESCE(MAX(1, json_array_length(j.options_json,"
                      " '$.placement.formats')), 1))")


class Store:
    """Synchronous store; every public method is one short transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._conn = connect(self.path)
        self._tx_lock = threading.Lock()
        migrate(self._conn)

    def close(self) -> None:
        self._conn.close()

    # -- plumbing -------------------------------------------------------------------------

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._tx_lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, I/O error) may already have rolled back; if not,
                # an open transaction would make every later BEGIN fail.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return result

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._tx_lock:
            return self._conn.execute(sql, args).fetchall()

    def check(self) -> None:
        """Raise if the database cannot be read and written."""
        with self._tx_lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("SELECT count(*) FROM jobs").fetchone()
            self._conn.execute("ROLLBACK")

    def schema_version(self) -> int:
        return self._read("PRAGMA user_version")[0][0]

    # -- jobs -----------------------------------------------------------------------------

    def create_job(
        self,
        *,
        job_id: str,
        seed: str,
        variations: int,
        options: dict,
        videos: list[dict],
        now: float,
        name: str | None = None,
    ) -> None:
        """Insert a job and its videos (all ``queued``) in one transaction.

        Each video dict has ``id, name, upload_path, size, duration, info``.
        """

        def tx(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO jobs(id,status,created_at,variations,seed,options_json,name)"
                " VALUES (?,?,?,?,?,?,?)",
                (job_id, JobStatus.QUEUED, now, variations, seed, json.dumps(options), name),
            )
            for i, v in enumerate(videos):
                c.execute(
                    "INSERT INTO videos(id,job_id,idx,name,upload_path,size,duration,info_json,"
                    "status,queued_at,updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        v["id"], job_id, i, v["name"], v["upload_path"], v["size"],
                        v["duration"], json.dumps(v.get("info", {})), VideoStatus.QUEUED,
                        now, now,
                    ),
                )

        self._tx(tx)

    def job_row(self, job_id: str) -> Job | None:
        """The job without its videos, or None."""
        rows = self._read("SELECT * FROM jobs WHERE id=?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    def get_job(self, job_id: str) -> Job | None:
        """The job with its videos (ordered) and each video's outputs, or None."""
        with self._tx_lock:
            c = self._conn
            row = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return None
            vids = c.execute(
                "SELECT * FROM videos WHERE job_id=? ORDER BY idx", (job_id,)
            ).fetchall()
            outs = c.execute(
                "SELECT o.* FROM outputs o JOIN videos v ON v.id=o.video_id"
                " WHERE v.job_id=? ORDER BY o.idx",
                (job_id,),
            ).fetchall()
        by_video: dict[str, list[Output]] = {}
        for o in outs:
            by_video.setdefault(o["video_id"], []).append(Output.from_row(o))
        return Job.from_row(row, tuple(
            Video.from_row(v, tuple(by_video.get(v["id"], ()))) for v in vids
        ))

    def list_jobs(self, limit: int = 200) -> list[Job]:
        """Jobs newest first, with per-video summaries (no outputs)."""
        with self._tx_lock:
            c = self._conn
            rows = c.execute(
                "SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
            ).fetchall()
            ids = [r["id"] for r in rows]
            vids: list[sqlite3.Row] = []
            if ids:
                marks = ",".join("?" * len(ids))
                vids = c.execute(
                    f"SELECT v.*, (SELECT count(*) FROM outputs o WHERE o.video_id=v.id)"
                    f" AS n_outputs FROM videos v WHERE job_id IN ({marks}) ORDER BY idx",
                    ids,
                ).fetchall()
        by_job: dict[str, list[Video]] = {}
        for v in vids:
            by_job.setdefault(v["job_id"], []).append(Video.from_row(v, output_count=v["n_outputs"]))
        return [Job.from_row(r, tuple(by_job.get(r["id"], ()))) for r in rows]

    def delete_job(self, job_id: str) -> bool:
        """Remove the job's rows (its videos, outputs and log with it) and its webhook
        deliveries already made; one still owed is kept and sent (its body says "deleted")."""
        def tx(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM webhook_deliveries WHERE job_id=? AND (delivered_at IS NOT NULL"
                      " OR gave_up_at IS NOT NULL)", (job_id,))
            return c.execute("DELETE FROM jobs WHERE id=?", (job_id,)).rowcount > 0

        return self._tx(tx)

    def all_job_ids(self) -> set[str]:
        return {r[0] for r in self._read("SELECT id FROM jobs")}

    def job_rows(self) -> list[Job]:
        """Every job row (no videos), oldest completion first, then oldest creation (janitor)."""
        rows = self._read(
            "SELECT * FROM jobs ORDER BY completed_at IS NULL, completed_at, created_at, rowid"
        )
        return [Job.from_row(r) for r in rows]

    def expire_job(self, job_id: str, now: float) -> bool:
        """Mark a finished job ``expired`` (its files are gone); ``expires_at`` becomes the time
        it expired, if that is earlier. Queued or processing jobs are left alone (returns False),
        so a retry that raced the janitor wins.
        """
        return self._tx(lambda c: c.execute(
            "UPDATE jobs SET status=?, expires_at=MIN(COALESCE(expires_at, ?), ?)"
            " WHERE id=? AND status IN (?,?,?)",
            (str(JobStatus.EXPIRED), now, now, job_id, str(JobStatus.COMPLETED),
             str(JobStatus.FAILED), str(JobStatus.CANCELLED)),
        ).rowcount > 0)

    def delete_output(self, video_id: str, index: int) -> None:
        self._tx(lambda c: c.execute(
            "DELETE FROM outputs WHERE video_id=? AND idx=?", (video_id, index)
        ))

    # -- videos ---------------------------------------------------------------------------

    def video(self, video_id: str) -> Video | None:
        rows = self._read("SELECT * FROM videos WHERE id=?", (video_id,))
        return Video.from_row(rows[0]) if rows else None

    def pending_renders(self) -> list[tuple[str, str, int]]:
        """``(job id, video id, source size × variations)`` of each video still to render
        (queued, processing, interrupted): what the storage cap reserves for its outputs
        (``Janitor.reserved``)."""
        marks = ",".join("?" * len(VIDEO_PENDING))
        rows = self._read(
            f"SELECT v.job_id, v.id, v.size * {_OUTPUTS_PER_VIDEO} FROM videos v JOIN jobs j"
            f" ON j.id = v.job_id WHERE v.status IN ({marks})", tuple(VIDEO_PENDING),
        )
        return [(r[0], r[1], int(r[2])) for r in rows]

    def pending_videos(self) -> list[Video]:
        """Videos that are queued, processing or interrupted, oldest first (for recovery)."""
        marks = ",".join("?" * len(VIDEO_PENDING))
        rows = self._read(
            f"SELECT * FROM videos WHERE status IN ({marks}) ORDER BY queued_at, idx",
            tuple(VIDEO_PENDING),
        )
        return [Video.from_row(r) for r in rows]

    def pending_work(self) -> list[tuple[Video, int]]:
        """Each video still to render with its job's variations per video (the ETA's input)."""
        marks = ",".join("?" * len(VIDEO_PENDING))
        rows = self._read(
            f"SELECT v.*, {_OUTPUTS_PER_VIDEO} AS job_variations FROM videos v JOIN jobs j"
            f" ON j.id = v.job_id WHERE v.status IN ({marks})", tuple(VIDEO_PENDING))
        return [(Video.from_row(r), r["job_variations"]) for r in rows]

    def set_video_state(
        self,
        video_id: str,
        status: VideoStatus,
        *,
        now: float,
        progress: float | None = None,
        error: str | None = None,
        stderr_tail: str | None = None,
        retryable: bool | None = None,
        clear_pid: bool = True,
        job_ttl: float | None = None,
        allowed_from: frozenset[VideoStatus] | None = None,
        outputs: list[Output] | None = None,
        notify: bool = False,
    ) -> tuple[str, str] | None:
        """Set a video's status and recompute its job's status, in one transaction; with
        ``outputs``, also record them (replacing an earlier attempt's).

        Returns ``(job_id, job_status)`` or None if the video is gone. Raises
        ``IllegalTransition`` (writing nothing) when the video's status is not in
        ``allowed_from``. When the job reaches a terminal state, ``completed_at`` is set and
        ``expires_at`` is ``now + job_ttl``; with ``notify``, a webhook delivery of that event is
        recorded in the same transaction, so it is owed even if the process dies right after.
        """

        def tx(c: sqlite3.Connection) -> tuple[str, str] | None:
            row = c.execute("SELECT job_id, status FROM videos WHERE id=?", (video_id,)).fetchone()
            if row is None:
                return None
            if allowed_from is not None and row["status"] not in allowed_from:
                raise IllegalTransition(f"video {video_id} is {row['status']}: it cannot become {status}")
            if outputs is not None:
                _replace_outputs(c, video_id, outputs)
            sets = ["status=?", "updated_at=?"]
            args: list[Any] = [str(status), now]
            if progress is not None:
                sets.append("progress=?")
                args.append(progress)
            if status in (VideoStatus.QUEUED, VideoStatus.PROCESSING, VideoStatus.COMPLETED):
                sets.append("error=NULL")
                sets.append("stderr_tail=NULL")
            if error is not None:
                sets.append("error=?")
                args.append(error)
            if stderr_tail is not None:
                sets.append("stderr_tail=?")
                args.append(stderr_tail)
            if retryable is not None:
                sets.append("retryable=?")
                args.append(int(retryable))
            if status == VideoStatus.PROCESSING:
                sets += ["attempts=attempts+1", "started_at=?", "finished_at=NULL"]
                args.append(now)
            if status == VideoStatus.QUEUED:
                sets += ["queued_at=?", "started_at=NULL", "finished_at=NULL"]
                args.append(now)
            if status in VIDEO_TERMINAL:
                sets.append("finished_at=?")
                args.append(now)
            if clear_pid:
                sets.append("pid=NULL")
            c.execute(f"UPDATE videos SET {','.join(sets)} WHERE id=?", (*args, video_id))
            job_id = row["job_id"]
            before = c.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
            after = _refresh_job(c, job_id, now, job_ttl)
            if notify and after != before and after in WEBHOOK_EVENTS:
                c.execute("INSERT INTO webhook_deliveries(job_id,event,created_at,next_at)"
                          " VALUES (?,?,?,?)", (job_id, WEBHOOK_EVENTS[after], now, now))
            return job_id, after

        return self._tx(tx)

    def set_video_pid(self, video_id: str, pid: int | None) -> None:
        self._tx(lambda c: c.execute("UPDATE videos SET pid=? WHERE id=?", (pid, video_id)))

    def set_video_progress(self, video_id: str, progress: float, now: float) -> None:
        self._tx(
            lambda c: c.execute(
                "UPDATE videos SET progress=?, updated_at=? WHERE id=? AND status=?",
                (progress, now, video_id, VideoStatus.PROCESSING),
            )
        )

    def clear_upload_path(self, video_id: str) -> None:
        self._tx(lambda c: c.execute("UPDATE videos SET upload_path=NULL WHERE id=?", (video_id,)))

    def recorded_pids(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self._read("SELECT id, pid FROM videos WHERE pid IS NOT NULL")]

    def throughput_samples(self, limit: int = 200) -> list[Throughput]:
        """The most recent completed renders with their timings (the ETA's measurements)."""
        rows = self._read(
            "SELECT v.info_json, v.duration, v.started_at, v.finished_at,"
            f" {_OUTPUTS_PER_VIDEO} AS variations"
            " FROM videos v JOIN jobs j ON j.id = v.job_id WHERE v.status=? AND"
            " v.started_at IS NOT NULL AND v.finished_at > v.started_at AND v.duration > 0"
            " ORDER BY v.finished_at DESC LIMIT ?", (str(VideoStatus.COMPLETED), limit))
        samples = []
        for r in rows:
            info = json.loads(r["info_json"] or "{}")
            if info.get("width") and info.get("height"):
                samples.append(Throughput(
                    width=int(info["width"]), height=int(info["height"]), duration=r["duration"],
                    variations=r["variations"], seconds=r["finished_at"] - r["started_at"]))
        return samples

    # -- the per-video log ----------------------------------------------------------------

    def ffmpeg_run_started(self, video_id: str, command: str, now: float) -> int:
        """Record an FFmpeg run of the video's current attempt; returns its id."""
        return self._tx(lambda c: c.execute(
            "INSERT INTO ffmpeg_runs(video_id,attempt,started_at,command)"
            " SELECT id, attempts, ?, ? FROM videos WHERE id=?", (now, command, video_id),
        ).lastrowid)

    def ffmpeg_run_finished(self, run_id: int, returncode: int | None, stderr: str,
                            now: float) -> None:
        self._tx(lambda c: c.execute(
            "UPDATE ffmpeg_runs SET finished_at=?, returncode=?, stderr=? WHERE id=?",
            (now, returncode, stderr[-MAX_RUN_LOG:], run_id)))

    def ffmpeg_runs(self, video_id: str) -> list[FfmpegRun]:
        return [FfmpegRun.from_row(r) for r in self._read(
            "SELECT * FROM ffmpeg_runs WHERE video_id=? ORDER BY id", (video_id,))]

    # -- flags (the queue's pause) --------------------------------------------------------

    def flag(self, name: str) -> str | None:
        rows = self._read("SELECT value FROM flags WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def set_flag(self, name: str, value: str | None) -> None:
        if value is None:
            self._tx(lambda c: c.execute("DELETE FROM flags WHERE name=?", (name,)))
        else:
            self._tx(lambda c: c.execute(
                "INSERT INTO flags(name,value) VALUES (?,?)"
                " ON CONFLICT(name) DO UPDATE SET value=excluded.value", (name, value)))

    # -- API keys -------------------------------------------------------------------------

    def create_api_key(self, key_id: str, name: str, key_hash: str, now: float) -> ApiKey:
        self._tx(lambda c: c.execute(
            "INSERT INTO api_keys(id,name,key_hash,created_at) VALUES (?,?,?,?)",
            (key_id, name, key_hash, now)))
        return ApiKey(id=key_id, name=name, created_at=now, last_used_at=None)

    def api_keys(self) -> list[ApiKey]:
        return [ApiKey.from_row(r) for r in self._read(
            "SELECT * FROM api_keys ORDER BY created_at, rowid")]

    def delete_api_key(self, key_id: str) -> bool:
        return self._tx(lambda c: c.execute(
            "DELETE FROM api_keys WHERE id=?", (key_id,)).rowcount > 0)

    def use_api_key(self, key_hash: str, now: float) -> ApiKey | None:
        """The key with this hash (its last use noted, at most once a minute), or None."""
        rows = self._read("SELECT * FROM api_keys WHERE key_hash=?", (key_hash,))
        if not rows:
            return None
        key = ApiKey.from_row(rows[0])
        if key.last_used_at is None or now - key.last_used_at >= 60:
            self._tx(lambda c: c.execute(
                "UPDATE api_keys SET last_used_at=? WHERE id=?", (now, key.id)))
        return key

    # -- logged-out tokens ----------------------------------------------------------------

    def revoke_token(self, digest: str, expires_at: float, now: float) -> None:
        """Keep a logged-out token's digest until it expires (the expired ones go)."""
        def tx(c):
            c.execute("DELETE FROM revoked_tokens WHERE expires_at <= ?", (now,))
            c.execute("INSERT OR REPLACE INTO revoked_tokens(digest,expires_at) VALUES (?,?)",
                      (digest, expires_at))
        self._tx(tx)

    def revoked_tokens(self, now: float) -> dict[str, float]:
        return {r["digest"]: r["expires_at"] for r in self._read(
            "SELECT * FROM revoked_tokens WHERE expires_at > ?", (now,))}

    # -- resumable uploads ----------------------------------------------------------------

    def create_resumable(self, upload: Resumable) -> None:
        u = upload
        self._tx(lambda c: c.execute(
            "INSERT INTO resumable_uploads(id,name,length,offset,created_at,expires_at)"
            " VALUES (?,?,?,?,?,?)", (u.id, u.name, u.length, u.offset, u.created_at, u.expires_at)))

    def resumable(self, upload_id: str) -> Resumable | None:
        rows = self._read("SELECT * FROM resumable_uploads WHERE id=?", (upload_id,))
        return Resumable.from_row(rows[0]) if rows else None

    def resumables(self) -> list[Resumable]:
        return [Resumable.from_row(r) for r in self._read(
            "SELECT * FROM resumable_uploads ORDER BY created_at")]

    def set_resumable_offset(self, upload_id: str, offset: int) -> None:
        self._tx(lambda c: c.execute(
            "UPDATE resumable_uploads SET offset=? WHERE id=?", (offset, upload_id)))

    def delete_resumables(self, upload_ids: list[str]) -> int:
        marks = ",".join("?" * len(upload_ids))
        return self._tx(lambda c: c.execute(
            f"DELETE FROM resumable_uploads WHERE id IN ({marks})", tuple(upload_ids)).rowcount) \
            if upload_ids else 0

    # -- webhook deliveries ---------------------------------------------------------------

    def due_deliveries(self, now: float) -> list[Delivery]:
        return [Delivery.from_row(r) for r in self._read(
            "SELECT * FROM webhook_deliveries WHERE delivered_at IS NULL AND gave_up_at IS NULL"
            " AND next_at <= ? ORDER BY next_at, id", (now,))]

    def next_delivery_at(self) -> float | None:
        rows = self._read("SELECT min(next_at) FROM webhook_deliveries"
                          " WHERE delivered_at IS NULL AND gave_up_at IS NULL")
        return rows[0][0]

    def record_delivery(self, delivery: Delivery) -> None:
        """Save a delivery's body and how its latest try went; one that is over (delivered or
        given up) for a job deleted meanwhile is forgotten, as ``delete_job`` forgets them."""
        d = delivery

        def tx(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE webhook_deliveries SET body=?, tries=?, next_at=?, delivered_at=?,"
                " gave_up_at=?, last_status=?, last_error=? WHERE id=?",
                (d.body, d.tries, d.next_at, d.delivered_at, d.gave_up_at, d.last_status,
                 d.last_error, d.id))
            if d.delivered_at is not None or d.gave_up_at is not None:
                c.execute("DELETE FROM webhook_deliveries WHERE id=? AND NOT EXISTS"
                          " (SELECT 1 FROM jobs WHERE jobs.id = webhook_deliveries.job_id)", (d.id,))

        self._tx(tx)

    def deliveries(self, job_id: str | None = None) -> list[Delivery]:
        if job_id is None:
            rows = self._read("SELECT * FROM webhook_deliveries ORDER BY id")
        else:
            rows = self._read("SELECT * FROM webhook_deliveries WHERE job_id=? ORDER BY id",
                              (job_id,))
        return [Delivery.from_row(r) for r in rows]


def _replace_outputs(c: sqlite3.Connection, video_id: str, outputs: list[Output]) -> None:
    c.execute("DELETE FROM outputs WHERE video_id=?", (video_id,))
    for o in outputs:
        c.execute(
            "INSERT INTO outputs(video_id,idx,name,path,size,duration,seed,params_json,"
            "graph,distance_json,encoder_json,format,variation,loudness_json)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                video_id, o.index, o.name, o.path, o.size, o.duration, o.seed,
                json.dumps(o.params), o.graph,
                json.dumps(o.distinctness) if o.distinctness is not None else None,
                json.dumps(list(o.encoder_args)) if o.encoder_args is not None else None,
                o.format, o.variation_index,
                json.dumps(o.loudness) if o.loudness is not None else None,
            ),
        )


def _refresh_job(c: sqlite3.Connection, job_id: str, now: float, job_ttl: float | None) -> str:
    statuses = [r[0] for r in c.execute("SELECT status FROM videos WHERE job_id=?", (job_id,))]
    job = c.execute("SELECT status, started_at, completed_at FROM jobs WHERE id=?", (job_id,)).fetchone()
    new = job_status_from_videos(statuses)
    if job["status"] == JobStatus.EXPIRED:
        return job["status"]
    sets, args = ["status=?"], [str(new)]
    if new == JobStatus.PROCESSING and job["started_at"] is None:
        sets.append("started_at=?")
        args.append(now)
    if new in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        if job["completed_at"] is None or job["status"] != new:
            sets += ["completed_at=?", "expires_at=?"]
            args += [now, now + (job_ttl if job_ttl is not None else 24 * 3600.0)]
    else:
        sets += ["completed_at=NULL", "expires_at=NULL"]
    c.execute(f"UPDATE jobs SET {','.join(sets)} WHERE id=?", (*args, job_id))
    return str(new)


class AsyncStore:
    """Runs ``Store`` methods in a worker thread, one call at a time.

    ``await astore.get_job(id)`` calls ``Store.get_job`` off the event loop.
    """

    def __init__(self, store: Store):
        self.sync = store
        self._lock = trio.Lock()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self.sync, name)
        if not callable(fn):
            return fn

        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self._lock:
                return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

        call.__name__ = name
        return call
