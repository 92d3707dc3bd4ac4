"""Safe names for files and ZIP entries, derived from what clients send. Pure functions."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[^\w.\- ()\[\]+,]+", re.UNICODE)
_MAX_STEM = 80


def display_name(raw: str | None) -> str:
    """The client's file name, reduced to a single printable path component for display."""
    name = (raw or "").replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".")
    return name[:200] or "video"


def safe_stem(raw: str | None) -> str:
    """A file-system and ZIP safe stem (no extension, no separators, no dot-dot)."""
    name = unicodedata.normalize("NFC", display_name(raw))
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = _UNSAFE.sub("_", stem).strip(" ._")
    stem = re.sub(r"_+", "_", stem)
    return stem[:_MAX_STEM] or "video"


def unique_stems(raws: list[str]) -> list[str]:
    """Safe stems for several sources, made unique case-insensitively (``a``, ``a_2``, ...)."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in raws:
        base = safe_stem(raw)
        stem, n = base, 1
        while stem.lower() in seen:
            n += 1
            stem = f"{base}_{n}"
        seen.add(stem.lower())
        out.append(stem)
    return out


def variation_file(stem: str, index: int) -> str:
    """``<stem>_v01.mp4`` for variation index 0."""
    return f"{stem}_v{index + 1:02d}.mp4"
