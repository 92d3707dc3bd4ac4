"""Audio fingerprints (pipeline/media/fingerprint.py) on real FFmpeg renders of generated speech
and chords, and the `pitch` family's effect on them.

Speech comes from espeak-ng, which CI installs (.ci/run, scripts/ensure-chromium): without it
these tests fail, they do not skip, since tones alone would not show what a pitch shift does
to a voice.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.media import fingerprint as fp
from pipeline.media.command import build_render_command
from pipeline.media.effects import EffectOptions, expected_duration, sample_variations
from pipeline.media.encoder import Encoder
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import probe
from pipeline.media.verify import check_file, reference_for
from tests.clips import make_clip

FF = find_ffmpeg()

SPEECH = ("The quick brown fox jumps over the lazy dog. A video refresher renders seeded "
          "variations of every upload, so that each copy looks and sounds a little different "
          "from the others while telling the same story.")
OTHER_SPEECH = ("Meanwhile, in a small town by the sea, the fishermen counted their nets and "
                "talked about the weather, the price of diesel, and the football match on "
                "Sunday evening.")


def _chords(root: float, step: int, per_second: int) -> str:
    """An ``aevalsrc`` expression: triads whose root walks ``step`` semitones at a time."""
    def note(extra: int, gain: float) -> str:
        k = f"(mod(floor(t*{per_second})*{step},12)+{extra})"
        return f"{gain}*sin(2*PI*{root}*pow(2,{k}/12)*t)"
    return "+".join(note(e, g) for e, g in ((0, 0.15), (4, 0.12), (7, 0.1)))


CHORDS = _chords(220, 7, 2)
OTHER_CHORDS = _chords(196, 5, 3)


def _ffmpeg(*args: str) -> None:
    done = subprocess.run([FF, "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _espeak(text: str, out: Path) -> Path:
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.fail("espeak-ng is not installed: the fingerprint tests need it for speech "
                    "(apt-get install espeak-ng; scripts/ensure-chromium does it)")
    done = subprocess.run([binary, "-w", str(out), text], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and out.stat().st_size > 0, done.stderr
    return out


def _video(directory: Path, name: str, audio_input: list[str]) -> Path:
    """A small H.264 + AAC clip whose sound is ``audio_input`` (FFmpeg input options), as long
    as that sound."""
    out = directory / name
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", *audio_input,
            "-map", "0:v", "-map", "1:a", "-shortest", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "file:" + str(out))
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("fingerprint")
    speech = _espeak(SPEECH, d / "speech.wav")
    other = _espeak(OTHER_SPEECH, d / "other.wav")
    lavfi = ["-f", "lavfi", "-i"]
    return {
        "speech": _video(d, "speech.mp4", ["-i", "file:" + str(speech)]),
        "other": _video(d, "other.mp4", ["-i", "file:" + str(other)]),
        "chords": _video(d, "chords.mp4", [*lavfi, f"aevalsrc='{CHORDS}':s=44100:d=12"]),
        "other_chords": _video(d, "other_chords.mp4",
                               [*lavfi, f"aevalsrc='{OTHER_CHORDS}':s=44100:d=12"]),
    }


def _render(source: Path, variations, directory: Path) -> list[Path]:
    """Every variation rendered in one FFmpeg run, as the service does, each verified
    (duration source/speed, audio in sync with the picture)."""
    info = probe(source)
    outs = [directory / f"{source.stem}_v{i + 1:02d}.mp4" for i in range(len(variations))]
    args = build_render_command(FF, source, info, variations, outs, encoder=Encoder(threads=1))
    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    reference = reference_for(source, info)
    for v, out in zip(variations, outs, strict=True):
        check_file(out, reference, expected_duration(info.duration, v), v.speed)
    return outs


# --- on files ------------------------------------------------------------------------------


async def test_identical_audio_measures_one(media, tmp_path):
    a = await fp.fingerprint(FF, media["speech"])
    copy = tmp_path / "copy.mp4"
    shutil.copyfile(media["speech"], copy)
    b = await fp.fingerprint(FF, copy)
    assert a is not None and b is not None and a.dtype == np.uint32
    assert len(a) > 60  # about 11 s of speech, one item per 0.124 s after the first 2.3 s
    assert fp.similarity(a, b) >= 0.99


@pytest.mark.parametrize("x, y", [("speech", "other"), ("speech", "chords"),
                                  ("chords", "other_chords"), ("other", "other_chords")])
async def test_unrelated_audio_measures_low(media, x, y):
    score = fp.similarity(await fp.fingerprint(FF, media[x]), await fp.fingerprint(FF, media[y]))
    assert score is not None and score <= 0.65, score


async def test_no_audio_or_no_information_gives_none(tmp_path):
    silent = make_clip(tmp_path, "silent.mp4", seconds=3.0, audio=False)
    assert await fp.fingerprint(FF, silent) is None
    # tests/clips.py's steady 440 Hz tone: a fingerprint, but every item the same.
    tone = make_clip(tmp_path, "tone.mp4", seconds=6.0)
    items = await fp.fingerprint(FF, tone)
    assert items is not None and len(items) >= fp.MIN_OVERLAP
    assert fp.similarity(items, items) is None
    # Shorter than the analysis windows: no item at all.
    short = make_clip(tmp_path, "short.mp4", seconds=1.0)
    empty = await fp.fingerprint(FF, short)
    assert empty is not None and len(empty) == 0 and fp.similarity(empty, empty) is None


async def test_max_seconds_takes_the_start(media):
    whole = await fp.fingerprint(FF, media["speech"])
    start = await fp.fingerprint(FF, media["speech"], max_seconds=6.0)
    assert 20 <= len(start) < len(whole)
    assert fp.similarity(whole[:len(start)], start, max_shift=0) >= 0.99


async def test_fingerprint_as_an_extra_output_of_a_render(media, tmp_path):
    # The way a render adds it: a branch of the output's audio, mapped to one more output.
    out, raw = tmp_path / "out.mp4", tmp_path / "out.fp"
    _ffmpeg("-i", "file:" + str(media["speech"]), "-filter_complex",
            f"[0:a:0]atempo=1.03,asplit[a][f];[f]{fp.branch_filter()}[fp]",
            "-map", "0:v", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", "file:" + str(out),
            "-map", "[fp]", *fp.output_args(raw))
    tapped = fp.parse_raw(raw.read_bytes())
    decoded = await fp.fingerprint(FF, out)
    assert len(tapped) > 60
    # The same audio before and after the AAC encode.
    assert fp.similarity(tapped, decoded) >= 0.99


async def test_the_render_taps_every_fingerprint_and_its_files_do_not_change(media, tmp_path):
    """``quality.plan_taps`` on a source with sound: the render writes the source's fingerprint
    (identical to one taken from the file) and each variation's (within 0.01 of its encoded
    file's), its MP4s are byte-identical to a render without the taps, and ``audio_figures``
    gives the same figures from the taps as from the files."""
    from pipeline.media.quality import plan_taps

    source = media["speech"]
    info = probe(source)
    variations = sample_variations("fp-tap", 0, 2, PITCH)
    outs = [tmp_path / f"v{i + 1:02d}.mp4.part" for i in range(2)]
    plain = [tmp_path / f"plain{i}.mp4" for i in range(2)]
    taps = plan_taps(info, outs, tmp_path / "source.frames.part", tmp_path / "source.print.part")
    assert [p.name for p in taps.prints] == ["v01.print.part", "v02.print.part"]
    for targets, t in ((outs, taps), (plain, None)):
        done = subprocess.run(build_render_command(FF, source, info, variations, targets,
                                                   encoder=Encoder(threads=1), taps=t),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert [o.read_bytes() for o in outs] == [p.read_bytes() for p in plain]
    assert np.array_equal(fp.read_print(taps.source_print), await fp.fingerprint(FF, source))
    for out, tapped in zip(outs, taps.prints, strict=True):
        assert fp.similarity(fp.read_print(tapped), await fp.fingerprint(FF, out)) >= 0.99
    from_taps = await fp.audio_figures(FF, source, outs, tapped=taps.prints,
                                       source_tapped=taps.source_print)
    from_files = await fp.audio_figures(FF, source, outs)
    for a, b in zip(from_taps, from_files, strict=True):
        assert a["sourceSimilarity"] == pytest.approx(b["sourceSimilarity"], abs=0.01)
    # A tap that is missing or cut off falls back to the file.
    taps.prints[0].write_bytes(b"\0\0\0")
    assert fp.read_print(taps.prints[0]) is None and fp.read_print(tmp_path / "none") is None
    again = await fp.audio_figures(FF, source, outs, tapped=taps.prints,
                                   source_tapped=taps.source_print)
    assert again[0]["sourceSimilarity"] == from_files[0]["sourceSimilarity"]


# --- the variations ------------------------------------------------------------------------

PITCH = EffectOptions.parse("+pitch")


@pytest.mark.parametrize("name", ["speech", "chords"])
async def test_default_variations_stay_close_and_pitch_moves_them(media, tmp_path, name):
    """The default audio effects (tempo ±6 %, gain ±1 dB) leave a fingerprint close to the
    source's; the same variations with `+pitch` measure at least 0.1 lower."""
    pitched = sample_variations(f"fp-{name}", 0, 4, PITCH)
    plain = [replace(v, pitch=1.0) for v in pitched]
    assert all(v.pitch != 1.0 and v.speed != 1.0 for v in pitched)
    source = await fp.fingerprint(FF, media[name])
    outs = _render(media[name], [*plain, *pitched], tmp_path)
    scores = [fp.similarity(source, await fp.fingerprint(FF, out)) for out in outs]
    report = [f"speed {v.speed:.4f} gain {v.gain_db:+.2f} dB pitch {p.pitch:.4f}: "
              f"{a:.3f} -> {b:.3f}"
              for v, p, a, b in zip(plain, pitched, scores[:4], scores[4:], strict=True)]
    print(f"{name}:", *report, sep="\n  ")
    for line, a, b in zip(report, scores[:4], scores[4:], strict=True):
        assert a >= 0.75, line
        assert b <= a - 0.1, line


