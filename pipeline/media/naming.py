"""Safe names for files and ZIP entries, derived from what clients send. Pure functions."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

_MAX_STEM = 80
_MAX_NAME = 200
# Punctuation a stem keeps besides letters, digits and combining marks (spaces too).
_SAFE_PUNCTUATION = frozenset("._-()[]+, ")
# Names Windows refuses for a file or folder, whatever the extension.
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                       *(f"{p}{n}" for p in ("COM", "LPT") for n in "123456789¹²³")})


def display_name(raw: str | None) -> str:
    """The client's file name as one line of display text: never cut short by what it holds.

    A path keeps its last component (after the last ``/``); control characters and line or
    paragraph separators become spaces (runs of white space collapse to one); bidi controls
    and other invisible format characters are dropped, so the name keeps the logical order it
    was typed in (U+202E would show "fdp.exe" as "exe.pdf"), never reordered. A name longer
    than 200 characters loses the end of its stem, keeping the extension. Nothing left →
    ``video`` (with the extension, if there was one).
    """
    name = (raw or "").split("/")[-1]
    out = []
    for ch in name:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp") or ch.isspace():
            out.append(" ")
        elif cat[0] != "C":
            out.append(ch)
    name = " ".join("".join(out).split())
    if name.startswith(".") and name.count(".") == 1 and len(name) > 1:
        name = "video" + name  # nothing but an extension was left: ".mp4" → "video.mp4"
    name = name.strip(" .")
    if len(name) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if stem and len(ext) <= 10 else ""
        name = name[:_MAX_NAME - len(ext)].rstrip(" .") + ext
    return name or "video"


def safe_stem(raw: str | None) -> str:
    """A file-system and ZIP safe stem (no extension, no separators, no dot-dot), in the
    name's logical order: letters of every script with their combining marks (Arabic
    harakat, Hebrew niqqud, Indic vowel signs), digits and ``._-()[]+,`` and spaces; anything
    else becomes ``_``. Never empty, never a name Windows refuses (``con`` → ``con_``), never
    ending in a space or a dot (Windows drops those).
    """
    name = unicodedata.normalize("NFC", display_name(raw))
    return _clean_stem(name.rsplit(".", 1)[0] if "." in name else name)


def safe_name(text: str) -> str:
    """Text (a job's name) as a safe file name stem, as ``safe_stem`` makes them, but without
    taking anything for a folder or an extension: slashes and dots are characters like others."""
    return _clean_stem(unicodedata.normalize("NFC", display_name(text.replace("/", "_"))))


def _clean_stem(stem: str) -> str:
    stem = "".join(ch if ch.isalnum() or ch in _SAFE_PUNCTUATION
                   or unicodedata.category(ch)[0] == "M" else "_" for ch in stem)
    stem = re.sub(r"_+", "_", stem).strip(" ._")
    while stem and unicodedata.category(stem[0])[0] == "M":  # a mark with nothing to sit on
        stem = stem[1:].strip(" ._")
    stem = stem[:_MAX_STEM].rstrip(" ._") or "video"
    first, dot, rest = stem.partition(".")
    if first.upper() in _RESERVED:
        stem = f"{first}_{dot}{rest}"
    return stem


def default_job_name(file_names: list[str]) -> str:
    """A job's name when it was not given one: its first file's name, and how many more."""
    if not file_names:
        return "job"
    more = len(file_names) - 1
    return display_name(file_names[0]) + (f" + {more}" if more else "")


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


def variation_file(stem: str, index: int, fmt: str = "source") -> str:
    """``<stem>_v01.mp4`` for variation index 0; ``<stem>_v01_9x16.mp4`` in format 9:16."""
    return f"{stem}_v{index + 1:02d}{format_suffix(fmt)}.mp4"


def format_suffix(fmt: str) -> str:
    """The file-name suffix of a placement format: ``_9x16``; none for the source's shape."""
    return "" if fmt == "source" else "_" + fmt.replace(":", "x")


# The source's contact strip, beside its variations in the video's output folder.
SOURCE_PREVIEW = "source.preview.jpg"


def preview_path(output: Path) -> Path:
    """Where a variation's contact strip lies: ``…/v01.mp4`` → ``…/v01.preview.jpg``."""
    return output.with_name(f"{output.name.split('.', 1)[0]}.preview.jpg")


def source_preview_path(output: Path) -> Path:
    """The source's strip, in the folder of its variation ``output``."""
    return output.with_name(SOURCE_PREVIEW)


def video_folder_files(outputs: list[Path]) -> set[str]:
    """The names a finished video's folder keeps: its outputs and their contact strips, and
    the source's strip (what the janitor does not treat as orphans)."""
    names = {p.name for p in outputs} | {preview_path(p).name for p in outputs}
    return names | {SOURCE_PREVIEW} if outputs else names
