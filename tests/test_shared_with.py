"""The command line's install check (``web.shared_with``): another distribution's files in our
``web/`` or ``pipeline/`` folder are found whichever way it was installed, and the fast read of
``*.dist-info/RECORD`` files agrees with ``importlib.metadata``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import web

CHECKOUT_WEB = Path(web.__file__).resolve().parent
OURS = {CHECKOUT_WEB}


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A folder on ``sys.path`` whose ``web`` is this code's ``web`` folder (a link), as a
    site-packages folder that another distribution also installed into would be."""
    (tmp_path / "web").symlink_to(CHECKOUT_WEB, target_is_directory=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _dist_info(site: Path, folder: str, name: str, record: str) -> None:
    d = site / folder
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1\n\nName: no\n")
    (d / "RECORD").write_text(record)


def test_nothing_is_shared_in_the_projects_own_environment():
    assert web.shared_with() == []
    assert web._from_records(OURS) == web._from_metadata(OURS) == set()


def test_a_wheel_installed_into_the_same_web_folder_is_named(site):
    _dist_info(site, "web.py-0.62.dist-info", "web.py", "web/__init__.py,,\nweb/webapi.py,,\n")
    _dist_info(site, "other_tool-2.0.dist-info", "other-tool", "other_tool/__init__.py,,\n")
    # Our own distribution's RECORD names the folder too, and does not count.
    _dist_info(site, "video_refresher-0.1.0.dist-info", "video-refresher", "web/app.py,,\n")
    assert web._from_records(OURS) == web._from_metadata(OURS) == {"web.py"}
    assert web.shared_with() == ["web.py"]


def test_a_distribution_without_a_record_is_read_through_importlib_metadata(site):
    egg = site / "Legacy.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: Legacy\nVersion: 1\n")
    (egg / "SOURCES.txt").write_text("setup.py\nweb/__init__.py\n")
    assert web._from_records(OURS) is None
    assert web.shared_with() == ["Legacy"]

    bare = site / "norecord-1.dist-info"
    bare.mkdir()
    (bare / "METADATA").write_text("Metadata-Version: 2.1\nName: norecord\nVersion: 1\n")
    egg.joinpath("SOURCES.txt").write_text("setup.py\n")
    assert web._from_records(OURS) is None
    assert web.shared_with() == []


def test_the_fast_read_agrees_with_importlib_metadata_on_odd_listings(site):
    """Folder names in capitals, quoted RECORD paths, a RECORD that is not UTF-8: the same
    answer as ``importlib.metadata``, and no crash at start-up."""
    _dist_info(site, "Shouty-1.0.DIST-INFO", "Shouty", '"web/a,b.py",,\n')
    odd = site / "latin-1.dist-info"
    odd.mkdir()
    (odd / "METADATA").write_text("Metadata-Version: 2.1\nName: latin\nVersion: 1\n")
    (odd / "RECORD").write_bytes(b"latin/caf\xe9.py,,\n")
    assert web._from_records(OURS) == web._from_metadata(OURS) == {"Shouty"}
    assert web.shared_with() == ["Shouty"]


def test_an_unpacked_egg_on_the_path_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    egg = tmp_path / "legacy-1.0-py3.11.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: legacy\nVersion: 1\n")
    (egg / "EGG-INFO" / "SOURCES.txt").write_text("web/__init__.py\n")
    (egg / "web").symlink_to(CHECKOUT_WEB, target_is_directory=True)
    monkeypatch.syspath_prepend(str(egg))
    assert web._from_records(OURS) is None
    assert web.shared_with() == ["legacy"]


def test_an_import_hook_that_lists_distributions_is_left_to_importlib_metadata(monkeypatch):
    class Finder:
        @staticmethod
        def find_spec(*_args):
            return None

        @staticmethod
        def find_distributions(*_args, **_kwargs):
            return iter(())

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert web._from_records(OURS) is None
    assert web.shared_with() == []


def test_the_command_line_starts_without_importlib_metadata():
    """What the fast read is for: ``importlib.metadata`` costs 25 ms to import."""
    code = ("import sys, web.cli, pipeline.make; assert web.cli._foreign_install() is None; "
            "print('importlib.metadata' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=CHECKOUT_WEB.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