# --- the arrays ----------------------------------------------------------------------------


def _random_items(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.uint32)


def test_parse_raw_reads_host_order_words():
    items = np.array([1, 0xDEADBEEF, 2**32 - 1], dtype=np.uint32)
    assert fp.parse_raw(items.tobytes()).tolist() == items.tolist()
    assert fp.parse_raw(b"").dtype == np.uint32 and len(fp.parse_raw(b"")) == 0
    with pytest.raises(ValueError, match="4 bytes per item"):
        fp.parse_raw(b"\x01\x02\x03\x04\x05")


def test_output_args_name_files_as_file_urls():
    assert fp.output_args(Path("/data/concat:x.fp")) == [
        "-f", "chromaprint", "-fp_format", "raw", "file:/data/concat:x.fp"]
    assert fp.output_args("pipe:1")[-1] == "pipe:1"
    assert "s16" in fp.branch_filter() and "mono" in fp.branch_filter()


def test_shifted_copies_align():
    a = _random_items(200)
    assert fp.similarity(a, a) == 1.0
    # b starts 5 items later (its audio was cut at the start) or earlier (a was).
    assert fp.similarity(a, a[5:]) == 1.0
    assert fp.similarity(a[5:], a) == 1.0
    assert fp.similarity(a, a[5:], max_shift=4) < 0.6  # out of reach: random bits
    # A few flipped bits lower it by their share.
    b = a.copy()
    b[:100] ^= np.uint32(1)
    assert fp.similarity(a, b) == pytest.approx(1 - 100 / (200 * 32))
    assert fp.similarity(a, ~a, max_shift=0) == 0.0  # every bit wrong


