"""``Dockerfile`` and ``fly.toml`` agree with each other and with the code.

Docker cannot run in CI here, so the files are parsed (``tomllib`` for fly.toml, instruction
lines for the Dockerfile) and their essentials checked: the port, the data volume, the health
check path (a real route of the app), every ``VR_*`` name (a real setting), a non-root user, the
stop signal, no password in either file, and a normal (non-editable) install of the wheel in the
image (what that wheel holds and serves: tests/test_wheel.py).
"""

from __future__ import annotations

import re
import shlex
import time
import tomllib

import pytest

from pipeline.config import ENV_NAMES, Settings
from pipeline.service import Service
from tests.server import ROOT
from web.app import create_app
from web.auth import Auth

VR_NAME = re.compile(r"\bVR_[A-Z0-9_]+\b")


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continuation line"
    return out


def docker_env(instructions) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"use ENV KEY=value, not {rest!r}"
                env[key] = value
    return env


def only(instructions, word: str) -> list[str]:
    return [rest for w, rest in instructions if w == word]


def stages(instructions) -> list[list[tuple[str, str]]]:
    """The instructions split into build stages, each starting with its ``FROM``."""
    out: list[list[tuple[str, str]]] = []
    for word, rest in instructions:
        if word == "FROM":
            out.append([])
        assert out, "the Dockerfile must start with FROM"
        out[-1].append((word, rest))
    return out


def pip_commands(instructions) -> list[list[str]]:
    """Every ``pip …`` command of the ``RUN`` lines, split into words."""
    out = []
    for run in only(instructions, "RUN"):
        lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, "&&"]:
            if token in ("&&", "||", ";", "|", ">", "<"):
                if words[:1] == ["pip"] or words[:3] == ["python", "-m", "pip"]:
                    out.append(words[words.index("pip") + 1:])
                words = []
            else:
                words.append(token)
    return out


@pytest.fixture(scope="module")
def fly() -> dict:
    with open(ROOT / "fly.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> set[str]:
    service = Service(Settings(data_dir=tmp_path_factory.mktemp("deploy") / "data"))
    try:
        app = create_app(service, Auth("pw", b"k" * 32, 60.0, time.time))
        return {rule.rule for rule in app.url_map.iter_rules()}
    finally:
        service.close()


def test_dockerfile_base_user_signal_and_port():
    ins = dockerfile()
    for base in only(ins, "FROM"):
        assert re.fullmatch(r"python:3\.11-slim(\S*)?", base.split()[0])
    users = only(ins, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the service must not run as root"
    assert only(ins, "STOPSIGNAL") == ["SIGTERM"]
    env = docker_env(ins)
    assert only(ins, "EXPOSE") == [env["VR_PORT"]] == [str(Settings().port)]
    assert env["VR_HOST"] == "0.0.0.0"
    assert "VR_PASSWORD" not in env and "VR_SECRET" not in env
    cmd = only(ins, "CMD")[-1]
    assert "video-refresher" in cmd and "serve" in cmd


def test_dockerfile_installs_the_built_wheel_not_an_editable_checkout():
    ins = dockerfile()
    *builders, final = stages(ins)
    pips = pip_commands(ins)
    assert pips, "the image installs nothing with pip"
    for words in pips:
        assert "-e" not in words and "--editable" not in words, f"editable install: pip {words}"
    # A builder stage makes the wheel from the sources the wheel needs (bench/ is not one).
    assert builders, "build the wheel in a stage of its own"
    (build,) = [s for s in builders if any(w[:1] == ["wheel"] and "." in w for w in pip_commands(s))]
    build_name = build[0][1].split()[-1]
    copied = {w.rstrip("/") for c in only(build, "COPY") for w in shlex.split(c)[:-1]}
    assert {"pipeline", "web", "ui", "pyproject.toml", "README.md"} <= copied
    assert not copied & {"bench", "tests", "."}
    # The image takes only the wheel from it, no source folder, and installs it without -e.
    final_copies = only(final, "COPY")
    assert all(c.startswith(f"--from={build_name} ") or shlex.split(c)[0] == "pyproject.toml"
               for c in final_copies), final_copies
    installs = [w for w in pip_commands(final) if w[:1] == ["install"]]
    (wheel_install,) = [w for w in installs if any(a.endswith(".whl") for a in w)]
    assert "--no-deps" in wheel_install
    # Dependencies are installed before the wheel arrives, so that layer survives code changes.
    order = [(w, rest) for w, rest in final if w in ("RUN", "COPY")]
    deps_at = next(i for i, (w, rest) in enumerate(order) if w == "RUN" and "pip install -r" in rest)
    wheel_at = next(i for i, (w, rest) in enumerate(order) if rest.startswith(f"--from={build_name}"))
    assert deps_at < wheel_at


def test_dockerignore_keeps_what_the_wheel_needs():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "data"} <= ignored
    assert not ignored & {"pipeline", "web", "ui", "pyproject.toml", "README.md", "*"}


def test_dockerfile_healthcheck_uses_python_on_the_health_route(routes):
    (check,) = only(dockerfile(), "HEALTHCHECK")
    assert "CMD" in check and "python" in check and "curl" not in check
    path = re.search(r"/api/[a-z/]+", check).group(0)
    assert path == "/api/health" and path in routes


def test_fly_port_volume_and_checks_match_the_image(fly, routes):
    env = docker_env(dockerfile())
    assert fly["http_service"]["internal_port"] == int(env["VR_PORT"])
    (mount,) = fly["mounts"]
    assert mount["destination"] == fly["env"]["VR_DATA_DIR"] == env["VR_DATA_DIR"] == "/data"
    assert mount["initial_size"].lower() == "3gb"
    checks = fly["http_service"].get("checks", []) + [
        c for c in fly.get("checks", {}).values() if isinstance(c, dict)]
    assert checks and all(c["path"] in routes for c in checks)
    assert "/api/health" in {c["path"] for c in checks}


def test_fly_stops_gracefully(fly):
    assert fly.get("kill_signal", "SIGINT") == "SIGTERM"
    stop_grace = Settings().stop_grace
    if "VR_STOP_GRACE" in fly["env"]:
        from pipeline.config import parse_duration

        stop_grace = parse_duration(fly["env"]["VR_STOP_GRACE"])
    # Hypercorn's drain (3 s) + FFmpeg's grace + SIGTERM wait (2 s), with room to spare.
    assert fly["kill_timeout"] >= stop_grace + 10


def test_every_vr_name_is_a_setting_and_no_password_is_committed(fly):
    texts = {"Dockerfile": (ROOT / "Dockerfile").read_text(), "fly.toml": (ROOT / "fly.toml").read_text()}
    for name, text in texts.items():
        unknown = set(VR_NAME.findall(text)) - set(ENV_NAMES)
        assert not unknown, f"{name} uses names pipeline.config does not read: {sorted(unknown)}"
    assert "VR_PASSWORD" not in fly["env"] and "VR_SECRET" not in fly["env"]
    # Documented as a secret instead.
    assert "fly secrets set VR_PASSWORD" in texts["fly.toml"]
