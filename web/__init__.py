"""HTTP and WebSocket face of the service (Quart-Trio on Hypercorn)."""

from __future__ import annotations

import os
import re
import sys
from importlib.machinery import PathFinder
from pathlib import Path

# ``web`` and ``pipeline`` are generic top-level names (PyPI's web.py installs a ``web`` too), so
# the project is installed into an environment of its own (README, "Packaging"). The command
# line checks both before it starts (web/cli.py): this marker is gone when another package's
# ``web/__init__.py`` replaced this one.
DISTRIBUTION = "video-refresher"
# The top-level folders this distribution installs (`shared_with` looks for others in them).
_NAMES = ("web", "pipeline")
_PREFIXES = tuple(f"{name}/" for name in _NAMES)


def shared_with() -> list[str]:
    """Names of other installed distributions that put files into the ``web/`` or
    ``pipeline/`` folder this code runs from (empty in a sound installation).

    Every start runs it, so it reads the ``RECORD`` of each ``*.dist-info`` folder on
    ``sys.path`` as text (`_from_records`: 4 ms) and imports ``importlib.metadata`` (25 ms, an
    eighth of ``make`` 's start-up) only where some distribution is installed another way
    (`_from_metadata`)."""
    import pipeline

    ours = {Path(__file__).resolve().parent, Path(pipeline.__file__).resolve().parent}
    found = _from_records(ours)
    return sorted(found if found is not None else _from_metadata(ours))


def _from_records(ours: set[Path]) -> set[str] | None:
    """`shared_with` read off the ``*.dist-info/RECORD`` files of ``sys.path`` 's folders; None
    wherever ``importlib.metadata`` could see a distribution this does not read: one without a
    RECORD (an ``.egg-info``, an ``.egg``, a ``.dist-info`` without one), an archive on the
    path, or an import hook that lists distributions of its own. `_from_metadata` knows those."""
    if any(hasattr(finder, "find_distributions") and finder is not PathFinder
           for finder in sys.meta_path):
        return None
    others: set[str] = set()
    for entry in dict.fromkeys(sys.path):
        folder = entry or "."
        if folder.lower().rstrip("/").endswith(".egg"):
            return None
        try:
            with os.scandir(folder) as it:
                names = [e.name for e in it]
        except NotADirectoryError:
            return None  # a zip archive on the path
        except OSError:
            continue
        for name in names:
            low = name.lower()
            if low.endswith((".egg-info", ".egg")):
                return None
            if not low.endswith(".dist-info"):
                continue
            dist_info = Path(folder, name)
            try:
                # RECORD is CSV; a path is written as it is on disk, in quotes when it must be.
                record = (dist_info / "RECORD").read_text(encoding="utf-8",
                                                          errors="surrogateescape")
            except FileNotFoundError:
                return None
            except OSError:
                continue
            if not any((dist_info.parent / top).resolve() in ours for top in _tops(record)):
                continue
            dist = _metadata_name(dist_info) or name.partition("-")[0]
            if _canonical(dist) != DISTRIBUTION:
                others.add(dist)
    return others


def _metadata_name(folder: Path) -> str | None:
    """The ``Name:`` of a ``.dist-info`` folder's METADATA (its first header lines)."""
    try:
        with open(folder / "METADATA", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break
                if line.lower().startswith("name:"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _from_metadata(ours: set[Path]) -> set[str]:
    """`shared_with` through ``importlib.metadata``, for every kind of installed distribution:
    each one's ``RECORD`` searched as text first (building ``dist.files`` for all of them took
    40 ms), ``dist.files`` for one installed without a RECORD."""
    from importlib.metadata import distributions

    others = set()
    for dist in distributions():
        try:
            record = dist.read_text("RECORD")
            tops = _tops(record) if record is not None else {
                f.parts[0] for f in dist.files or () if f.parts[0] in _NAMES}
        except ValueError:  # a file list that is not text: not one this check can read
            continue
        if not tops:
            continue
        name = dist.metadata["Name"] or "?"
        if _canonical(name) == DISTRIBUTION:
            continue
        if any(Path(dist.locate_file(top)).resolve() in ours for top in tops):
            others.add(name)
    return others


def _tops(record: str) -> set[str]:
    """Which of ``web`` and ``pipeline`` a RECORD (CSV: a path in quotes where it must be)
    lists files in."""
    return {line.lstrip('"').partition("/")[0] for line in record.splitlines()
            if line.lstrip('"').startswith(_PREFIXES)}