def test_unrelated_items_score_about_half():
    score = fp.similarity(_random_items(500, 1), _random_items(500, 2))
    assert 0.48 < score < 0.53


def test_nothing_to_compare_gives_none():
    a = _random_items(100)
    empty = np.array([], dtype=np.uint32)
    assert fp.similarity(a, empty) is None and fp.similarity(empty, a) is None
    assert fp.similarity(a, a[: fp.MIN_OVERLAP - 1]) is None
    assert fp.similarity(a, a[: fp.MIN_OVERLAP]) == 1.0
    assert fp.similarity(a, np.full(100, 7, dtype=np.uint32)) is None  # silence, steady tone


def test_popcount_fallback_matches():
    words = _random_items(1000)
    expected = sum(bin(int(w)).count("1") for w in words)
    assert fp._popcount16()[words.view(np.uint16)].sum() == expected == fp._popcount(words)
    table = fp._popcount16()
    assert table.dtype == np.uint8 and len(table) == 1 << 16
    assert all(int(table[i]) == bin(i).count("1") for i in (0, 1, 2, 3, 255, 256, 4097, 65535))


def test_similarity_is_fast():
    a, b = _random_items(4800, 1), _random_items(4800, 2)  # ten minutes each
    started = time.perf_counter()
    for _ in range(10):
        fp.similarity(a, b)
    assert (time.perf_counter() - started) / 10 < 0.02


