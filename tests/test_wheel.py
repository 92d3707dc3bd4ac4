"""The built wheel, installed the way a user installs it, works on its own.

The wheel is built from the checkout (``pip wheel --no-deps``, the backend from pyproject.toml)
and installed with its dependencies into a fresh virtual environment that knows nothing of the
checkout or of the project's own ``.venv`` (no editable finder, no ``PYTHONPATH``). Its console
script then serves from a folder outside the repository: the browser app with every file it
loads, and one job end to end. This is what ``pip install .`` and the Docker image get.
"""

from __future__ import annotations

import html.parser
import io
import os
import re
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from bench.service import wait_healthy
from tests.clips import make_clip
from tests.server import PASSWORD, ROOT, free_port, wait_job

# Hidden from the fresh environment: anything that would let it import the checkout or the
# project's .venv instead of the installed wheel.
HIDDEN = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


@dataclass
class Installed:
    wheel: Path
    venv: Path
    home: Path  # a scratch folder outside the repository, used as the working directory

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in HIDDEN and not k.startswith("VR_")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=self.home, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def _checked(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{done.args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    dist, home = base / "dist", base / "home"
    home.mkdir()
    inst = Installed(wheel=dist, venv=base / "venv", home=home)
    _checked(inst.run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                      "--wheel-dir", str(dist), str(ROOT), timeout=300))
    (inst.wheel,) = dist.glob("video_refresher-*.whl")
    # The base interpreter, not this .venv's site-packages (which holds the editable install).
    _checked(inst.run(sys.executable, "-m", "venv", str(inst.venv), timeout=120))
    _checked(inst.run(str(inst.bin / "pip"), "install", "--quiet", str(inst.wheel), timeout=600))
    return inst


def test_wheel_holds_both_packages_and_the_browser_app_but_not_bench(installed):
    with zipfile.ZipFile(installed.wheel) as zf:
        names = set(zf.namelist())
    tops = {n.split("/")[0] for n in names}
    assert tops == {"pipeline", "web", next(t for t in tops if t.endswith(".dist-info"))}, tops
    ui_files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ui").rglob("*") if p.is_file()}
    assert "ui/index.html" in ui_files
    missing = {f for f in ui_files if f"web/{f}" not in names}
    assert not missing, f"UI files not in the wheel: {sorted(missing)}"
    assert not any("__pycache__" in n for n in names)


def test_installed_wheel_imports_only_itself(installed):
    code = ("import importlib.util, pipeline, web, web.app, web.ui_files; "
            "print(pipeline.__file__); print(web.__file__); print(web.ui_files.UI_DIR); "
            "print(importlib.util.find_spec('bench'), importlib.util.find_spec('tests'))")
    out = _checked(installed.run(str(installed.bin / "python"), "-c", code)).stdout.split("\n")
    venv = installed.venv.resolve()
    for path in out[:3]:
        assert Path(path).resolve().is_relative_to(venv), f"{path} is not from the installed wheel"
    assert Path(out[2]).name == "ui" and (Path(out[2]) / "index.html").is_file()
    assert out[3] == "None None", "the wheel must not install bench/ or tests/"


class _Assets(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(a["src"])
        elif tag == "link" and "stylesheet" in (a.get("rel") or "").split() and a.get("href"):
            self.urls.append(a["href"])


# ``import … from "x"``, ``import "x"``, ``export … from "x"`` and ``import("x")``.
IMPORT = re.compile(r"""(?:\bimport|\bexport)\s*(?:[\w*{}\s,$]*?\bfrom\s*)?\(?\s*["']([^"']+)["']""")


def test_installed_wheel_serves_the_browser_app_and_runs_a_job(installed, tmp_path):
    clip = make_clip(tmp_path / "clips", "a.mp4", seconds=1.0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(installed.bin / "video-refresher"), "serve", "--port", str(port)],
            cwd=installed.home, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=installed.env(VR_PASSWORD=PASSWORD, VR_DATA_DIR=str(tmp_path / "data"),
                              VR_STOP_GRACE="3s"))
    try:
        wait_healthy(proc, url, log_path, timeout=60)
        with httpx.Client(base_url=url, timeout=60) as client:
            page = client.get("/")
            assert page.status_code == 200, page.text
            assert "text/html" in page.headers["content-type"]
            parser = _Assets()
            parser.feed(page.text)
            assert {u.rsplit(".", 1)[-1] for u in parser.urls} >= {"js", "css"}, parser.urls
            # Every file the page loads, ES module imports followed to the end.
            todo, seen = [urljoin(url + "/", u) for u in parser.urls], set()
            while todo:
                asset = todo.pop()
                if asset in seen or urlsplit(asset).netloc != urlsplit(url).netloc:
                    continue
                seen.add(asset)
                r = client.get(asset)
                assert r.status_code == 200, f"{asset}: {r.status_code}"
                if urlsplit(asset).path.endswith(".js"):
                    assert "javascript" in r.headers["content-type"], asset
                    todo += [urljoin(asset, m) for m in IMPORT.findall(r.text)]
            assert f"{url}/ui/js/app.js" in seen and len(seen) > 3, seen

            token = client.post("/api/auth", json={"password": PASSWORD}).json()["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            with open(clip, "rb") as fh:
                r = client.post("/api/jobs", data={"variations": "2"},
                                files={"videos": ("a.mp4", fh, "video/mp4")})
            assert r.status_code == 202, r.text
            job = wait_job(client, r.json()["jobId"])
            assert job["status"] == "completed", job
            z = client.get(f"/api/jobs/{job['id']}/download")
            assert z.status_code == 200
            names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
            assert "manifest.json" in names
            assert len([n for n in names if n.endswith(".mp4")]) == 2, names
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_installed_cli_refuses_a_web_package_shared_with_another(installed, tmp_path):
    """PyPI's web.py also installs a top-level ``web``: beside it the command says so in one
    line instead of running with mixed files."""
    site = Path(_checked(installed.run(
        str(installed.bin / "python"), "-c", "import web, os; print(os.path.dirname(web.__path__[0]))"
    )).stdout.strip())
    serve = (str(installed.bin / "video-refresher"), "serve", "--port", str(free_port()),
             "--data-dir", str(tmp_path / "data"))

    def refused(mentions: str) -> None:
        done = installed.run(*serve, timeout=30)
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and mentions in lines[0], done.stderr
        assert "virtual environment of its own" in lines[0]
        assert not (tmp_path / "data").exists()

    # Installed beside it: both own files in the one web/ folder.
    fake = site / "web.py-0.62.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: web.py\nVersion: 0.62\n")
    (fake / "RECORD").write_text("web/__init__.py,,\nweb/webapi.py,,\n")
    try:
        refused("web.py")
    finally:
        for f in fake.iterdir():
            f.unlink()
        fake.rmdir()
    # Its web/__init__.py written over ours.
    init = site / "web" / "__init__.py"
    ours = init.read_bytes()
    init.write_text('"""web.py: makes web apps."""\n')
    try:
        refused("another package")
    finally:
        init.write_bytes(ours)
