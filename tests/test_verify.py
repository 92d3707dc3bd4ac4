"""Output verification (pipeline/media/verify.py) on real FFmpeg renders of tiny generated clips."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from pipeline.media import verify
from pipeline.media.command import build_render_command
from pipeline.media.effects import VariationParams, expected_duration
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe
from pipeline.media.verify import VerificationFailed
from tests.clips import make_clip

FFMPEG = find_ffmpeg()
PARAMS = VariationParams(zoom=1.06, pan_x=0.3, pan_y=0.7, brightness=0.02, noise=3, noise_seed=7,
                         speed=1.04, mirror=True, gain_db=0.5)


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", *args],
                   check=True, capture_output=True, timeout=60)


def _render(source: Path, out: Path, params: VariationParams = PARAMS) -> Path:
    info = probe(source)
    subprocess.run(build_render_command(FFMPEG, source, info, [params], [out]),
                   check=True, capture_output=True, timeout=60)
    return out


def _remux(good: Path, out: Path, *extra: str, faststart: bool = True) -> Path:
    """A copy of ``good`` (no re-encode, no metadata) with ``extra`` output options."""
    _ffmpeg("-i", f"file:{good}", "-map", "0", "-c", "copy", "-map_metadata", "-1",
            "-fflags", "+bitexact", *extra,
            *(["-movflags", "+faststart"] if faststart else []), "-f", "mp4", f"file:{out}")
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("verify")
    # make_clip writes a title and a comment into the source, as an editing tool would.
    source = make_clip(d, "src.mp4", seconds=1.5, size="320x240", fps=15)
    info = probe(source)
    good = _render(source, d / "good.mp4")
    return {
        "dir": d,
        "source": source,
        "info": info,
        "ref": verify.reference_for(source, info),
        "good": good,
        "expected": expected_duration(info.duration, PARAMS),
    }


def _check(media, path: Path, expected: float | None = None, ref=None):
    return verify.check_file(path, ref or media["ref"], expected or media["expected"], PARAMS.speed)


def _fails(media, path: Path, expected: float | None = None, ref=None) -> str:
    with pytest.raises(VerificationFailed) as err:
        _check(media, path, expected, ref)
    return err.value.message


async def test_a_good_render_passes_every_check(media):
    assert media["ref"].tags["format:title"] == "test clip"
    checked = _check(media, media["good"])
    assert (checked.info.display_width, checked.info.display_height) == (320, 240)
    kinds = [k for k, _, _ in verify.top_level_boxes(media["good"])]
    assert kinds.index("moov") < kinds.index("mdat")
    assert await verify.decode(FFMPEG, media["good"], has_audio=True) == b""


async def test_speed_scaled_timestamps_are_no_decode_error(media):
    # At 30 fps and speed 1.046 two frames round to the same 1/30 s tick if the null output
    # re-times them, which FFmpeg reports as an error: a false failure (seen before the fix).
    clip = make_clip(media["dir"], "fps30.mp4", seconds=2.0, size="160x120", fps=30)
    out = _render(clip, media["dir"] / "fast.mp4", VariationParams(speed=1.046))
    assert await verify.decode(FFMPEG, out, has_audio=True) == b""


@pytest.mark.parametrize("fps", ["30000/1001", "30", "50", "60"])
async def test_silent_outputs_at_any_speed_decode_cleanly(media, fps):
    # A silent output has no audio for the decode's audio output to take. Mapped with
    # `-map 0:a?`, FFmpeg auto-mapped the video there on a 1/fps clock and logged a false
    # "non monotonically increasing dts" for speed-scaled frames: silent sources at 29.97,
    # 30, 50 and 60 fps failed their verification about half of the time.
    clip = media["dir"] / f"silent-{fps.replace('/', '_')}.mp4"
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={fps}:duration=2",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", f"file:{clip}")
    for k, speed in enumerate((0.951, 0.987, 1.013, 1.029, 1.046, 1.058)):
        out = _render(clip, media["dir"] / f"silent-{k}.mp4", VariationParams(speed=speed))
        assert not probe(out).has_audio
        assert await verify.decode(FFMPEG, out, has_audio=False) == b"", speed


def test_a_truncated_file_fails_before_decoding(media):
    cut = media["dir"] / "cut.mp4"
    data = media["good"].read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert "truncated" in _fails(media, cut)
    empty = media["dir"] / "empty.mp4"
    empty.write_bytes(b"")
    assert "empty" in _fails(media, empty)
    assert "not written" in _fails(media, media["dir"] / "never.mp4")


async def test_damaged_media_data_fails_the_decode(media):
    data = bytearray(media["good"].read_bytes())
    _, offset, size = next(b for b in verify.top_level_boxes(media["good"]) if b[0] == "mdat")
    rng = random.Random(1)
    start = offset + size // 2
    data[start:start + 2000] = bytes(rng.randrange(256) for _ in range(2000))
    bad = media["dir"] / "damaged.mp4"
    bad.write_bytes(bytes(data))
    _check(media, bad)  # the file's structure is intact…
    with pytest.raises(VerificationFailed, match="does not decode cleanly"):
        await verify.decode(FFMPEG, bad, has_audio=True)  # …but its pictures are not


def test_moov_at_the_end_fails(media):
    slow = _remux(media["good"], media["dir"] / "slow.mp4", faststart=False)
    assert "not optimised for streaming" in _fails(media, slow)


def test_metadata_left_in_fails(media):
    titled = _remux(media["good"], media["dir"] / "titled.mp4", "-metadata", "title=Summer sale")
    assert "title='Summer sale'" in _fails(media, titled)
    # The source's own tags carried over are named as such.
    copied = media["dir"] / "copied.mp4"
    _ffmpeg("-i", f"file:{media['good']}", "-i", f"file:{media['source']}", "-map", "0",
            "-map_metadata", "1", "-c", "copy", "-movflags", "+faststart", f"file:{copied}")
    assert "copied from the source" in _fails(media, copied)
    gps = _remux(media["good"], media["dir"] / "gps.mp4", "-metadata", "location=+48.8584+002.2945/")
    assert "location=" in _fails(media, gps)


def test_wrong_duration_fails(media):
    short = _remux(media["good"], media["dir"] / "short.mp4", "-t", "1.0")
    assert "lasts 1.0" in _fails(media, short)
    assert f"expected {media['expected']:.2f}s" in _fails(media, short)
    # The speed factor is part of the expectation: the source's own duration is wrong here.
    source_duration = media["info"].duration
    assert f"expected {source_duration:.2f}s" in _fails(media, media["good"], expected=source_duration)


def test_lost_audio_and_audio_out_of_sync_fail(media):
    mute = _remux(media["good"], media["dir"] / "mute.mp4", "-an")
    assert "lost its audio" in _fails(media, mute)
    late = media["dir"] / "late.mp4"
    _ffmpeg("-i", f"file:{media['good']}", "-itsoffset", "0.3", "-i", f"file:{media['good']}",
            "-map", "0:v", "-map", "1:a", "-c", "copy", "-map_metadata", "-1", "-fflags", "+bitexact",
            "-movflags", "+faststart", f"file:{late}")
    assert "out of sync" in _fails(media, late)


def test_a_source_whose_audio_starts_late_keeps_that_offset(media):
    late_source = media["dir"] / "late-source.mp4"
    _ffmpeg("-i", f"file:{media['source']}", "-itsoffset", "0.3", "-i", f"file:{media['source']}",
            "-map", "0:v", "-map", "1:a", "-c", "copy", f"file:{late_source}")
    info = probe(late_source)
    ref = verify.reference_for(late_source, info)
    assert ref.audio_lead == pytest.approx(0.3, abs=0.03)
    out = _render(late_source, media["dir"] / "late-out.mp4")
    verify.check_file(out, ref, expected_duration(info.duration, PARAMS), PARAMS.speed)
    # Against a source that starts together, the same file is out of sync.
    with pytest.raises(VerificationFailed, match="out of sync"):
        verify.check_file(out, media["ref"], expected_duration(info.duration, PARAMS), PARAMS.speed)


def test_wrong_orientation_fails(media):
    flagged = _remux(media["good"], media["dir"] / "flagged.mp4", faststart=True)
    turned = media["dir"] / "turned.mp4"
    _ffmpeg("-display_rotation", "90", "-i", f"file:{flagged}", "-c", "copy", "-map_metadata", "-1",
            "-fflags", "+bitexact", "-movflags", "+faststart", f"file:{turned}")
    assert "display rotation" in _fails(media, turned)
    # Upright, but with the picture turned into the other orientation.
    sideways = media["dir"] / "sideways.mp4"
    _ffmpeg("-i", f"file:{media['good']}", "-vf", "transpose=clock", "-c:v", "libx264",
            "-preset", "ultrafast", "-c:a", "copy", "-map_metadata", "-1", "-fflags", "+bitexact",
            "-movflags", "+faststart", f"file:{sideways}")
    assert "displays as 240x320, the source as 320x240" in _fails(media, sideways)


def test_phone_video_output_is_upright_at_the_display_size(media):
    phone = make_clip(media["dir"], "phone.mp4", seconds=1.0, size="160x96", rotation=90)
    info = probe(phone)
    ref = verify.reference_for(phone, info)
    assert (ref.display_width, ref.display_height) == (96, 160)
    out = _render(phone, media["dir"] / "phone-out.mp4")
    checked = verify.check_file(out, ref, expected_duration(info.duration, PARAMS), PARAMS.speed)
    assert (checked.info.width, checked.info.height, checked.info.rotation) == (96, 160, 0)


def test_tag_policy():
    allowed = verify._allowed_tag
    assert allowed("format:major_brand", "isom")
    assert allowed("video:encoder", "Lavc libx264") and allowed("format:encoder", "Lavf62.3.100")
    assert allowed("video:handler_name", "VideoHandler") and allowed("audio:language", "und")
    assert not allowed("format:encoder", "Adobe Premiere Pro 2024")
    assert not allowed("video:handler_name", "Core Media Video")
    assert not allowed("audio:language", "eng")
    for key in ("format:title", "format:comment", "format:creation_time", "format:location",
                "format:com.apple.quicktime.location.ISO6709", "video:creation_time"):
        assert not allowed(key, "x")
