"""Preview contact strips: a few frames of a file side by side, as one JPEG.

The frames are the ones the render tapped for the distinctness measure
(``pipeline.media.distinct.Taps``: RGB, ``TAP_WIDTH`` wide), so a strip costs no decode. The
runner writes one per variation (``v01.mp4`` → ``v01.preview.jpg``) and one for the source
(``source.preview.jpg``) beside the outputs.

Pure: frames in, bytes out.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

STRIP_FRAMES = 4
GAP = 4  # pixels between frames
BACKGROUND = (24, 24, 24)
JPEG_QUALITY = 82


def pick(count: int, wanted: int = STRIP_FRAMES) -> list[int]:
    """Indices of ``wanted`` frames spread evenly over ``count`` (the middles of equal
    slices: frames 2, 6, 10, 14 of 16); all of them when there are no more than that."""
    if count <= wanted:
        return list(range(count))
    return [int((k + 0.5) * count / wanted) for k in range(wanted)]


def contact_strip(frames: Sequence[np.ndarray], wanted: int = STRIP_FRAMES) -> bytes:
    """A JPEG of ``wanted`` of ``frames`` (``h×w×3`` uint8 RGB, all one size) in a row, left to
    right in time order, ``GAP`` pixels apart. Raises ``ValueError`` without frames."""
    if not frames:
        raise ValueError("a contact strip needs at least one frame")
    chosen = [frames[k] for k in pick(len(frames), wanted)]
    h, w = chosen[0].shape[:2]
    if any(f.shape != (h, w, 3) for f in chosen):
        raise ValueError("every frame of a contact strip must be h×w×3 of one size")
    strip = Image.new("RGB", (len(chosen) * w + (len(chosen) - 1) * GAP, h), BACKGROUND)
    for k, frame in enumerate(chosen):
        strip.paste(Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB"),
                    (k * (w + GAP), 0))
    out = io.BytesIO()
    strip.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
