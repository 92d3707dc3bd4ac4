"""The default decode check (pipeline/media/packets.py): every packet read, keyframes and audio
decoded, on real renders of small generated clips and on files damaged on purpose."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import av
import pytest

from pipeline.config import ConfigError, load_settings
from pipeline.media import packets, verify
from pipeline.media.command import build_render_command
from pipeline.media.effects import VariationParams
from pipeline.media.encoder import Encoder
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe
from pipeline.media.verify import VerificationFailed
from tests.clips import make_clip

FFMPEG = find_ffmpeg()
PARAMS = VariationParams(zoom=1.05, pan_x=0.4, pan_y=0.6, noise=1, noise_seed=3, speed=1.03)


def _render(source: Path, out: Path, params: VariationParams = PARAMS, preset: str = "ultrafast",
            ) -> Path:
    subprocess.run(build_render_command(FFMPEG, source, probe(source), [params], [out],
                                        encoder=Encoder(preset=preset)),
                   check=True, capture_output=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("packets")
    source = make_clip(d, "src.mp4", seconds=2.0, size="320x240", fps=25)
    return _render(source, d / "good.mp4")


def _keyframe(path: Path) -> tuple[int, int]:
    """Byte offset and size of the first keyframe's packet."""
    with av.open(str(path)) as c:
        for p in c.demux(c.streams.video[0]):
            if p.is_keyframe and p.size:
                return p.pos, p.size
    raise AssertionError("no keyframe")


def _damaged(good: Path, out: Path, start: int, count: int, seed: int = 1) -> Path:
    data = bytearray(good.read_bytes())
    rng = random.Random(seed)
    for i in range(start, start + count):
        data[i] = (data[i] + 1 + rng.randrange(255)) % 256  # always a different byte
    out.write_bytes(bytes(data))
    return out


def test_a_good_render_has_every_packet_and_its_keyframes_decode(good):
    scanned = packets.scan(good)
    info = probe(good)
    assert scanned.video_packets == info.frames > 0
    assert scanned.keyframes >= 1
    assert scanned.audio_packets > 0 and scanned.audio_frames >= scanned.audio_packets - 2
    # The same pass probed it: what the verification checks is what a separate probe reads.
    assert (scanned.info, scanned.facts) == verify.read_facts(good, good.name)
    assert scanned.info == info


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_the_scan_reads_the_rotation_off_the_keyframes_it_decodes(good, tmp_path, angle):
    """The scan takes the rotation from the first keyframe it decodes anyway (no separate
    first-frame decode); it must read what a separate probe reads, for every display matrix."""
    rotated = tmp_path / f"r{angle}.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-display_rotation", str(angle), "-i", str(good),
                    "-c", "copy", str(rotated)], check=True, capture_output=True, timeout=60)
    scanned = packets.scan(rotated)
    assert scanned.info == probe(rotated)
    assert scanned.info.rotation == angle


@pytest.mark.parametrize("preset", ["ultrafast", "superfast", "veryfast"])
@pytest.mark.parametrize("fps", ["30000/1001", "25", "60"])
def test_every_encoder_setting_frame_rate_and_speed_scans_clean(tmp_path, preset, fps):
    # B-frames (superfast and up) reorder presentation times; decode times must still rise.
    clip = tmp_path / "clip.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size=160x120:rate={fps}:duration=1.5", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", f"file:{clip}"], check=True)
    for k, speed in enumerate((0.951, 1.0, 1.046, 1.058)):
        out = _render(clip, tmp_path / f"o{k}.mp4", VariationParams(speed=speed, noise=1,
                                                                    noise_seed=k + 1), preset)
        scanned = packets.scan(out)
        assert scanned.audio_packets == 0 and scanned.keyframes >= 1, (preset, fps, speed)
        # The scan opens the file without FFmpeg's probing decode (its B-frame delay guess):
        # it still reads what a full probe reads.
        assert (scanned.info, scanned.facts) == verify.read_facts(out, out.name)


