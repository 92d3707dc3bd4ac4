"""The browser app's files: ``/`` and ``/ui/<path>`` (public; the app logs in by itself)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from quart import Blueprint, send_from_directory
from werkzeug.exceptions import NotFound

bp = Blueprint("ui", __name__)


def _find_ui() -> Path:
    """The browser app's folder: ``web/ui`` in an installed wheel (pyproject.toml puts ``ui/``
    there), else ``ui/`` beside ``web/`` in a source checkout or an editable install.
    ``send_from_directory`` needs a real directory, which a wheel installed on disk is."""
    candidates = [Path(str(importlib.resources.files(__package__) / "ui")),
                  Path(__file__).resolve().parent.parent / "ui"]
    for folder in candidates:
        if (folder / "index.html").is_file():
            return folder.resolve()
    raise RuntimeError("the browser app is missing from this installation (looked in "
                       + ", ".join(map(str, candidates)) + ")")


UI_DIR = _find_ui()


@bp.get("/")
async def index():
    return await send_from_directory(UI_DIR, "index.html")


@bp.get("/ui/<path:path>")
async def ui_file(path: str):
    try:
        return await send_from_directory(UI_DIR, path)
    except OSError:  # a name the file system cannot even look up (too long): nothing is there
        raise NotFound() from None