# --- the figures the API reports -------------------------------------------------------------


async def test_audio_figures_agree_with_separate_fingerprints(media, tmp_path):
    """``audio_figures`` gives each output its similarity to the source and to its most similar
    sibling, the same numbers as fingerprints taken one by one; a silent source gives None."""
    variations = sample_variations("fp-figures", 0, 3, PITCH)
    outs = _render(media["speech"], variations, tmp_path)
    figures = await fp.audio_figures(FF, media["speech"], outs)
    source = await fp.fingerprint(FF, media["speech"])
    prints = [await fp.fingerprint(FF, o) for o in outs]
    for i, f in enumerate(figures):
        assert f["metric"] == "chromaprint"
        assert f["sourceSimilarity"] == round(fp.similarity(source, prints[i]), 3)
        others = [fp.similarity(prints[i], p) for j, p in enumerate(prints) if j != i]
        assert f["siblingSimilarity"] == round(max(others), 3)
        assert f["sourceSimilarity"] < 0.75  # pitched: no longer the same recording
    silent = tmp_path / "silent.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:d=5", "-c:v", "libx264", "-preset",
            "ultrafast", "file:" + str(silent))
    assert await fp.audio_figures(FF, silent, outs[:2]) == [None, None]


async def test_the_job_api_reports_the_audio_figures_of_speech(media, tmp_path):
    """Through the real server: each output's ``distinctness.audio`` (taken off the render, from
    the sound its AAC encoder was given) is within 0.01 of the similarity an independent
    fingerprint of the downloaded file gives, and the same seed with `+pitch` measures at
    least 0.1 lower for every variation."""
    from tests.server import ServerProcess, wait_job

    srv = ServerProcess(tmp_path / "data").start()
    try:
        jobs = {}
        with srv.client() as c:
            for effects in ("", "+pitch"):
                files = [("videos", ("speech.mp4", media["speech"].read_bytes(), "video/mp4"))]
                r = c.post("/api/jobs", files=files,
                           data={"variations": "2", "seed": "voice", "effects": effects})
                jobs[effects] = wait_job(c, r.json()["jobId"])
            source = await fp.fingerprint(FF, media["speech"])
            figures = {}
            for effects, job in jobs.items():
                assert job["status"] == "completed", job
                figures[effects] = []
                for out in job["videos"][0]["outputs"]:
                    path = tmp_path / f"{effects or 'plain'}-{out['name']}"
                    path.write_bytes(c.get(out["url"]).content)
                    audio = out["distinctness"]["audio"]
                    assert audio["metric"] == "chromaprint"
                    assert audio["sourceSimilarity"] == pytest.approx(
                        fp.similarity(source, await fp.fingerprint(FF, path)), abs=0.01)
                    assert audio["siblingSimilarity"] is not None
                    figures[effects].append(audio["sourceSimilarity"])
    finally:
        srv.stop()
    for plain, pitched in zip(figures[""], figures["+pitch"], strict=True):
        assert plain >= 0.75 and pitched <= plain - 0.1, figures


async def test_a_fingerprint_that_fails_only_loses_its_figures(media, tmp_path):
    """FFmpeg failing on one file (here: a file that is not media) leaves that output's audio
    figures None and the others measured; a failing FFmpeg for all leaves them all None, and
    nothing is raised (the variations are still delivered)."""
    outs = _render(media["speech"], sample_variations("fp-fail", 0, 2, PITCH), tmp_path)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not media at all" * 100)
    figures = await fp.audio_figures(FF, media["speech"], [outs[0], broken, outs[1]])
    assert figures[0]["sourceSimilarity"] is not None and figures[2]["sourceSimilarity"] is not None
    assert figures[1]["sourceSimilarity"] is None and figures[1]["siblingSimilarity"] is None
    assert await fp.audio_figures("false", media["speech"], outs) == [None, None]
