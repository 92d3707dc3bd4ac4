"""``video-refresher make``: the pipeline without a server, writing the download's ZIP layout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from pipeline.media.probe import probe
from tests.clips import make_clip, make_damaged_clip
from tests.server import ROOT


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "web.cli", "make", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


def _manifest(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("manifest.json"))


def test_make_writes_one_folder_per_source_with_manifest(tmp_path, clips):
    out = tmp_path / "out.zip"
    before = clips["a"].read_bytes()
    done = _make(str(clips["a"]), str(clips["b"]), "-n", "3", "--seed", "s1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names == ["manifest.json", "a/a_v01.mp4", "a/a_v02.mp4", "a/a_v03.mp4",
                         "b/b_v01.mp4", "b/b_v02.mp4", "b/b_v03.mp4"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        zf.extract("b/b_v02.mp4", tmp_path / "x")
    assert probe(tmp_path / "x" / "b" / "b_v02.mp4").has_audio is False
    manifest = _manifest(out)
    entries = manifest["variations"]
    assert [e["file"] for e in entries] == names[1:]
    for e in entries:
        assert e["seed"] and e["params"] and "crop=" in e["graph"] and e["size"] > 0
    # Gain and pitch were drawn for every variation; only sound they could change is named.
    sound_words = [[w for w in e["effects"] if w.endswith(" dB") or w.startswith("pitch")]
                   for e in entries]
    assert any(sound_words[:3]), [e["effects"] for e in entries[:3]]  # a.mp4 has sound
    assert sound_words[3:] == [[], [], []], [e["effects"] for e in entries[3:]]  # b.mov has not
    assert any(e["params"]["gain_db"] for e in entries[3:])
    # The inputs are untouched and the scratch folder is gone.
    assert clips["a"].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zip", "x"]


def test_make_is_reproducible_and_can_exclude_mirror(tmp_path, clips):
    a1, a2, b, c = (tmp_path / f"{i}.zip" for i in range(1, 5))
    for out in (a1, a2):
        assert _make(str(clips["a"]), "-n", "6", "--seed", "same", "-o", str(out)).returncode == 0
    graphs = [[(e["params"], e["graph"]) for e in _manifest(p)["variations"]] for p in (a1, a2)]
    assert graphs[0] == graphs[1]
    assert len({g for _, g in graphs[0]}) == 6
    assert _make(str(clips["a"]), "-n", "6", "--seed", "same", "--exclude", "mirror",
                 "-o", str(b)).returncode == 0
    assert not any("hflip" in e["graph"] for e in _manifest(b)["variations"])
    assert _manifest(b)["excludedEffects"] == ["hue", "mirror", "pitch", "rotation"]
    # Rotation and hue are opt-in: not in the default graphs, there when asked for.
    assert not any("rotate" in g or "hue" in g for _, g in graphs[0])
    assert _make(str(clips["a"]), "-n", "6", "--seed", "same", "--include", "rotation",
                 "--include", "hue", "-o", str(c)).returncode == 0
    tilted = _manifest(c)
    assert tilted["excludedEffects"] == ["pitch"]
    assert any("rotate=" in e["graph"] for e in tilted["variations"])
    assert all("hue=" in e["graph"] for e in tilted["variations"])


def test_make_reports_failures_and_bad_arguments(tmp_path, clips):
    broken = make_damaged_clip(tmp_path, "broken.mp4")
    out = tmp_path / "out.zip"
    done = _make(str(clips["a"]), str(broken), "-n", "1", "-o", str(out))
    assert done.returncode == 1
    assert "failed: broken.mp4" in done.stderr
    assert "video failed" not in done.stderr  # said once, by the report, not by the log too
    assert [e["file"] for e in _manifest(out)["variations"]] == ["a/a_v01.mp4"]
    for given, says in ((tmp_path / "nope.mp4", "no such file"), (tmp_path, "is a folder"),
                        (Path("/dev/null"), "is not a regular file")):
        done = _make(str(given), "-o", str(out))
        lines = done.stderr.splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: ") and says in lines[0] and str(given) in lines[0]
    assert _make(str(clips["a"]), "-n", "0", "-o", str(out)).returncode == 2
    text = tmp_path / "t.mp4"
    text.write_text("not a video")
    done = _make(str(text), "-o", str(tmp_path / "t.zip"))
    assert done.returncode == 2 and "not a video" in done.stderr
    assert not (tmp_path / "t.zip").exists()


def test_make_refuses_effects_that_leave_the_picture_alone(tmp_path, clips):
    out = tmp_path / "plain.zip"
    for args in (["--exclude", "zoom"],
                 ["--exclude", "zoom", "--exclude", "mirror", "--exclude", "color", "--exclude", "noise"]):
        done = _make(str(clips["a"]), *args, "-o", str(out))
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "+rotation" in lines[0]
        assert not out.exists() and not list(tmp_path.glob(".*.work"))


def test_make_finishes_when_its_output_is_read_by_no_one(tmp_path, clips):
    """A report nobody reads is not a failed run: stdout or stderr a pipe whose reader is gone
    (``make … | head -c 0``), or not open at all (``>&-``). The ZIP is written, the exit status
    is the run's, and no traceback is printed where one can still be read."""
    def close(*fds):
        return lambda: [os.close(fd) for fd in fds]

    cases = {  # name: (Popen options, the pipe whose reader goes away at once)
        "stdout reader gone": ({"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}, "stdout"),
        "stderr reader gone": ({"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}, "stderr"),
        "stdout closed": ({"stderr": subprocess.PIPE, "preexec_fn": close(1)}, None),
        "stderr closed": ({"stdout": subprocess.PIPE, "preexec_fn": close(2)}, None),
        "both closed": ({"preexec_fn": close(1, 2)}, None),
    }
    for name, (how, gone) in cases.items():
        out = tmp_path / f"{name.replace(' ', '-')}.zip"
        proc = subprocess.Popen([sys.executable, "-m", "web.cli", "make", str(clips["a"]),
                                 "-n", "1", "-o", str(out)], cwd=ROOT, **how)
        if gone:
            getattr(proc, gone).close()
        left = [p for p in (proc.stdout, proc.stderr) if p is not None and not p.closed]
        said = "".join(p.read().decode() for p in left)
        assert proc.wait(timeout=180) == 0, (name, said)
        assert "Traceback" not in said and "Exception" not in said, (name, said)
        assert [e["file"] for e in _manifest(out)["variations"]] == ["a/a_v01.mp4"], name


def test_make_never_prints_its_errors_on_stdout(tmp_path, clips):
    """With stderr closed (``2>&-``), a refusal is said nowhere rather than mixed into the
    output a script reads; the exit status still says it."""
    for args in ([str(tmp_path / "missing.mp4")], [str(clips["a"]), "-n", "0"],
                 [str(clips["a"]), "--exclude", "nothing-like-this"]):
        done = subprocess.run([sys.executable, "-m", "web.cli", "make", *args,
                               "-o", str(tmp_path / "out.zip")], cwd=ROOT, capture_output=False,
                              stdout=subprocess.PIPE, text=True, timeout=60,
                              preexec_fn=lambda: os.close(2))
        assert done.returncode == 2, args
        assert done.stdout == "", (args, done.stdout)


def test_a_profiled_make_still_writes_its_profile(tmp_path, clips):
    """A finished ``make`` skips the interpreter's teardown, except under a profiler or a
    tracer, whose results are written at exit."""
    prof = tmp_path / "make.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "web.cli",
                           "make", str(clips["a"]), "-n", "1", "--quiet",
                           "-o", str(tmp_path / "out.zip")],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    assert prof.stat().st_size > 0


def test_make_never_deletes_or_replaces_what_it_was_given(tmp_path, clips):
    """The scratch folder is always a new one the run makes: a ``--work-dir`` that holds files
    (or names the working folder, ``""``) keeps them; ``-o`` naming an input or a folder is
    refused before any work, leaving them as they were."""
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    source = tmp_path / "source.mp4"
    source.write_bytes(clips["a"].read_bytes())
    for work_dir, cwd in ((str(kept), ROOT), ("", kept), (str(tmp_path), ROOT)):
        out = tmp_path / "o" / "new" / "x.zip"  # its folders are made
        done = subprocess.run([sys.executable, "-m", "web.cli", "make", str(source), "-n", "1",
                               "--quiet", "--work-dir", work_dir, "-o", str(out)], cwd=cwd,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, (work_dir, done.stderr)
        assert (kept / "notes.txt").read_text() == "mine"
        assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
        assert source.read_bytes() == clips["a"].read_bytes()
        assert [e["file"] for e in _manifest(out)["variations"]] == ["source/source_v01.mp4"]
        out.unlink()
    alias = tmp_path / "alias.mp4"
    alias.symlink_to(source)
    for output, says in ((str(source), "one of the inputs"), (str(alias), "one of the inputs"),
                         (str(kept), "is a folder"), (str(tmp_path / "newdir") + "/", "is a folder")):
        done = _make(str(source), "-n", "1", "-o", output)
        assert done.returncode == 2, (output, done.stderr)
        assert done.stderr.startswith("error: ") and says in done.stderr, done.stderr
        assert source.read_bytes() == clips["a"].read_bytes()
    assert not (tmp_path / "newdir").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.mp4", "kept", "o", "source.mp4"]


def _renders(pid: int) -> list[int]:
    """The render FFmpeg processes ``pid`` started (forked from its main thread)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    found = []
    for child in children:
        try:
            if b"-filter_complex" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            pass
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_make_stopped_by_a_signal_stops_ffmpeg_and_leaves_nothing(tmp_path):
    """Ctrl-C, ``kill`` and a closed terminal (SIGINT, SIGTERM, SIGHUP) mid-render: FFmpeg is
    stopped, the scratch folder removed, no ZIP written, one line said, and the exit status is
    128 + the signal's number, as shells expect."""
    clip = make_clip(tmp_path, "long.mp4", seconds=20.0, size="640x360", fps=30)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        out = tmp_path / "out" / "x.zip"
        proc = subprocess.Popen([sys.executable, "-m", "web.cli", "make", str(clip), "-n", "3",
                                 "--quiet", "-o", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (ffmpeg := _renders(proc.pid)) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert ffmpeg, "FFmpeg never started"
        time.sleep(0.3)
        proc.send_signal(sig)
        said, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, (sig, err)
        assert err.strip().splitlines()[-1] == f"stopped by {sig.name}: no ZIP written", err
        assert "Traceback" not in err and said == ""
        assert not any(_running(pid) for pid in ffmpeg)
        assert list(out.parent.iterdir()) == [], sig  # no ZIP, no .part, no scratch folder


def test_make_on_a_full_disk_says_so_in_one_line(tmp_path, clips):
    """No room for the scratch folder's database and files, or for the ZIP: one ``error:`` line
    at the end, exit status 1, and nothing left on the full disk or in ``--work-dir``."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(tiny)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here: {mounted.stderr.strip()}")
    try:
        done = _make(str(clips["a"]), "-n", "2", "--quiet", "-o", str(tiny / "x.zip"))
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(
            "error: no space left in the scratch folder"), done.stderr
        assert list(tiny.iterdir()) == []
        work = tmp_path / "work"
        done = _make(str(clips["a"]), "-n", "2", "--quiet", "--work-dir", str(work),
                     "-o", str(tiny / "x.zip"))
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == (f"error: could not write {tiny / 'x.zip'}: "
                                       "No space left on device"), done.stderr
        assert list(tiny.iterdir()) == [] and list(work.iterdir()) == []
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True)


def test_a_source_whose_pictures_mostly_fail_to_decode_is_said_to_be_damaged(tmp_path):
    """FFmpeg gives up on a source when more than 2/3 of its pictures fail: the reason reads
    as one, not as FFmpeg's last log line ("Terminating thread with return code …")."""
    garbled = make_damaged_clip(tmp_path, "garbled.mp4", intact=0.2)
    done = _make(str(garbled), "-n", "1", "--quiet", "-o", str(tmp_path / "g.zip"))
    assert done.returncode == 1
    failed = next(ln for ln in done.stderr.splitlines() if ln.startswith("failed: "))
    assert re.fullmatch(r"failed: garbled\.mp4: the source's pictures do not decode \(FFmpeg "
                        r"found errors in \d+% of them\), so the file is probably damaged",
                        failed), failed


def _stream_ends(path: Path) -> dict[str, float]:
    """Where each stream of ``path`` ends (its last packet's time plus duration), in seconds."""
    import av

    ends: dict[str, float] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.duration is None:
                continue
            end = float((packet.pts + packet.duration) * packet.time_base)
            kind = packet.stream.type
            ends[kind] = max(ends.get(kind, 0.0), end)
    return ends


@pytest.mark.parametrize(("gaps", "flags"), [
    (((1.5, 1.8),), []),                                        # one hole mid-way
    (((0.6, 0.75), (2.0, 2.5)), ["--include", "pitch"]),         # two, through the pitch chain
    (((1.0, 1.4),), ["--loudness", "-14", "--formats", "source,1:1"]),  # with a loudness target
])
def test_sound_with_holes_renders_in_step_with_the_picture(tmp_path, gaps, flags):
    """A source whose sound lost packets (a hole in its timestamps, as damaged data leaves it)
    failed every variation's sync check ("audio ends -294 ms away from the picture"): the
    sound after the hole ran early. The hole is now silence, and sound and picture end
    together."""
    clip = make_clip(tmp_path, "holes.mp4", seconds=3.0, size="320x240", fps=30, audio_gaps=gaps)
    out = tmp_path / "out.zip"
    done = _make(str(clip), "-n", "2", "--seed", "holes", *flags, "-o", str(out))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as zf:
        files = [n for n in zf.namelist() if n.endswith(".mp4")]
        zf.extractall(tmp_path / "x")
    assert len(files) == 2 * (2 if "--formats" in flags else 1)
    for name in files:
        ends = _stream_ends(tmp_path / "x" / name)
        assert abs(ends["audio"] - ends["video"]) < 0.08, (name, ends)
