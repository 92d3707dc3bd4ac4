"""Forward migrations on a database written by the previous version."""

from __future__ import annotations

import json
import sqlite3

import pytest

from pipeline.media.effects import EffectOptions
from pipeline.state import schema
from pipeline.state.store import Store


def _version_1_database(path, options: list[dict]) -> None:
    conn = schema.connect(path)
    conn.execute("BEGIN")
    for stmt in schema._split_sql(schema._MIGRATIONS[1]):
        conn.execute(stmt)
    conn.execute("PRAGMA user_version=1")
    for i, o in enumerate(options):
        conn.execute("INSERT INTO jobs(id,status,created_at,variations,seed,options_json)"
                     " VALUES (?,?,?,?,?,?)", (f"j{i}", "queued", 0.0, 1, "s", json.dumps(o)))
    conn.execute("COMMIT")
    conn.close()


def test_jobs_stored_before_pitch_existed_keep_it_off(tmp_path):
    """A job stores the families it leaves out; one stored before `pitch` existed must not get
    it when it is rendered (queued, resumed or retried) after the upgrade."""
    path = tmp_path / "jobs.db"
    _version_1_database(path, [{"exclude": ["hue", "rotation"]}, {"exclude": []}, {},
                               {"exclude": ["hue", "mirror", "rotation"]}])
    store = Store(path)
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION == 7
        excluded = [store.job_row(f"j{i}").options["exclude"] for i in range(4)]
    finally:
        store.close()
    assert excluded == [["hue", "pitch", "rotation"], ["pitch"], ["pitch"],
                        ["hue", "mirror", "pitch", "rotation"]]
    assert not EffectOptions(exclude=frozenset(excluded[0])).allows("pitch")
    # New jobs with +pitch are left alone by a second start (nothing to migrate).
    store = Store(path)
    store.close()


def test_figures_of_the_earlier_phash_shape_are_not_served(tmp_path):
    """Outputs measured before PDQ carry ``{"source", "siblingsMin", …}``: the rows give no
    figures for them (so the API and the manifest only ever show the current shape, and no
    preview is offered), while current figures come back as stored."""
    from pipeline.state.rows import Output
    from pipeline.state.states import VideoStatus
    from web.views import output_model

    store = Store(tmp_path / "jobs.db")
    try:
        store.create_job(job_id="j1", seed="s", variations=2, options={"exclude": []}, now=0.0,
                         videos=[{"id": "v1", "name": "a.mp4", "upload_path": None, "size": 1,
                                  "duration": 1.0, "info": {}}])
        current = {"video": {"metric": "pdq", "frames": 16, "sourceMatches": 0,
                             "sourceDistance": 70, "siblingMatches": None,
                             "siblingDistance": None}, "audio": None, "rerolls": 0}
        store.set_video_state("v1", VideoStatus.COMPLETED, now=1.0, outputs=[
            Output(index=0, name="a_v01.mp4", path="/x/v01.mp4", size=1,
                   distinctness={"source": 12.5, "siblingsMin": 3.0, "rerolls": 0}),
            Output(index=1, name="a_v02.mp4", path="/x/v02.mp4", size=1, distinctness=current)])
        old, new = store.get_job("j1").videos[0].outputs
    finally:
        store.close()
    assert old.distinctness is None and new.distinctness == current
    assert "previewUrl" not in output_model(old, "j1", "v1").dump()
    assert output_model(new, "j1", "v1").dump()["distinctness"] == current


def test_outputs_stored_before_encoder_args_were_recorded_read_as_unknown(tmp_path):
    """Schema 3 adds each output's encoder options: a version 2 database keeps its outputs, which
    read back with none (the manifest's ``encoderArgs`` is null for them)."""
    from pipeline.state.rows import Output
    from pipeline.state.states import VideoStatus

    path = tmp_path / "jobs.db"
    _version_1_database(path, [{"exclude": []}])
    conn = schema.connect(path)
    conn.execute("BEGIN")
    for stmt in schema._split_sql(schema._MIGRATIONS[2]):
        conn.execute(stmt)
    conn.execute("PRAGMA user_version=2")
    conn.execute("INSERT INTO videos(id,job_id,idx,name,size,status,queued_at,updated_at) "
                 "VALUES ('v1','j0',0,'a.mp4',1,'completed',0,0)")
    conn.execute("INSERT INTO outputs(video_id,idx,name,path,size) VALUES ('v1',0,'a_v01.mp4',"
                 "'/x/v01.mp4',1)")
    conn.execute("COMMIT")
    conn.close()
    store = Store(path)
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION
        (old,) = store.get_job("j0").videos[0].outputs
        args = ("-c:v", "libx264", "-crf", "23")
        store.set_video_state("v1", VideoStatus.COMPLETED, now=1.0, outputs=[
            Output(index=0, name="a_v01.mp4", path="/x/v01.mp4", size=1, encoder_args=args)])
        (new,) = store.get_job("j0").videos[0].outputs
    finally:
        store.close()
    assert old.encoder_args is None and old.name == "a_v01.mp4"
    assert new.encoder_args == args


