"""Loudness targets: the measurement's parsing and the gain search (pure), and real renders
to -14 and -23 LUFS from a quiet voice-over, a loud one and a steady tone, each output
measured independently with FFmpeg's ``ebur128``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trio

from pipeline.media import loudness
from pipeline.media.encoder import Encoder
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.formats import TRUE_PEAK
from tests.server import wait_job

FF = find_ffmpeg()

SUMMARY = """[Parsed_ebur128_0 @ 0x1] Summary:

  Integrated loudness:
    I:         -21.8 LUFS
    Threshold: -31.8 LUFS

  Loudness range:
    LRA:        20.0 LU
    Threshold: -41.8 LUFS

  True peak:
    Peak:      -17.7 dBFS
"""


def test_summary_parses_and_silence_is_refused():
    level = loudness.parse_summary("noise\n" + SUMMARY)
    assert (level.integrated, level.true_peak, level.range) == (-21.8, -17.7, 20.0)
    assert level.report(-14.0) == {"target": -14.0, "integrated": -21.8, "truePeak": -17.7,
                                   "range": 20.0}
    silent = SUMMARY.replace("-21.8 LUFS", "-inf LUFS", 1)
    with pytest.raises(loudness.LoudnessUnavailable):
        loudness.parse_summary(silent)
    with pytest.raises(loudness.LoudnessUnavailable):
        loudness.parse_summary("no summary here")


def test_gain_search_steps_by_what_each_step_bought():
    assert loudness.next_gain(-14.0, [(6.0, -16.0)]) == 8.0
    # Two dB of gain bought one LU: the next step asks for twice what is missing.
    assert loudness.next_gain(-14.0, [(6.0, -16.0), (8.0, -15.0)]) == 10.0
    assert loudness.next_gain(-14.0, [(29.0, -40.0)]) == loudness.MAX_GAIN
    text = loudness.gain_filter(5.5)
    assert text.startswith("volume=5.50dB,aresample=192000,alimiter=")
    assert "latency=1" in text and text.endswith("aresample=48000")


def _ffmpeg(*args: str) -> None:
    done = subprocess.run([FF, "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _measured(path: Path) -> tuple[float, float]:
    """Integrated loudness and true peak, by FFmpeg's ebur128 (not the service's code)."""
    done = subprocess.run([FF, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0",
                           "-af", "ebur128=peak=true:framelog=quiet", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=120)
    i = re.findall(r"I:\s+(-?[\d.]+) LUFS", done.stderr)[-1]
    tp = re.findall(r"Peak:\s+(-?[\d.]+) dBFS", done.stderr)[-1]
    return float(i), float(tp)


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    d = tmp_path_factory.mktemp("loudness")
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed: the loudness tests need it for speech "
                    "(apt-get install espeak-ng)")
    wav = d / "voice.wav"
    subprocess.run([espeak, "-w", str(wav), "Summer sale. Everything in the shop is forty "
                    "percent off, this weekend only."], check=True, capture_output=True)
    out = {}
    for name, audio in (("quiet", ["-i", str(wav), "-af", "volume=-9dB"]),
                        ("loud", ["-i", str(wav), "-af", "volume=3dB"]),
                        ("tone", ["-f", "lavfi", "-i", "sine=frequency=330:duration=4",
                                  "-af", "volume=-12dB"])):
        path = d / f"{name}.mp4"
        _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", *audio,
                "-map", "0:v", "-map", "1:a", "-shortest", "-c:v", "libx264", "-preset",
                "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(path))
        out[name] = path
    return out


def _pcm(*args: str) -> np.ndarray:
    done = subprocess.run([FF, "-v", "error", "-nostdin", *args, "-ac", "1", "-f", "f32le", "-"],
                          capture_output=True, timeout=120, check=True)
    return np.frombuffer(done.stdout, np.float32)


def test_encoded_sound_keeps_what_the_limiter_made_at_every_speed(sounds, tmp_path):
    """The outputs' AAC encoder across the speed effect's range on a voice limited for -14 LUFS:
    no burst (the decoded sound stays close to what went in) and no true peak over the
    ceiling. FFmpeg's default AAC search rang bursts of 0.3-1.2 into one speed in six."""
    source = sounds["quiet"]
    gain = trio.run(loudness.plan, FF, source, -14.0).gain_db
    worst = []
    for k in range(15):
        speed = 0.95 + 0.11 * k / 14
        chain = f"atempo={speed:.4f},{loudness.gain_filter(gain)}"
        before = _pcm("-i", str(source), "-map", "0:a:0", "-af", chain)
        out = tmp_path / f"s{k}.m4a"
        _ffmpeg("-i", str(source), "-map", "0:a:0", "-af", chain, *Encoder().audio_args(),
                str(out))
        after = _pcm("-i", str(out))
        n = min(len(before), len(after))
        assert abs(len(before) - len(after)) < 2048
        worst.append((round(float(np.abs(after[:n] - before[:n]).max()), 3),
                      _measured(out)[1], round(speed, 4)))
    assert max(w[0] for w in worst) <= 0.25, worst
    assert max(w[1] for w in worst) <= TRUE_PEAK, worst


@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_outputs_reach_the_target_with_peaks_under_the_ceiling(server, sounds, target,
                                                               tmp_path):
    files = [("videos", (p.name, p.read_bytes(), "video/mp4")) for p in sounds.values()]
    with server.client() as c:
        r = c.post("/api/jobs", files=files,
                   data={"variations": "2", "loudness": str(target), "formats": "source,1:1"})
        assert r.status_code == 202, r.text
        done = wait_job(c, r.json()["jobId"])
        assert done["status"] == "completed", done
        assert done["placement"]["loudness"] == target
        for video in done["videos"]:
            for o in video["outputs"]:
                path = tmp_path / o["name"]
                path.write_bytes(c.get(o["url"]).content)
                integrated, peak = _measured(path)
                assert abs(integrated - target) <= 1.5, (o["name"], integrated)
                assert peak <= -1.0, (o["name"], peak)
                reported = o["loudness"]
                assert reported["target"] == target
                assert abs(reported["integrated"] - integrated) <= 0.2
                assert abs(reported["truePeak"] - peak) <= 0.2


def test_no_target_leaves_levels_alone(server, sounds, tmp_path):
    source = sounds["quiet"]
    with server.client() as c:
        job = c.post("/api/jobs", files=[("videos", (source.name, source.read_bytes(),
                                                     "video/mp4"))],
                     data={"variations": "1", "effects": "-audio"}).json()
        done = wait_job(c, job["jobId"])
        (o,) = done["videos"][0]["outputs"]
        assert o.get("loudness") is None
        path = tmp_path / o["name"]
        path.write_bytes(c.get(o["url"]).content)
    assert abs(_measured(path)[0] - _measured(source)[0]) <= 0.5
