"""Helpers for the browser tests: Debian's Chromium through Playwright, console watching."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UI_DIR = ROOT / "ui"
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 812}

# Strings that must never appear in the app's code: DOM is built with createElement/textContent.
FORBIDDEN_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write")


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@dataclass
class ConsoleWatch:
    """Collects console errors, uncaught exceptions and CSP violations of a page."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _on_console(self, msg) -> None:
        if msg.type in ("error", "assert"):
            location = msg.location or {}
            self.errors.append(f"{msg.text} ({location.get('url', '')})")
        elif msg.type == "warning" and "Content Security Policy" in msg.text:
            self.errors.append(msg.text)

    def allow(self, pattern: str) -> None:
        """An error this test provokes on purpose (e.g. the browser logging a 401 response)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


def source_files() -> list[Path]:
    return sorted(p for p in UI_DIR.rglob("*") if p.suffix in {".js", ".html", ".css"})


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    return path
