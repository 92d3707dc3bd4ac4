from __future__ import annotations

import pytest

from tests.clips import make_clip
from tests.server import ServerProcess
from tests.ui_helpers import ConsoleWatch, launch


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Tiny generated clips shared by the whole session."""
    d = tmp_path_factory.mktemp("clips")
    return {
        "a": make_clip(d, "a.mp4", seconds=1.0),
        "b": make_clip(d, "b.mov", seconds=1.0, audio=False),
    }


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path):
    """Factory for servers with custom environment; all are stopped at the end."""
    started: list[ServerProcess] = []

    def factory(env: dict | None = None, data_dir=None) -> ServerProcess:
        srv = ServerProcess(data_dir or tmp_path / "data", env=env or {}).start()
        started.append(srv)
        return srv

    yield factory
    for s in started:
        s.stop()


# -- the browser tests' shared parts (each module gives its own ``context``) -------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def console():
    return ConsoleWatch()


@pytest.fixture
def page(context, console):
    """A page of the module's ``context`` that fails its test on an unexpected console error."""
    pg = context.new_page()
    console.attach(pg)
    yield pg
    unexpected = console.unexpected()
    assert not unexpected, "console errors:\n" + "\n".join(unexpected)
