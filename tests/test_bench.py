"""The benchmark (``python -m bench``): a smoke run, not a timed test; plus its pure parts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import media
from bench.machine import FFmpegBinary, Machine
from bench.report import (
    GOAL_ROWS,
    GOAL_SPEED_HOST,
    IO_ROWS,
    RENDER_ROWS,
    ROW_BASELINE_HOST,
    ROW_BASELINE_PROJECT,
    ROW_FLOOR,
    ROW_HTTP,
    ROW_MAKE,
    Results,
    Timing,
    render,
    write_docs,
)
from pipeline.media.command import build_render_command
from pipeline.media.effects import VariationParams
from pipeline.media.encoder import Encoder, filter_threads
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.filters import video_filter
from pipeline.media.probe import probe
from tests.clips import make_clip
from tests.server import ROOT


def _row(text: str, label: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith(f"| {label} |")]
    assert len(lines) == 1, f"row {label!r} missing or repeated in:\n{text}"
    return lines[0]


def test_quick_run_prints_every_row():
    done = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert out.startswith("## Results: 320x180, 2 s, 30 fps, N=2")
    for label in RENDER_ROWS + IO_ROWS + GOAL_ROWS:
        _row(out, label)
    for label in (ROW_BASELINE_PROJECT, ROW_HTTP, ROW_MAKE, ROW_FLOOR):
        cells = _row(out, label).split("|")
        assert float(cells[2]) > 0, cells  # wall seconds
        assert cells[9].strip() != "–", cells  # SSIM measured
    host = _row(out, ROW_BASELINE_HOST)
    assert "no host `ffmpeg` on PATH" in host or float(host.split("|")[2]) > 0
    for label in IO_ROWS:
        assert "skipped (--quick)" in _row(out, label)
    assert "byte-identical" in out  # HTTP ZIP, make ZIP and floor agree


def _results(**kw) -> Results:
    base = dict(
        size="1280x720", seconds=10.0, fps=30, n=5, seed="bench", preset="ultrafast", repeat=1,
        quick=False, machine=Machine(2, "CPU", 8.0, "6.1", "3.11", "/dev/x (ext4), 9 GB free"),
        project=FFmpegBinary("/ff9", "n9.0"), host=FFmpegBinary(None, None, "no host `ffmpeg` on PATH"),
        started_at="now", load_start="0.1 / 0.1 / 0.1",
    )
    base.update(kw)
    return Results(**base)


def test_table_without_host_ffmpeg_says_why():
    r = _results()
    r.render = {
        ROW_BASELINE_HOST: r.host.note,
        ROW_BASELINE_PROJECT: Timing(wall=14.0, cpu=28.0, load=0.2, out_bytes=10**7),
        ROW_HTTP: Timing(wall=4.0, cpu=8.0, load=0.2, out_bytes=10**7),
        ROW_MAKE: Timing(wall=4.2, cpu=8.1, load=0.2, out_bytes=10**7),
        ROW_FLOOR: Timing(wall=3.8, cpu=7.8, load=0.2, out_bytes=10**7),
    }
    text = render(r)
    assert "no host `ffmpeg` on PATH" in _row(text, ROW_BASELINE_HOST)
    assert "no host `ffmpeg` on PATH" in _row(text, GOAL_SPEED_HOST)
    assert "3.50× wall" in text and "**met**" in text  # project baseline / HTTP = 14 / 4
    for label in RENDER_ROWS + IO_ROWS + GOAL_ROWS:
        _row(text, label)


def test_write_docs_replaces_only_its_own_block(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nHand-written reasoning.\n")
    big, small = _results(), _results(size="320x180", quick=True)
    write_docs(doc, big, "first\n")
    write_docs(doc, small, "quick\n")
    write_docs(doc, big, "second\n")
    text = doc.read_text()
    assert "Hand-written reasoning." in text
    assert "second" in text and "first" not in text and "quick" in text
    assert text.index("second") < text.index("quick")  # replaced in place


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    return d, make_clip(d, "src.mp4", seconds=1.0, size="160x120", fps=30)


def test_inline_ssim_equals_lossless_reference_for_ours(tiny):
    """`media.ssim` compares with the filtered frames in memory; a lossless render of the same
    command line (x264 CRF 0) must give the same number."""
    d, src = tiny
    ff, info = find_ffmpeg(), probe(src)
    params = VariationParams(zoom=1.06, pan_x=0.3, rotation_deg=0.5, brightness=0.02,
                             contrast=1.03, hue_deg=2.0, noise=5, noise_seed=7, speed=1.05,
                             mirror=True, gain_db=0.5)
    enc, ref = d / "enc.mp4", d / "ref.mp4"
    media.run(build_render_command(ff, src, info, [params], [enc]))
    media.run(build_render_command(ff, src, info, [params], [ref], encoder=Encoder(crf=0)))
    inline = media.ssim(ff, enc, src, video_filter(params, info.display_width, info.display_height))
    assert inline.y < 0.999  # a real, lossy encode
    assert abs(inline.y - _ssim_files(ff, enc, ref)) < 1e-4


def test_inline_ssim_equals_lossless_reference_for_baseline(tiny):
    d, src = tiny
    ff = find_ffmpeg()
    params = media.baseline_variations(1)[0]
    enc, ref = d / "benc.mp4", d / "bref.mp4"
    media.run(media.baseline_command(ff, src, enc, params))
    lossless = list(media.baseline_command(ff, src, ref, params))
    for opt in ("-b:v", "-bufsize", "-maxrate"):
        i = lossless.index(opt)
        del lossless[i:i + 2]
    lossless[lossless.index("-crf") + 1] = "0"
    media.run(lossless)
    inline = media.ssim(ff, enc, src, params.reference_chain())
    assert abs(inline.y - _ssim_files(ff, enc, ref)) < 1e-4


def _ssim_files(ff: str, a, b) -> float:
    done = subprocess.run([ff, "-hide_banner", "-i", str(a), "-i", str(b), "-lavfi",
                           "[0:v][1:v]ssim", "-f", "null", "-"], capture_output=True, text=True)
    line = next(ln for ln in done.stderr.splitlines() if "SSIM Y:" in ln)
    return float(line.split("SSIM Y:")[1].split()[0])


@pytest.mark.parametrize("quality", ["balanced", "fast"])
def test_the_manifest_alone_renders_the_same_files_again(tiny, tmp_path, quality):
    """Each variation's `graph` and `encoderArgs` in manifest.json are enough to rebuild the
    service's render by hand (the benchmark's floor is built that way): byte for byte."""
    import hashlib
    import json
    import os
    import zipfile

    from bench.bare import bare_command

    _, src = tiny
    out = tmp_path / "out.zip"
    env = {**os.environ, "VR_QUALITY": quality}
    subprocess.run([sys.executable, "-m", "web.cli", "make", str(src), "-n", "3", "--seed", "m",
                    "-o", str(out), "--quiet"], cwd=ROOT, env=env, check=True, timeout=120)
    with zipfile.ZipFile(out) as zf:
        entries = json.loads(zf.read("manifest.json"))["variations"]
        served = [hashlib.sha256(zf.read(e["file"])).hexdigest() for e in entries]
    assert all("-crf" in e["encoderArgs"] and not any("/" in a for a in e["encoderArgs"])
               for e in entries)
    assert ("-x264-params" in entries[0]["encoderArgs"]) == (quality == "balanced")
    # The filter graph's threads as the runner chose them, so the floor runs as the render did.
    threads = filter_threads(len(entries))
    assert ("-filter_complex_threads" in entries[0]["encoderArgs"]) == (threads is not None)
    info = probe(src)
    outs = [tmp_path / f"bare{i}.mp4" for i in range(len(entries))]
    media.run(bare_command(find_ffmpeg(), src, info.display_width, info.display_height,
                           entries, outs))
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in outs] == served