@pytest.mark.parametrize("count", [4, 64, 2000])
def test_bytes_changed_inside_a_keyframe_fail_the_scan(good, tmp_path, count):
    pos, size = _keyframe(good)
    bad = _damaged(good, tmp_path / "bad.mp4", pos + size // 3, min(count, size // 2))
    with pytest.raises(VerificationFailed) as err:
        packets.scan(bad, name="promo_v01.mp4")
    assert err.value.message.startswith("promo_v01.mp4 ")


def test_a_file_without_media_data_or_video_fails(good, tmp_path):
    with pytest.raises(VerificationFailed, match="cannot be opened"):
        packets.scan(_damaged(good, tmp_path / "head.mp4", 0, 64))
    audio = tmp_path / "audio.m4a"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac",
                    f"file:{audio}"], check=True)
    with pytest.raises(VerificationFailed, match="has no video stream"):
        packets.scan(audio)


def test_an_anamorphic_render_with_sound_scans_to_what_a_probe_reads(tmp_path):
    """The scan opens without FFmpeg's probing decode; the facts verification compares (sample
    aspect ratio, rates, sound, durations) are still those a full open reads."""
    source = tmp_path / "wide.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=240x180:rate=25:duration=1.5", "-f", "lavfi", "-i",
                    "sine=frequency=330:sample_rate=44100:duration=1.5", "-vf", "setsar=4/3",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-ac", "2",
                    "-shortest", f"file:{source}"], check=True)
    out = _render(source, tmp_path / "out.mp4", preset="superfast")
    scanned = packets.scan(out)
    assert scanned.audio_packets > 0 and scanned.info.sar != 1.0
    assert (scanned.info, scanned.facts) == verify.read_facts(out, out.name)


def test_opening_without_the_probing_decode_falls_back_for_program_streams(good, tmp_path):
    """MPEG program streams show no stream before FFmpeg probes them, so PyAV refuses options
    per stream: such a file is opened the usual way, not refused."""
    ps = tmp_path / "clip.mpg"
    subprocess.run([FFMPEG, "-v", "error", "-i", f"file:{good}", "-c:v", "mpeg2video",
                    "-c:a", "mp2", "-f", "vob", f"file:{ps}"], check=True)
    with verify.open_checked(ps, ps.name, probe_decode=False) as container:
        assert container.streams.video and container.streams.audio


def _packet(dts: int | None, pts: int | None, size: int = 10, key: bool = False) -> av.Packet:
    p = av.Packet(bytes(size))
    p.dts, p.pts, p.is_keyframe = dts, pts, key
    return p


def test_packet_rules():
    state = packets._Stream()
    packets._check_packet("x.mp4", _packet(0, 0, key=True), state, True)
    packets._check_packet("x.mp4", _packet(512, 1024), state, True)
    with pytest.raises(VerificationFailed, match="timestamps do not increase at packet 3"):
        packets._check_packet("x.mp4", _packet(512, 1536), state, True)
    with pytest.raises(VerificationFailed, match="carries no timestamp"):
        packets._check_packet("x.mp4", _packet(None, 2048), state, True)
    with pytest.raises(VerificationFailed, match="is empty"):
        packets._check_packet("x.mp4", _packet(2048, 2048, size=0), state, True)
    packets._check_packet("x.mp4", _packet(None, None, size=0), state, True)  # the flush packet
    assert state.packets == 2
    with pytest.raises(VerificationFailed, match="does not start with a keyframe"):
        packets._check_packet("x.mp4", _packet(0, 0), packets._Stream(), True)
    packets._check_packet("x.mp4", _packet(0, 0), packets._Stream(), False)  # audio


async def test_full_mode_catches_damage_between_keyframes_the_scan_does_not_decode(good, tmp_path):
    # What VR_VERIFY=full is for: a damaged frame the decoder skips under the default check.
    pos, size = _keyframe(good)
    bad = _damaged(good, tmp_path / "mid.mp4", pos + size + 200, 3000)
    with pytest.raises(VerificationFailed, match="does not decode cleanly"):
        await verify.decode(FFMPEG, bad, has_audio=True)


def test_vr_verify_setting():
    assert load_settings({}).verify == "sampled"
    assert load_settings({"VR_VERIFY": " Full "}).verify == "full"
    with pytest.raises(ConfigError, match="^VR_VERIFY: 'every' is not one of sampled, full"):
        load_settings({"VR_VERIFY": "every"})
