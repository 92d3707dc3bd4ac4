"""Tapped frames hashed while FFmpeg writes them (pipeline/media/tapdigest.py)."""

from __future__ import annotations

import subprocess

import numpy as np
import trio

from pipeline.media import distinct, preview, tapdigest
from pipeline.media.distinct import Taps
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.tapdigest import TapDigest, TapDigests

SIZE = (64, 36)


def _frames(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w, h = SIZE
    return [rng.integers(0, 256, (h, w, 3), np.uint8) for _ in range(n)]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        x.quality == y.quality and np.array_equal(x.bits, y.bits) for x, y in zip(a, b, strict=True))


def test_whole_frames_only_and_the_same_result_as_reading_the_file_at_once(tmp_path):
    frames = _frames(7)
    raw = b"".join(f.tobytes() for f in frames)
    n = SIZE[0] * SIZE[1] * 3
    path = tmp_path / "v01.frames.part"
    digest = TapDigest(path, SIZE)
    assert digest.advance() == 0  # not written yet
    path.write_bytes(raw[: 2 * n + n // 2])  # two frames and half of the third
    assert digest.advance() == 2
    assert digest.advance() == 0
    with open(path, "ab") as fh:
        fh.write(raw[2 * n + n // 2:])
    done = digest.finish()
    assert done.frames == 7
    assert _same(done.hashes, distinct.frame_hashes(frames))
    assert done.strip == preview.contact_strip(frames)


def test_a_cut_short_or_missing_tap_says_how_many_frames_it_holds(tmp_path):
    frames = _frames(3)
    n = SIZE[0] * SIZE[1] * 3
    path = tmp_path / "v02.frames.part"
    path.write_bytes(b"".join(f.tobytes() for f in frames)[: 2 * n + 5])
    done = TapDigests().finish(path, SIZE)
    assert done.frames == 2 and done.strip == preview.contact_strip(frames[:2])
    missing = TapDigests().finish(tmp_path / "gone.frames.part", SIZE)
    assert (missing.frames, missing.hashes, missing.strip) == (0, (), None)
    assert TapDigests().finish(None, SIZE).frames == 0


def test_digests_follow_the_taps_of_each_render(tmp_path):
    digests = TapDigests()
    first = Taps((0.5, 1.5), SIZE, (tmp_path / "v01.frames.part",), tmp_path / "source.part")
    added = digests.add([first])
    assert [d.path for d in added] == [tmp_path / "v01.frames.part", tmp_path / "source.part"]
    frames = _frames(2)
    added[0].path.write_bytes(b"".join(f.tobytes() for f in frames))
    added[0].advance()
    # A re-roll at the same path starts over; another size is another tap.
    again = digests.add([Taps((0.5,), SIZE, (tmp_path / "v01.frames.part",))])
    assert again[0].offset == 0 and again[0] is not added[0]
    assert digests.finish(tmp_path / "v01.frames.part", (32, 18)).frames == 2 * 4


async def test_frames_are_hashed_while_ffmpeg_is_still_writing_them(tmp_path):
    # A tap that FFmpeg fills in real time (-re): 12 frames over about 3 s, each larger than
    # FFmpeg's 32 KiB write buffer (as real taps are), so they reach the file as they come.
    path = tmp_path / "v01.frames.part"
    size = w, h = 128, 96
    cmd = [find_ffmpeg(None), "-hide_banner", "-nostdin", "-v", "error", "-re",
           "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=4:duration=3",
           "-vf", "format=rgb24", "-f", "rawvideo", "-y", f"file:{path}"]
    digest = TapDigest(path, size)
    seen_during: list[int] = []
    async with trio.open_nursery() as nursery:
        proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL)
        scope = trio.CancelScope()

        async def follow() -> None:
            with scope:
                await tapdigest.follow([digest], interval=0.1)

        nursery.start_soon(follow)
        await proc.wait()
        seen_during.append(len(digest.hashes))
        scope.cancel()
    assert proc.returncode == 0
    done = digest.finish()
    assert 0 < seen_during[0] <= done.frames == 12
    frames = distinct.read_frames_file(path, size)
    assert _same(done.hashes, distinct.frame_hashes(frames))
    assert done.strip == preview.contact_strip(frames)
