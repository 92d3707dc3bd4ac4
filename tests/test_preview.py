"""Contact strips (pipeline/media/preview.py): pure, frames in, JPEG out."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.media import preview


def _frames(n: int, w: int = 320, h: int = 180) -> list[np.ndarray]:
    # Frame k is one flat colour, so where each lands in the strip can be read back.
    return [np.full((h, w, 3), (20 * k, 255 - 10 * k, 100), np.uint8) for k in range(n)]


def test_pick_spreads_frames_evenly():
    assert preview.pick(16) == [2, 6, 10, 14]
    assert preview.pick(7) == [0, 2, 4, 6]
    assert preview.pick(3) == [0, 1, 2]
    assert preview.pick(16, 3) == [2, 8, 13]
    assert preview.pick(0) == []


def test_strip_is_a_jpeg_of_four_frames_in_time_order():
    frames = _frames(16)
    data = preview.contact_strip(frames)
    assert data[:3] == b"\xff\xd8\xff"
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG" and im.mode == "RGB"
    assert im.size == (4 * 320 + 3 * preview.GAP, 180)
    pixels = np.asarray(im).astype(int)
    for slot, k in enumerate(preview.pick(16)):
        x = slot * (320 + preview.GAP) + 160
        assert np.abs(pixels[90, x] - frames[k][90, 160]).max() <= 6, (slot, k)
    gap = pixels[90, 320 + preview.GAP // 2]
    assert np.abs(gap - preview.BACKGROUND).max() <= 12


def test_short_portrait_and_bad_input():
    im = Image.open(io.BytesIO(preview.contact_strip(_frames(2, 320, 568))))
    assert im.size == (2 * 320 + preview.GAP, 568)
    with pytest.raises(ValueError):
        preview.contact_strip([])
    with pytest.raises(ValueError):
        preview.contact_strip([*_frames(1), *_frames(1, 160, 120)])