def test_jobs_from_before_names_are_named_after_their_files(tmp_path):
    """Schema 4 adds job names, render times, the per-video log, the queue's pause, API keys and
    webhook deliveries: a version 3 database keeps its jobs, unnamed and untimed, and the API
    names them after their files."""
    from pipeline.state.states import VideoStatus
    from web.views import job_json

    path = tmp_path / "jobs.db"
    _version_1_database(path, [{"exclude": []}])
    conn = schema.connect(path)
    conn.execute("BEGIN")
    for v in (2, 3):
        for stmt in schema._split_sql(schema._MIGRATIONS[v]):
            conn.execute(stmt)
    conn.execute("PRAGMA user_version=3")
    for i, name in enumerate(["promo.mp4", "b.mov"]):
        conn.execute("INSERT INTO videos(id,job_id,idx,name,size,status,queued_at,updated_at) "
                     f"VALUES ('v{i}','j0',{i},?,1,'queued',0,0)", (name,))
    conn.execute("COMMIT")
    conn.close()
    store = Store(path)
    try:
        job = store.get_job("j0")
        assert job.name is None and job.videos[0].started_at is None
        assert job_json(job)["name"] == "promo.mp4 + 1"
        store.set_video_state("v0", VideoStatus.PROCESSING, now=5.0)
        store.set_video_state("v0", VideoStatus.FAILED, now=7.0, error="x")
        video = store.get_job("j0").videos[0]
        assert (video.started_at, video.finished_at) == (5.0, 7.0)
        assert store.flag("queue_paused") is None and store.api_keys() == []
    finally:
        store.close()


def test_outputs_from_before_formats_are_their_variation_in_the_source_shape(tmp_path):
    """Schema 6 adds each output's format, variation and loudness: a version 5 database's
    outputs read back as variation ``idx`` in the source's shape, without loudness."""
    path = tmp_path / "jobs.db"
    _version_1_database(path, [{"exclude": []}])
    conn = schema.connect(path)
    conn.execute("BEGIN")
    for v in range(2, 6):
        for stmt in schema._split_sql(schema._MIGRATIONS[v]):
            conn.execute(stmt)
    conn.execute("PRAGMA user_version=5")
    conn.execute("INSERT INTO videos(id,job_id,idx,name,size,status,queued_at,updated_at) "
                 "VALUES ('v1','j0',0,'a.mp4',1,'completed',0,0)")
    for i in range(2):
        conn.execute("INSERT INTO outputs(video_id,idx,name,path,size) VALUES "
                     f"('v1',{i},'a_v0{i + 1}.mp4','/x/v0{i + 1}.mp4',1)")
    conn.execute("COMMIT")
    conn.close()
    store = Store(path)
    try:
        outs = store.get_job("j0").videos[0].outputs
    finally:
        store.close()
    assert [(o.format, o.variation, o.variation_index, o.loudness) for o in outs] == [
        ("source", 0, 0, None), ("source", 1, 1, None)]


def test_a_migration_sqlite_already_rolled_back_fails_with_its_own_error(tmp_path, monkeypatch):
    """When SQLite ends the transaction itself (a failed COMMIT on a full disk does; here an
    ``INSERT OR ROLLBACK``), the migration's own error comes out, not "cannot rollback", and
    the database stays at the version before."""
    conn = schema.connect(tmp_path / "state.db")
    schema.migrate(conn)
    bad = schema.SCHEMA_VERSION + 1
    monkeypatch.setitem(schema._MIGRATIONS, bad, "CREATE TABLE t (x UNIQUE); "
                        "INSERT INTO t VALUES (1); INSERT OR ROLLBACK INTO t VALUES (1)")
    monkeypatch.setattr(schema, "SCHEMA_VERSION", bad)
    with pytest.raises(sqlite3.IntegrityError):
        schema.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == bad - 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()[0] == 0
    assert not conn.in_transaction
