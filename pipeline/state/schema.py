"""The SQLite schema and its connection settings: WAL, ``synchronous=NORMAL``, foreign keys on,
forward migrations counted in ``PRAGMA user_version``.

Error handling: a database written by a newer version of the program raises ``StoreError``
(start-up stops with that line) rather than being changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

SCHEMA_VERSION = 7

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        completed_at REAL,
        expires_at REAL,
        variations INTEGER NOT NULL,
        seed TEXT NOT NULL,
        options_json TEXT NOT NULL DEFAULT '{}',
        error TEXT
    );
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE TABLE videos (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        upload_path TEXT,
        size INTEGER NOT NULL,
        duration REAL,
        info_json TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        progress REAL NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        pid INTEGER,
        error TEXT,
        stderr_tail TEXT,
        retryable INTEGER NOT NULL DEFAULT 1,
        queued_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX videos_job ON videos(job_id, idx);
    CREATE INDEX videos_status ON videos(status, queued_at);
    CREATE TABLE outputs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        duration REAL,
        seed TEXT,
        params_json TEXT NOT NULL DEFAULT '{}',
        graph TEXT NOT NULL DEFAULT '',
        distance_json TEXT,
        UNIQUE(video_id, idx)
    );
    """,
    # The opt-in `pitch` family is new: jobs stored before it never asked for it, and a job
    # stores the families it leaves out, so each gets "pitch" added to its `exclude` (sorted,
    # as new jobs store it). Without this, a queued, interrupted or retried old job would be
    # rendered with its sound pitch-shifted.
    2: """
    UPDATE jobs SET options_json = json_set(options_json, '$.exclude', json((
        SELECT json_group_array(value) FROM (
            SELECT value FROM json_each(jobs.options_json, '$.exclude')
            UNION SELECT 'pitch' ORDER BY 1)
    )))
    WHERE NOT EXISTS (
        SELECT 1 FROM json_each(jobs.options_json, '$.exclude') WHERE value = 'pitch'
    );
    """,
    # The FFmpeg output options each variation was encoded with (the manifest's `encoderArgs`);
    # NULL for outputs made before they were recorded.
    3: """
    ALTER TABLE outputs ADD COLUMN encoder_json TEXT;
    """,
    # The queue a team can plan around and automate: job names, when each video's render began
    # and ended (the ETA's measured throughput), every FFmpeg run's command line and stderr (the
    # per-video log), the queue's pause (kept across restarts), API keys (hashed) and webhook
    # deliveries still owed (kept across restarts).
    4: """
    ALTER TABLE jobs ADD COLUMN name TEXT;
    ALTER TABLE videos ADD COLUMN started_at REAL;
    ALTER TABLE videos ADD COLUMN finished_at REAL;
    CREATE TABLE ffmpeg_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        returncode INTEGER,
        command TEXT NOT NULL,
        stderr TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX ffmpeg_runs_video ON ffmpeg_runs(video_id, id);
    CREATE TABLE flags (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        last_used_at REAL
    );
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        event TEXT NOT NULL,
        created_at REAL NOT NULL,
        body TEXT,
        tries INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        delivered_at REAL,
        gave_up_at REAL,
        last_status INTEGER,
        last_error TEXT
    );
    CREATE INDEX webhook_due ON webhook_deliveries(delivered_at, gave_up_at, next_at);
    """,
    # Resumable (tus) uploads: the bytes received so far are in `resumable/<id>.bin`; `offset`
    # is written only once they are on disk (fsync), so it never runs ahead of the file.
    5: """
    CREATE TABLE resumable_uploads (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        length INTEGER NOT NULL,
        offset INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX resumable_expiry ON resumable_uploads(expires_at);
    """,
    # Placement formats: each output is one variation (`variation`, from 0) in one format
    # ('source', '9:16', …); `idx` stays the output's number within its video. Loudness
    # measured on an output normalised to a target (NULL: levels left alone). Outputs made
    # before are their variation in the source's shape.
    6: """
    ALTER TABLE outputs ADD COLUMN format TEXT NOT NULL DEFAULT 'source';
    ALTER TABLE outputs ADD COLUMN variation INTEGER;
    ALTER TABLE outputs ADD COLUMN loudness_json TEXT;
    UPDATE outputs SET variation = idx;
    """,
    # Login tokens logged out before they expire: the SHA-256 of each, until its expiry.
    7: """
    CREATE TABLE revoked_tokens (
        digest TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    );
    """,
}


class StoreError(Exception):
    pass


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply forward migrations up to ``SCHEMA_VERSION``; returns the version now in force."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema {version} is newer than this program ({SCHEMA_VERSION})"
        )
    for v in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _split_sql(_MIGRATIONS[v]):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={v}")
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) may already have rolled back: the ROLLBACK would then
            # fail too and hide why.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _split_sql(script: str) -> Iterable[str]:
    for stmt in script.split(";"):
        if stmt.strip():
            yield stmt
