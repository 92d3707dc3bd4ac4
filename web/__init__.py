"""HTTP and WebSocket face of the service (Quart-Trio on Hypercorn)."""

from __future__ import annotations

from importlib.metadata import Distribution, distributions
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

    Every start runs it, so each distribution's file list is searched as text first (`_tops`):
    building ``dist.files`` for all of them took 40 ms, a tenth of ``make`` 's start-up."""
    import pipeline

    ours = {Path(__file__).resolve().parent, Path(pipeline.__file__).resolve().parent}
    others = set()
    for dist in distributions():
        tops = _tops(dist)
        if not tops:
            continue
        name = dist.metadata["Name"] or "?"
        if name.lower().replace("_", "-") == DISTRIBUTION:
            continue
        if any(Path(dist.locate_file(top)).resolve() in ours for top in tops):
            others.add(name)
    return sorted(others)


def _tops(dist: Distribution) -> set[str]:
    """Which of ``web`` and ``pipeline`` the distribution installs files into: read off its
    ``RECORD`` as text, or ``dist.files`` for one installed without a RECORD."""
    record = dist.read_text("RECORD")
    if record is None:
        return {f.parts[0] for f in dist.files or () if f.parts[0] in _NAMES}
    return {line.partition("/")[0] for line in record.splitlines()
            if line.startswith(_PREFIXES)}
