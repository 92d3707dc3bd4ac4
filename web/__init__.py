"""HTTP and WebSocket face of the service (Quart-Trio on Hypercorn)."""

from __future__ import annotations

from importlib.metadata import distributions
from pathlib import Path

# ``web`` and ``pipeline`` are generic top-level names (PyPI's web.py installs a ``web`` too), so
# the project is installed into an environment of its own (README, "Packaging"). The command
# line checks both before it starts (web/cli.py): this marker is gone when another package's
# ``web/__init__.py`` replaced this one.
DISTRIBUTION = "video-refresher"


def shared_with() -> list[str]:
    """Names of other installed distributions that put files into the ``web/`` or
    ``pipeline/`` folder this code runs from (empty in a sound installation)."""
    import pipeline

    ours = {Path(__file__).resolve().parent, Path(pipeline.__file__).resolve().parent}
    others = set()
    for dist in distributions():
        name = dist.metadata["Name"] or "?"
        if name.lower().replace("_", "-") == DISTRIBUTION:
            continue
        tops = {f.parts[0] for f in dist.files or () if f.parts[0] in ("web", "pipeline")}
        if any(Path(dist.locate_file(top)).resolve() in ours for top in tops):
            others.add(name)
    return sorted(others)
