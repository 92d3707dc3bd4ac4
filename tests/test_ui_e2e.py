"""End-to-end tests of the browser app: Debian's Chromium (headless) against a real server.

One server and one browser for the module; a fresh browser context (so a fresh localStorage)
per test. Every test fails if the page logs an unexpected console error. Screenshots of each
view are written to docs/screenshots/ on every run.
"""

from __future__ import annotations

import json
import random
import re
import time
import zipfile
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.clips import make_clip, make_damaged_clip, make_encoded_clip, make_text_file_as_mp4
from tests.server import PASSWORD, ServerProcess, wait_for, wait_job
from tests.ui_helpers import (
    DESKTOP,
    FORBIDDEN_SINKS,
    PHONE,
    screenshot,
    source_files,
)

# Waits in the browser (ms). Tiny clips render in a second or two.
RENDER_TIMEOUT = 45_000
UNAUTHORIZED_LOG = r"status of 401"
# The job page's verdict for a video whose variations all pass Meta's PDQ matcher.
VERDICT_GOOD = re.compile(
    r"^(The variation differs|All \d+ variations differ) from the original for Meta's PDQ "
    r"matcher \(0 of \d+ frames match\)\.$")
NOT_A_VIDEO = "Not a video file (MP4, MOV, WebM, MKV, AVI…)"


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("ui") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A second server with a lower file limit, for the upload form's limits from /api/health."""
    srv = ServerProcess(tmp_path_factory.mktemp("ui-small") / "data",
                        env={"VR_MAX_FILES": "2", "VR_MAX_UPLOAD": "1MB"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("ui-clips")
    return {
        "a": make_clip(d, "a.mp4", seconds=1.0, size="160x120"),
        "b": make_clip(d, "b.mov", seconds=1.0, size="160x120", audio=False),
        # Long enough to still be rendering when Cancel is clicked.
        "long": make_clip(d, "long.mp4", seconds=8.0, size="640x360", fps=25),
        # Probes as a video, then runs out of data while rendering: fails, retryable.
        "damaged": make_damaged_clip(d, "damaged.mp4"),
        # Binary noise named .mp4: nothing in the browser can tell, the server's probe refuses it.
        "noise_mp4": _write(d / "noise.mp4", random.Random(12).randbytes(20_000)),
        "text": _write(d / "notes.txt", b"not a video\n"),
    }


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.fixture
def context(browser, server):
    ctx = browser.new_context(base_url=server.url, viewport=DESKTOP, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture
def api(server):
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def completed_job(server, media):
    """A finished job made through the API (for the history and phone tests)."""
    with server.client() as client:
        with open(media["a"], "rb") as a:
            r = client.post("/api/jobs", files=[("videos", ("a.mp4", a, "video/mp4"))],
                            data={"variations": "2"})
        assert r.status_code == 202, r.text
        return wait_job(client, r.json()["jobId"], timeout=60)


def login(page, password: str = PASSWORD) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"#/login$"))
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"#/upload$"))
    expect(page.get_by_role("heading", name="New upload")).to_be_visible()


def job_badge(page):
    return page.locator(".job-head .badge")


def check_distinctness(card, video: dict) -> None:
    """The card's verdict says in words what the API's PDQ figures say, and each variation's
    tile shows its strip, its effects in words and its figures, plays in place and downloads
    alone."""
    outputs = video["outputs"]
    frames = sum(o["distinctness"]["video"]["frames"] for o in outputs)
    hits = sum(o["distinctness"]["video"]["sourceMatches"] for o in outputs)
    verdict = card.get_by_test_id("verdict")
    expect(verdict).to_be_visible()
    assert hits == 0, outputs  # default effects on a textured clip: no frame matches
    expect(verdict.locator(".verdict-video")).to_have_text(VERDICT_GOOD)
    expect(verdict.locator(".verdict-video")).to_contain_text(f"(0 of {frames} frames match)")
    expect(verdict).to_have_attribute("data-level", "good")
    sims = [o["distinctness"]["audio"]["sourceSimilarity"] for o in outputs
            if o["distinctness"]["audio"] and o["distinctness"]["audio"]["sourceSimilarity"] is not None]
    if sims:
        expect(verdict.locator(".verdict-audio")).to_contain_text(f"{max(sims):.2f}")
    else:  # a steady tone has no fingerprint to compare
        expect(verdict.locator(".verdict-audio")).to_be_hidden()
    tiles = card.get_by_test_id("variation")
    expect(tiles).to_have_count(len(outputs))
    for tile, out in zip(tiles.all(), outputs, strict=True):
        expect(tile).to_contain_text(out["name"])
        expect(tile.locator(".tile-effects")).to_have_text(" · ".join(out["effects"]))
        expect(tile.locator(".tile-figures")).to_contain_text(
            f"PDQ {out['distinctness']['video']['sourceDistance']} from the original")
        link = tile.get_by_role("link", name=f"Download {out['name']}")
        assert link.get_attribute("href").startswith(f"{out['url']}?download=1&token=")
    strips = card.locator("img.strip")
    expect(strips).to_have_count(len(outputs) + 1)  # the original's and each variation's
    for img in strips.all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True)
        assert img.evaluate("i => i.naturalWidth") >= 320
        assert_strip_kept_its_shape(img)


def assert_strip_kept_its_shape(img) -> None:
    """The room a strip's <img> kept before it loaded (its width and height) has the shape of
    the strip that came (the page does not jump as strips load)."""
    kept = img.evaluate("""i => i.getAttribute("height") / i.getAttribute("width")
        * i.naturalWidth / i.naturalHeight""")
    assert abs(kept - 1) < 0.02, kept


def play_first_variation(card) -> None:
    """A click on a variation's strip plays it in place (a real <video> on the file's URL)."""
    tile = card.get_by_test_id("variation").first
    tile.get_by_role("button", name=re.compile("^Play ")).click()
    player = tile.locator("video")
    expect(player).to_be_visible()
    assert "/outputs/1?token=" in player.get_attribute("src")
    player.evaluate("v => { v.muted = true; return v.play().catch(() => null); }")
    expect(player).to_have_js_property("readyState", 4, timeout=10_000)
    assert player.evaluate("v => v.duration") > 0
    # Escape stops it and puts the strip back, the focus on it; it plays again from there.
    player.focus()
    player.press("Escape")
    expect(tile.locator("video")).to_have_count(0)
    play = tile.get_by_role("button", name=re.compile("^Play "))
    expect(play).to_be_focused()
    play.press("Enter")
    expect(tile.locator("video")).to_be_visible()


def no_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@contextmanager
def fitted_page(browser, server, console, **context_options):
    """A logged-in page in a browser context of its own (``context_options``: the viewport …),
    its upload form checked to fit the window; no console error by the end of the block."""
    ctx = browser.new_context(base_url=server.url, **context_options)
    try:
        page = ctx.new_page()
        console.attach(page)
        login(page)
        assert_upload_form_fits(page)
        yield page
    finally:
        ctx.close()
    unexpected = console.unexpected()
    assert not unexpected, unexpected


def assert_upload_form_fits(page) -> None:
    """The whole upload form, its placements and loudness list included (drawn once the
    server's answer is in), fits the window: a phone's 375 px page was 409 px wide."""
    expect(page.get_by_label("Loudness")).to_be_visible()
    expect(page.get_by_text("Reels, Stories, TikTok, Shorts")).to_be_visible()
    assert no_overflow(page)


def set_visibility(page, state: str) -> None:
    """Pretend the tab went to the background (or came back): Page Visibility API."""
    page.evaluate("""state => {
        Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
        Object.defineProperty(document, "hidden", {configurable: true, get: () => state === "hidden"});
        document.dispatchEvent(new Event("visibilitychange"));
    }""", state)


def fake_job(status: str, video_status: str, progress: float) -> dict:
    """A job in the shape of ``GET /api/jobs/{id}`` (web/views.py ``job_json``)."""
    done = video_status == "completed"
    return {
        "id": "jfake", "status": status, "createdAt": "2030-01-01T10:00:00Z",
        "startedAt": "2030-01-01T10:00:01Z", "completedAt": None, "expiresAt": None,
        "variationsPerVideo": 3, "seed": "s", "excludedEffects": [], "progress": progress,
        "counts": {video_status: 1},
        "videos": [{
            "id": "vfake", "name": "fake.mp4", "size": 123456, "duration": 2.0,
            "status": video_status, "progress": progress, "error": None, "attempts": 1,
            "retryable": False,
            "outputs": [{"index": i, "name": f"fake_v0{i + 1}.mp4", "size": 1000, "duration": 2.0}
                        for i in range(3)] if done else [],
        }],
    }


# -- source rules ---------------------------------------------------------------------------


def test_source_builds_dom_without_html_strings():
    files = source_files()
    assert any(p.name == "app.js" for p in files) and any(p.name == "index.html" for p in files)
    offenders = [
        f"{p.relative_to(p.parents[2])}: {sink}"
        for p in files
        if p.suffix in {".js", ".html"}
        for sink in FORBIDDEN_SINKS
        if sink in p.read_text(encoding="utf-8")
    ]
    assert not offenders, offenders
    for p in files:
        text = p.read_text(encoding="utf-8")
        assert not re.search(r"wasm", text, re.I), f"{p.name} mentions wasm"
        if p.suffix == ".html":
            # CSP: no inline scripts, styles or handlers; assets under /ui/.
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), p.name
            assert not re.search(r"<style|\sstyle=|\son[a-z]+=", text, re.I), p.name
            for ref in re.findall(r'(?:src|href)="([^"#][^"]*)"', text):
                assert ref.startswith("/ui/") or ref.startswith("data:"), ref
        if p.suffix == ".js":
            assert "eval(" not in text and "new Function" not in text, p.name


# -- login ----------------------------------------------------------------------------------


def test_login_wrong_password_then_right_one(page, console, server):
    console.allow(UNAUTHORIZED_LOG)  # Chromium logs the wrong password's 401 response
    page.goto("/")
    expect(page).to_have_url(re.compile(r"#/login$"))
    expect(page.get_by_role("link", name="History")).to_have_count(0)
    screenshot(page, "login")

    page.fill("#password", "not the password")
    page.get_by_role("button", name="Log in").click()
    error = page.locator("#login-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not right")
    expect(page).to_have_url(re.compile(r"#/login$"))

    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/upload$"))
    token = page.evaluate("localStorage.getItem('vr.token')")
    assert token and "." in token
    for name in ("New upload", "History"):
        expect(page.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # A reload keeps the session; logging out ends it.
    page.reload()
    expect(page.get_by_role("heading", name="New upload")).to_be_visible()
    token = page.evaluate("localStorage.getItem('vr.token')")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"#/login$"))
    assert page.evaluate("localStorage.getItem('vr.token')") is None
    # The session ended on the server too: the token (and its links) no longer work.
    wait_for(lambda: httpx.get(f"{server.url}/api/jobs", headers={
        "Authorization": f"Bearer {token}"}).status_code == 401, timeout=5)


def test_login_rate_limited_shows_retry_message(page, console):
    """Too many wrong passwords: the note from before ("You have logged out.") goes, and the
    wait counts down each second with the button held (it said "55 seconds" for good)."""
    console.allow(r"status of 429")
    login(page)
    page.get_by_role("button", name="Log out").click()
    logged_out = page.get_by_text("You have logged out.")
    expect(logged_out).to_be_visible()
    tries = []

    def refuse(route):
        tries.append(route.request.url)
        route.fulfill(status=429, content_type="application/json", headers={"Retry-After": "4"},
                      body=json.dumps({"error": {"code": "too_many_attempts", "message":
                                                 "Too many wrong passwords. Try again in 4 seconds."}}))

    page.route("**/api/auth", refuse)
    page.fill("#password", "guess")
    button = page.get_by_role("button", name="Log in")
    button.click()
    error = page.locator("#login-error")
    expect(error).to_have_text("Too many wrong passwords. Try again in 4 seconds.")
    expect(logged_out).to_be_hidden()
    expect(button).to_be_disabled()
    page.keyboard.press("Enter")  # held: no other try
    expect(error).to_have_text("Too many wrong passwords. Try again in 3 seconds.")
    expect(error).to_have_text("Too many wrong passwords. Try again in 1 second.", timeout=3_000)
    expect(error).to_have_text("You can try again now.", timeout=2_000)
    expect(button).to_be_enabled()
    assert len(tries) == 1


def test_expired_session_goes_back_to_login(page, console):
    console.allow(UNAUTHORIZED_LOG)
    login(page)
    # The server no longer accepts the token (expired, or the secret changed).
    page.evaluate("localStorage.setItem('vr.token', 'eyJleHAiOjF9.forged')")
    page.get_by_role("link", name="History").click()
    expect(page).to_have_url(re.compile(r"#/login$"))
    expect(page.get_by_role("status")).to_contain_text("Your session has expired")
    expect(page.get_by_role("link", name="History")).to_have_count(0)

    # Logging in again goes back to where the session ran out.
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"#/history$"))
    # A token past its expiry time is dropped without asking the server.
    page.evaluate("localStorage.setItem('vr.expiresAt', '2000-01-01T00:00:00Z')")
    page.goto("/#/upload")  # another route: the same hash would not navigate
    expect(page).to_have_url(re.compile(r"#/login$"))
    expect(page.get_by_role("status")).to_contain_text("Your session has expired")


# -- upload, live progress, download --------------------------------------------------------


def test_upload_two_videos_live_progress_and_zip(page, context, console, media, api, tmp_path):
    login(page)
    page.evaluate("window.__noReload = true")

    # The file input is a real, keyboard-reachable control.
    for _ in range(12):
        if page.evaluate("document.activeElement && document.activeElement.id") == "files":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "files"

    page.set_input_files("#files", [media["a"], media["b"], media["text"]])
    items = page.locator(".file-item")
    expect(items).to_have_count(3)
    bad = page.locator(".file-item", has_text="notes.txt")
    expect(bad).to_contain_text(NOT_A_VIDEO)
    submit = page.get_by_role("button", name="Upload and start")
    expect(submit).to_be_disabled()
    page.get_by_role("button", name="Remove notes.txt").click()
    expect(items).to_have_count(2)
    expect(submit).to_be_enabled()
    for clip in (media["a"], media["b"]):
        row = page.locator(".file-item", has_text=clip.name)
        expect(row).to_contain_text(re.compile(r"\d+(\.\d)? KB"))
    expect(page.locator("#variations")).to_have_value("5")
    page.fill("#variations", "2")
    page.check("#no-mirror")
    page.get_by_label("Small tilt").check()  # the opt-in rotation; hue stays off
    screenshot(page, "upload")

    # Each file goes up on its own as a resumable (tus) upload, then one JSON request makes the
    # job from them.
    with page.expect_request(lambda r: r.url.endswith("/api/jobs") and r.method == "POST") as req:
        submit.click()
    headers = req.value.all_headers()
    assert headers["content-type"] == "application/json"
    assert headers["authorization"].startswith("Bearer ")
    sent = json.loads(req.value.post_data)
    assert len(sent["uploads"]) == 2 and sent["variations"] == 2
    assert sent["effects"] == "-mirror,+rotation"

    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    cards = page.locator("li.video")
    expect(cards).to_have_count(2)

    # Progress reaches 100 % and the job completes, with no reload.
    expect(job_badge(page)).to_have_text("Completed", timeout=RENDER_TIMEOUT)
    for i in range(2):
        card = cards.nth(i)
        expect(card.locator(".badge")).to_have_text("Completed")
        expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
        expect(card).to_contain_text("2 variations")
    expect(page.get_by_role("progressbar", name="Overall progress")).to_have_attribute(
        "aria-valuenow", "100")
    expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    assert page.evaluate("window.__noReload") is True

    # The form's fields arrived: both files in `videos`, `variations`,
    # `effects=-mirror,+rotation`.
    job = api.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "completed"

    # Each video's verdict in words, its original and variations side by side; one plays.
    for i, video in enumerate(job["videos"]):
        check_distinctness(cards.nth(i), video)
    screenshot(page, "job-completed")
    play_first_variation(cards.first)
    assert [v["name"] for v in job["videos"]] == ["a.mp4", "b.mov"]
    assert job["variationsPerVideo"] == 2
    assert job["excludedEffects"] == ["hue", "mirror", "pitch"]
    expect(page.locator(".job-meta")).to_contain_text("no mirror · with tilt")
    expect(page.locator(".job-meta")).not_to_contain_text("LUFS")  # the defaults go unsaid

    # Coming back later (a new tab) shows the current state.
    other = context.new_page()
    console.attach(other)
    other.goto(f"/#/jobs/{job_id}")
    expect(job_badge(other)).to_have_text("Completed")
    expect(other.locator("li.video")).to_have_count(2)
    other.close()

    # The ZIP: a plain link with the token in the query, STORE entries per source folder.
    link = page.get_by_role("link", name="Download ZIP")
    expect(link).to_be_visible()
    assert link.get_attribute("download") is not None
    with page.expect_download() as dl:
        link.click()
    download = dl.value
    assert download.failure() is None
    path = tmp_path / "out.zip"
    download.save_as(path)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        assert names == {
            "a/a_v01.mp4", "a/a_v02.mp4", "b/b_v01.mp4", "b/b_v02.mp4", "manifest.json",
        }
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest
        head = zf.read("a/a_v01.mp4")[:12]
        assert head[4:8] == b"ftyp"


def test_placements_from_the_upload_page(page, console, media, api):
    """Shape chips, the fit and a loudness target go with the job; the job page groups each
    variation's files with their shape and measured loudness; no shape at all is refused."""
    login(page)
    page.set_input_files("#files", [media["a"]])
    page.fill("#variations", "2")
    # With the original's shape alone, how other shapes are made is not asked.
    fits = page.get_by_role("radiogroup", name="Other shapes")
    expect(fits).to_be_hidden()
    expect(page.get_by_label("Crop position")).to_be_hidden()
    page.get_by_label("Original").uncheck()
    page.get_by_role("button", name="Upload and start").click()
    expect(page.get_by_role("alert")).to_contain_text("Choose at least one shape")
    expect(page.get_by_label("Original")).to_be_focused()
    page.get_by_label("Original").check()
    expect(page.get_by_role("alert")).to_be_hidden()
    page.get_by_label("9:16").check()
    expect(fits).to_be_visible()
    page.get_by_label("9:16").uncheck()
    expect(fits).to_be_hidden()
    page.get_by_label("9:16").check()
    page.get_by_label("1:1").check()
    page.get_by_label("Crop position").select_option("left")
    page.get_by_label("Whole picture on a blurred background").check()
    expect(page.get_by_label("Crop position")).to_be_hidden()
    page.get_by_label("Loudness").select_option("-16")
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_snapshot()
    screenshot(page, "upload-placements")
    with page.expect_request(lambda r: r.url.endswith("/api/jobs") and r.method == "POST") as req:
        page.get_by_role("button", name="Upload and start").click()
    sent = json.loads(req.value.post_data)
    assert (sent["formats"], sent["fit"], sent["loudness"]) == ("source,9:16,1:1", "pad", "-16")
    assert "focus" not in sent  # a crop position means nothing to a pad
    expect(job_badge(page)).to_have_text("Completed", timeout=RENDER_TIMEOUT)
    card = page.locator("li.video").first
    expect(card).to_contain_text("2 variations × 3 shapes")
    expect(card.get_by_test_id("verdict").locator(".verdict-video")).to_contain_text(
        re.compile(r"^All 6 files differ from the original|^\d files? of 6 still"))
    groups = card.get_by_test_id("variation-group")
    expect(groups).to_have_count(2)
    job = api.get(f"/api/jobs/{page.url.rsplit('/', 1)[1]}").json()
    outputs = job["videos"][0]["outputs"]
    for n in range(2):
        tiles = groups.nth(n).get_by_test_id("variation")
        expect(tiles).to_have_count(3)
        for k, fmt in enumerate(("source", "9:16", "1:1")):
            out = outputs[n * 3 + k]
            expect(tiles.nth(k)).to_have_attribute("data-format", fmt)
            expect(tiles.nth(k)).to_contain_text(f"{out['width']} × {out['height']}")
            expect(tiles.nth(k)).to_contain_text(out["name"])
            expect(tiles.nth(k).locator(".tile-loudness")).to_contain_text("LUFS")
            assert abs(out["loudness"]["integrated"] + 16) <= 1.5
    # The job says how it was asked for: its shapes, how they were made, the target.
    expect(page.locator(".job-meta")).to_contain_text("Original, 9:16, 1:1 (padded) · −16 LUFS")
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_snapshot()
    screenshot(page, "job-placements")
    strips = card.locator("img.strip")
    expect(strips).to_have_count(7)  # the original's and each file's
    for img in strips.all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True)
        assert_strip_kept_its_shape(img)

    # A 9:16 file plays no taller than a laptop's screen: its name and link stay in sight.
    page.set_viewport_size({"width": 1366, "height": 768})
    portrait = groups.first.locator('[data-testid=variation][data-format="9:16"]')
    portrait.get_by_role("button", name=re.compile("^Play ")).click()
    player = portrait.locator("video")
    expect(player).to_have_js_property("readyState", 4, timeout=10_000)
    player.evaluate("v => { v.pause(); v.scrollIntoView({block: 'start'}); }")
    box = player.bounding_box()
    assert box["height"] <= 0.7 * 768 + 1, box
    link = portrait.get_by_role("link", name=re.compile("^Download ")).bounding_box()
    assert link["y"] + link["height"] <= 768, (box, link)  # it was at 800 px
    page.set_viewport_size(DESKTOP)

    # A crop position goes with a crop.
    page.get_by_role("link", name="New upload").click()
    page.set_input_files("#files", [media["a"]])
    page.fill("#variations", "1")
    page.get_by_label("Original").uncheck()
    page.get_by_label("9:16").check()
    page.get_by_label("Crop position").select_option("right")
    with page.expect_request(lambda r: r.url.endswith("/api/jobs") and r.method == "POST") as req:
        page.get_by_role("button", name="Upload and start").click()
    sent = json.loads(req.value.post_data)
    assert (sent["formats"], sent.get("fit"), sent["focus"]) == ("9:16", None, "right")
    expect(job_badge(page)).to_have_text("Completed", timeout=RENDER_TIMEOUT)
    job = api.get(f"/api/jobs/{page.url.rsplit('/', 1)[1]}").json()
    assert job["placement"]["focus"] == "right"
    # Without the original's shape, the original's strip is in the first shape (9:16).
    original = page.locator(".tile-source img.strip")
    expect(original).to_have_js_property("complete", True)
    assert_strip_kept_its_shape(original)
    assert not console.unexpected(), console.unexpected()


def test_drop_zone_takes_dropped_files_and_flags_problems(page):
    login(page)
    names = [f"clip{i:02d}.mp4" for i in range(11)] + ["photo.gif"]
    drop = page.evaluate_handle("""names => {
        const dt = new DataTransfer();
        for (const name of names) {
            const type = name.endsWith(".gif") ? "image/gif" : "video/mp4";
            dt.items.add(new File([new Uint8Array(2048)], name, {type}));
        }
        return dt;
    }""", names)
    zone = page.get_by_test_id("dropzone")
    zone.dispatch_event("dragenter", {"dataTransfer": drop})
    expect(zone).to_have_class(re.compile("dropzone-over"))
    zone.dispatch_event("drop", {"dataTransfer": drop})
    expect(zone).not_to_have_class(re.compile("dropzone-over"))
    expect(page.locator(".file-item")).to_have_count(12)
    expect(page.locator(".file-item", has_text="photo.gif")).to_contain_text(NOT_A_VIDEO)
    summary = page.locator(".file-summary")
    # photo.gif, and clip10.mp4 as the 11th file.
    expect(page.locator(".file-item", has_text="clip10.mp4")).to_contain_text(
        "Over the limit of 10 files per upload")
    expect(summary).to_contain_text("Remove 2 flagged files")
    expect(summary).to_contain_text("At most 10 files")
    # Not "12 videos": one of them is not a video.
    expect(summary).to_contain_text(re.compile(r"^12 files, "))
    submit = page.get_by_role("button", name="Upload and start")
    expect(submit).to_be_disabled()

    page.get_by_role("button", name="Remove photo.gif").click()
    page.get_by_role("button", name="Remove clip10.mp4").click()
    expect(page.locator(".file-item")).to_have_count(10)
    expect(summary).to_have_text("10 videos, 20.5 KB in total.")
    expect(submit).to_be_enabled()
    # Keyboard focus stays in the list after a removal.
    assert page.evaluate("document.activeElement.textContent") == "Remove"


def test_upload_limits_come_from_the_server(browser, small_server, console):
    """VR_MAX_FILES=2, VR_MAX_UPLOAD=1MB: the form flags a third file and a big one, sends nothing."""
    ctx = browser.new_context(base_url=small_server.url, viewport=DESKTOP)
    try:
        page = ctx.new_page()
        console.attach(page)
        posts = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST"
                and r.url.endswith("/api/jobs") else None)
        login(page)
        expect(page.locator("#drop-hint")).to_have_text("Up to 2 files, 1.0 MB each.")
        clips = [{"name": f"clip{i}.mp4", "mimeType": "video/mp4", "buffer": bytes(2048)}
                 for i in range(3)]
        page.set_input_files("#files", clips)
        expect(page.locator(".file-item")).to_have_count(3)
        third = page.locator(".file-item", has_text="clip2.mp4")
        expect(third).to_have_class(re.compile("file-item-bad"))
        expect(third).to_contain_text("Over the limit of 2 files per upload")
        expect(page.locator(".file-item-bad")).to_have_count(1)
        expect(page.locator(".file-summary")).to_contain_text("At most 2 files per upload.")
        submit = page.get_by_role("button", name="Upload and start")
        expect(submit).to_be_disabled()
        page.locator("form").evaluate("f => f.requestSubmit()")  # Enter, or a stale button
        expect(page.locator("form [role=alert]")).to_contain_text("At most 2 files per upload.")

        page.get_by_role("button", name="Remove clip2.mp4").click()
        expect(page.locator(".file-item-bad")).to_have_count(0)
        expect(submit).to_be_enabled()
        # The byte limit is the server's too.
        page.set_input_files("#files", [
            {"name": "big.mp4", "mimeType": "video/mp4", "buffer": bytes(1_100_000)}])
        expect(page.locator(".file-item", has_text="big.mp4")).to_contain_text(
            "Larger than the 1.0 MB limit")
        expect(submit).to_be_disabled()
        assert posts == []
    finally:
        ctx.close()
    unexpected = console.unexpected()
    assert not unexpected, unexpected


def test_effect_switches_and_words_come_from_the_server(page, media):
    """The form's effect switches and the job page's words follow /api/health's families: here
    `hue` is on by default (no switch to add it; the job page says when it is off) and a
    family the app has no words for is left at its default."""
    def health(route):
        body = route.fetch().json()
        for family in body["effects"]:
            if family["name"] == "hue":
                family["default"] = True
        body["effects"].append({"name": "sparkle", "default": False, "geometric": False})
        route.fulfill(json=body)

    posts = []

    def create(route):
        posts.append(route.request.post_data_buffer)
        route.fulfill(status=202, json={"jobId": "jfake"})

    page.route(re.compile(r"/api/health$"), health)
    page.route(re.compile(r"/api/jobs$"), create)
    page.route(re.compile(r"/api/jobs/jfake$"), lambda route: route.fulfill(
        json={**fake_job("completed", "completed", 100.0), "excludedEffects": ["hue"]}))
    login(page)
    switches = page.locator(".options input[type=checkbox]")
    expect(switches).to_have_count(3)
    assert switches.evaluate_all("els => els.map(e => e.id)") == ["no-mirror", "with-tilt",
                                                                   "with-pitch"]
    expect(page.get_by_label("Hue shift")).to_have_count(0)
    page.set_input_files("#files", [media["a"]])
    page.get_by_label("No mirror").check()
    page.get_by_label("Small tilt").check()
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"#/jobs/jfake$"))
    assert len(posts) == 1 and json.loads(posts[0])["effects"] == "-mirror,+rotation"
    # The fake job left pitch on too (it is not in its excludedEffects).
    expect(page.locator(".job-meta")).to_contain_text(
        "variations per video · no hue shift · with tilt · with pitch shift")


def test_server_error_is_shown_in_words(page, console, media):
    console.allow(r"status of 415")
    login(page)
    page.set_input_files("#files", [media["noise_mp4"]])
    submit = page.get_by_role("button", name="Upload and start")
    expect(page.locator(".file-item-bad")).to_have_count(0)  # only the server can tell
    submit.click()
    alert = page.locator("form [role=alert]")
    expect(alert).to_be_visible(timeout=15_000)
    expect(alert).to_contain_text("noise.mp4")  # the server's sentence, not its JSON
    assert "{" not in alert.inner_text()
    expect(page).to_have_url(re.compile(r"#/upload$"))
    expect(page.locator(".file-item")).to_have_count(1)  # the list is kept to fix and resend
    # The sentence sits next to the file it is about, which must go before a resend.
    issue = page.locator(".file-item", has_text="noise.mp4").locator(".file-issue")
    expect(issue).to_have_text(alert.inner_text())
    expect(issue).to_contain_text("is not a video we can process")
    expect(submit).to_be_disabled()
    page.get_by_role("button", name="Remove noise.mp4").click()
    expect(page.locator(".file-item")).to_have_count(0)


def test_one_refused_file_does_not_cost_the_batch(page, console, media, api):
    console.allow(r"status of 415")
    login(page)
    page.set_input_files("#files", [media["a"], media["noise_mp4"], media["b"]])
    page.fill("#variations", "1")
    page.get_by_role("button", name="Upload and start").click()
    # The job is made of the files the server takes; the page says which one it left out.
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"), timeout=15_000)
    flash = page.get_by_test_id("job-flash")
    # The server's sentence names the file: the note does not name it twice.
    expect(flash).to_have_text(re.compile(
        r"^Left out of this job: 'noise\.mp4' is not a video we can process"))
    assert flash.inner_text().count("noise.mp4") == 1, flash.inner_text()
    job = api.get(f"/api/jobs/{page.url.rsplit('/', 1)[1]}").json()
    assert [v["name"] for v in job["videos"]] == ["a.mp4", "b.mov"]
    expect(job_badge(page)).to_have_text("Completed", timeout=RENDER_TIMEOUT)


def test_a_reload_mid_upload_sends_no_file_again(page, context, media, api):
    """After a reload, choosing the same files again resumes them: a file whose upload had
    finished (but whose job was not made yet) is not sent a second time, the other goes on from
    where it stopped; once the job is made, nothing is kept to resume."""
    login(page)
    page.on("dialog", lambda d: d.accept())  # "An upload is in progress. Leave this page?"
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 200_000})
    files = [media["a"], media["long"]]
    page.set_input_files("#files", files)
    page.fill("#variations", "1")
    page.get_by_role("button", name="Upload and start").click()
    rows = page.locator(".file-item")
    expect(rows.filter(has_text="a.mp4").get_by_test_id("file-transfer")).to_have_text(
        "Uploaded", timeout=15_000)
    expect(rows.filter(has_text="long.mp4").get_by_test_id("file-transfer")).to_contain_text(
        "Uploading")
    page.reload()
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    created: list[str] = []
    page.on("request", lambda r: created.append(r.url)
            if r.method == "POST" and r.url.endswith("/api/uploads") else None)
    page.set_input_files("#files", files)
    page.fill("#variations", "1")
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"), timeout=30_000)
    assert created == [], created  # both resumed: neither was begun again
    job = api.get(f"/api/jobs/{page.url.rsplit('/', 1)[1]}").json()
    assert [v["name"] for v in job["videos"]] == ["a.mp4", "long.mp4"]
    assert [v["size"] for v in job["videos"]] == [p.stat().st_size for p in files]
    page.wait_for_timeout(300)
    assert page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('tus::'))") == []


def test_cancel_a_running_job(page, context, media, api):
    login(page)
    page.set_input_files("#files", [media["long"]])
    page.fill("#variations", "8")
    # A slow line (about 1 MB/s up) so the upload's progress bar can be seen moving.
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 1_000_000})
    page.get_by_role("button", name="Upload and start").click()
    upload_bar = page.get_by_role("progressbar", name="Upload progress")
    expect(upload_bar).to_be_visible()
    expect(upload_bar).not_to_have_attribute("aria-valuenow", "0")
    expect(page.get_by_role("button", name="Uploading…")).to_be_disabled()
    expect(page.locator(".upload-progress")).to_contain_text("Uploading 1 video")
    # Its speed over the last seconds and the time left (about 1 MB/s on this line).
    expect(page.locator(".upload-progress")).to_contain_text(
        re.compile(r"\d+(\.\d)? (KB|MB)/s · (a few seconds|about \d+ (s|min)) left"))
    screenshot(page, "upload-progress")
    # The greyed drop zone and everything else on the busy form keep their contrast.
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_snapshot()
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]

    video = page.locator("li.video").first
    expect(video.locator(".badge")).to_have_text("Processing", timeout=RENDER_TIMEOUT)
    cancel = page.get_by_role("button", name="Cancel job")
    expect(cancel).to_be_visible()
    # Progress ticks arrive over the WebSocket and move the bar, no reload.
    expect(page.locator(".connection")).to_have_text("Live updates on.")
    expect(video.get_by_role("progressbar")).not_to_have_attribute(
        "aria-valuenow", re.compile(r"^[0-4]$"), timeout=RENDER_TIMEOUT)
    screenshot(page, "job-in-progress")

    # Cancel asks first, and says what happens to finished videos; "no" changes nothing.
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    cancel.click()
    wait_for(lambda: questions, timeout=5)
    assert "finished are kept" in questions[0]
    page.wait_for_timeout(500)
    expect(job_badge(page)).to_have_text("Processing")
    page.once("dialog", lambda d: answer(d, True))
    cancel.click()
    expect(job_badge(page)).to_have_text("Cancelled", timeout=20_000)
    expect(video.locator(".badge")).to_have_text("Cancelled")
    expect(cancel).to_be_hidden()
    expect(page.get_by_role("link", name="Download ZIP")).to_be_hidden()
    assert api.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"


def test_retry_a_failed_video(page, media, api):
    login(page)
    page.set_input_files("#files", [media["damaged"]])
    page.fill("#variations", "1")
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]

    video = page.locator("li.video").first
    expect(job_badge(page)).to_have_text("Failed", timeout=RENDER_TIMEOUT)
    expect(video.locator(".badge")).to_have_text("Failed")
    first = api.get(f"/api/jobs/{job_id}").json()["videos"][0]
    expect(video.locator(".video-error")).to_have_text(first["error"])
    expect(video.locator(".progress-text")).to_have_text("Rendering failed")
    expect(page.get_by_role("link", name="Download ZIP")).to_be_hidden()
    screenshot(page, "job-failed")

    video.get_by_role("button", name=f"Retry {first['name']}").click()
    wait_for(lambda: api.get(f"/api/jobs/{job_id}").json()["videos"][0]["attempts"] > first["attempts"],
             timeout=30)
    # Retry hides while the video is queued again: the focus stays in its card, on its name.
    expect(video.locator(".video-name")).to_be_focused()
    # The damaged file fails again; the page follows it there by itself.
    wait_job(api, job_id, statuses=("failed",), timeout=30)
    expect(video.locator(".badge")).to_have_text("Failed", timeout=RENDER_TIMEOUT)
    # Failing again looks like the first failure but for this: the attempt ran.
    expect(video.locator(".progress-text")).to_have_text("Rendering failed (attempt 2)")
    expect(video.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.locator(".job-head [role=alert]")).to_be_hidden()


def test_retry_all_says_what_it_retries_and_strips_keep_their_room(page):
    """"Retry all" is named after the videos it sends again (a cancelled job offered to "Retry
    all failed"); and a strip's room is kept before it loads, in its file's shape (the play
    buttons lay over the headings and the page jumped as the strips came)."""

    def job_with(status: str, *statuses: str) -> dict:
        job = fake_job(status, "cancelled", 0.0)
        first = job["videos"][0]
        job["videos"] = [{**first, "id": f"v{i}", "name": f"clip{i}.mp4", "status": s,
                          "retryable": True} for i, s in enumerate(statuses)]
        job["counts"] = {s: statuses.count(s) for s in set(statuses)}
        return job

    state = {"job": job_with("cancelled", "cancelled", "cancelled")}
    page.route(re.compile(r"/api/jobs/jfake$"), lambda route: route.fulfill(json=state["job"]))
    login(page)
    page.goto("/#/jobs/jfake")
    retry_all = page.locator(".job-head").get_by_role("button", name=re.compile("^Retry all"))
    expect(retry_all).to_have_text("Retry all cancelled")
    state["job"] = job_with("completed", "failed", "cancelled")
    page.reload()
    expect(retry_all).to_have_text("Retry all")
    state["job"] = job_with("failed", "failed", "failed")
    page.reload()
    expect(retry_all).to_have_text("Retry all failed")

    # Strips that have not come yet: a 16:9 original with its variations, and a 9:16 file.
    held = []
    page.route(re.compile(r"/preview\?token="), lambda route: held.append(route))
    job = fake_job("completed", "completed", 100.0)
    video = job["videos"][0]
    video["previewUrl"] = "/api/jobs/jfake/videos/vfake/preview"
    shapes = [("source", 640, 360), ("source", 640, 360), ("9:16", 406, 720)]
    for i, (out, (fmt, w, h)) in enumerate(zip(video["outputs"], shapes, strict=True)):
        out.update(format=fmt, width=w, height=h, variation=i,
                   url=f"/api/jobs/jfake/videos/vfake/outputs/{i + 1}",
                   previewUrl=f"/api/jobs/jfake/videos/vfake/outputs/{i + 1}/preview")
    state["job"] = job
    page.reload()
    strips = page.locator("img.strip")
    expect(strips).to_have_count(4)
    for _ in range(30):  # route handlers run only while Playwright is called
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "no strip was asked for"
    # A strip is 4 frames 320 px wide, 4 px apart, as tall as the shape makes them.
    for img, (w, h) in zip(strips.all(), [(640, 360), (640, 360), (640, 360), (406, 720)],
                           strict=True):
        assert img.evaluate("i => i.complete && i.naturalWidth") == 0  # not loaded
        box = img.bounding_box()
        expected = box["width"] * round(320 * h / w / 2) * 2 / 1292
        assert abs(box["height"] - expected) < 2, (box, expected)
    # Nothing overlaps: each play button ends above its caption.
    for tile in page.get_by_test_id("variation").all():
        play = tile.get_by_role("button", name=re.compile("^Play ")).bounding_box()
        caption = tile.locator("figcaption").bounding_box()
        assert play["y"] + play["height"] <= caption["y"] + 1, (play, caption)
    for route in held:  # (an aborted request is logged as an error)
        route.fulfill(status=200, content_type="image/jpeg", body=b"")


def test_polling_fallback_when_the_socket_is_unavailable(page, console):
    """No WebSocket (a proxy drops it): the page says "Loading…" until the first answer, polls,
    says when the server cannot be reached (a red dot, not the green one; no alert beside it,
    no time counted on from the last answer), pauses while hidden, stops when done."""
    login(page)

    def running(progress: float) -> dict:
        """Started half a minute ago, with the server's estimates of the time left."""
        job = fake_job("processing", "processing", progress)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30))
        job.update(startedAt=started, etaSeconds=120)
        job["videos"][0].update(startedAt=started, etaSeconds=120)
        return job

    state = {"job": running(10.0), "down": False}
    hits: list[float] = []
    held = []

    def serve_job(route):
        hits.append(time.monotonic())
        if not hits[1:]:
            held.append(route)  # the first answer is slow
        elif state["down"]:
            route.abort("connectionrefused")
        else:
            route.fulfill(json=state["job"])

    sockets = []

    def refuse(ws):
        sockets.append(ws.url)
        ws.close(code=1011, reason="unavailable")

    page.route(re.compile(r"/api/jobs/jfake$"), serve_job)
    page.route_web_socket(re.compile(r"/api/ws\?token="), refuse)
    page.goto("/#/jobs/jfake")
    expect(page.get_by_test_id("job-summary")).to_have_text("Loading…")
    for _ in range(50):  # route handlers run only while Playwright is called
        if held:
            break
        page.wait_for_timeout(100)
    held[0].fulfill(json=state["job"])
    expect(job_badge(page)).to_have_text("Processing")
    connection = page.locator(".connection")
    expect(connection).to_have_text("Checking for updates every few seconds.")
    expect(connection).to_have_attribute("data-state", "polling")
    bar = page.locator("li.video").get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "10")
    summary = page.get_by_test_id("job-summary")
    expect(summary).to_contain_text(re.compile(r"\d+ s so far · about \d+ min left"))

    state["job"] = running(60.0)
    expect(bar).to_have_attribute("aria-valuenow", "60", timeout=8_000)

    # The server is gone: the line says so, in red, and nothing else does (an alert said it
    # again); the time so far and the time left are not counted on from the last answer.
    # It comes back by itself.
    console.allow(r"ERR_CONNECTION_REFUSED")
    state["down"] = True
    expect(connection).to_have_attribute("data-state", "offline", timeout=8_000)
    expect(connection).to_have_text(re.compile(r"^Not connected to the server"))
    # Said once to screen readers (the line itself is not read out as it changes).
    expect(page.get_by_test_id("job-announce")).to_have_text(
        "Not connected to the server. Trying again.")
    assert page.evaluate("""() => getComputedStyle(document.querySelector('.connection'),
        '::before').backgroundColor""") == "rgb(185, 28, 28)"  # --danger
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(summary).to_have_text("0 of 1 video done · 60 %")
    expect(page.locator("li.video .progress-text")).to_have_text("Rendering · 60 %")
    page.wait_for_timeout(5_500)  # the page's clock (5 s) redraws: still no time words
    expect(summary).to_have_text("0 of 1 video done · 60 %")
    expect(page.get_by_role("alert")).to_have_count(0)
    state["down"] = False
    expect(connection).to_have_attribute("data-state", "polling", timeout=12_000)
    expect(page.get_by_test_id("job-announce")).to_have_text("Connected again.")
    expect(summary).to_contain_text("so far")
    expect(page.locator(".job-head [role=alert]")).to_be_hidden()

    set_visibility(page, "hidden")
    page.wait_for_timeout(300)
    seen = len(hits)
    page.wait_for_timeout(3_000)
    assert len(hits) == seen, "polled while the tab was hidden"
    state["job"] = fake_job("completed", "completed", 100.0)
    set_visibility(page, "visible")
    expect(job_badge(page)).to_have_text("Completed", timeout=1_500)  # at once, no waiting
    expect(page.get_by_role("link", name="Download ZIP")).to_be_visible()

    page.wait_for_timeout(300)
    seen = len(hits)
    page.wait_for_timeout(2_500)
    assert len(hits) == seen, "kept polling a finished job"
    assert sockets, "never tried the WebSocket"


class FakeSocket:
    """``/api/ws`` played by the test: a connection opened with ``?job=<id>`` starts with a
    ``subscribed`` snapshot of ``state["job"]``, any other with a ``hello`` list; each
    ``{"subscribe": jobId}`` is answered with a snapshot too. ``subscribes`` lists the job
    each connection or message asked to follow."""

    def __init__(self, state: dict):
        self.state = state
        self.sockets = []  # the open connections, newest last
        self.subscribes: list = []

    def route(self, ws) -> None:
        self.sockets.append(ws)
        ws.on_message(lambda message: self._received(ws, message))
        follow = parse_qs(urlsplit(ws.url).query).get("job")
        if follow:
            self.subscribes.append(follow[0])
            ws.send(json.dumps({"type": "subscribed", "jobId": follow[0], "job": self.state["job"]}))
            return
        other = {**fake_job("processing", "processing", 1.0), "id": "jother"}
        ws.send(json.dumps({"type": "hello", "jobs": [other, self.state["job"]]}))

    def _received(self, ws, message) -> None:
        job_id = json.loads(message).get("subscribe")
        self.subscribes.append(job_id)
        ws.send(json.dumps({"type": "subscribed", "jobId": job_id, "job": self.state["job"]}))

    def send(self, *events: dict) -> None:
        for ev in events:
            self.sockets[-1].send(json.dumps(ev))

    def wait_subscribes(self, page, count: int, timeout: float = 5.0) -> None:
        """Wait for the page's ``count``-th subscribe (the page's loop delivers them)."""
        deadline = time.monotonic() + timeout
        while len(self.subscribes) < count:
            assert time.monotonic() < deadline, f"subscribes: {self.subscribes}"
            page.wait_for_timeout(100)
        assert self.subscribes == ["jfake"] * count, self.subscribes


def test_job_page_follows_socket_events_and_resyncs(page):
    """The job page subscribes to its job and follows it from queued to completed on the
    socket's events alone: each burst of state events is one refetch, progress ticks none, no
    polling while the socket is open; a 4408 close or a dropped socket re-syncs it."""
    login(page)
    state = {"job": fake_job("queued", "queued", 0.0)}
    hits: list[float] = []

    def serve_job(route):
        hits.append(time.monotonic())
        route.fulfill(json=state["job"])

    socket = FakeSocket(state)
    page.route(re.compile(r"/api/jobs/jfake$"), serve_job)
    page.route_web_socket(re.compile(r"/api/ws\?token="), socket.route)
    page.goto("/#/jobs/jfake")
    expect(job_badge(page)).to_have_text("Queued")
    expect(page.locator(".connection")).to_have_text("Live updates on.")
    socket.wait_subscribes(page, 1)
    bar = page.locator("li.video").get_by_role("progressbar")

    def burst(*events: dict) -> None:
        """Send a burst of events; the page answers it with one fetch."""
        seen = len(hits)
        socket.send(*events)
        page.wait_for_timeout(600)
        assert len(hits) == seen + 1, f"{len(hits) - seen} fetches for one burst"

    # A state event says the job moved; the page fetches the state it renders.
    state["job"] = fake_job("processing", "processing", 0.0)
    burst({"type": "video", "jobId": "jfake", "videoId": "vfake", "status": "processing"},
          {"type": "job", "jobId": "jfake", "status": "processing"})
    expect(job_badge(page)).to_have_text("Processing")
    # Ticks move the bar without a fetch; other jobs' events are ignored; no polling.
    seen = len(hits)
    socket.send({"type": "progress", "jobId": "jfake", "videoId": "vfake", "progress": 40.0},
                {"type": "video", "jobId": "jother", "videoId": "vx", "status": "completed"},
                {"type": "progress", "jobId": "jother", "videoId": "vfake", "progress": 90.0})
    expect(bar).to_have_attribute("aria-valuenow", "40")
    page.wait_for_timeout(2_600)
    assert len(hits) == seen, "fetched without a state event while the socket was open"
    expect(bar).to_have_attribute("aria-valuenow", "40")

    # Too slow (4408): the page re-syncs at once, then reconnects and subscribes again.
    state["job"] = fake_job("processing", "processing", 70.0)
    seen = len(hits)
    socket.sockets[-1].close(code=4408, reason="lagging")
    expect(bar).to_have_attribute("aria-valuenow", "70", timeout=2_000)
    socket.wait_subscribes(page, 2)
    expect(page.locator(".connection")).to_have_text("Live updates on.")
    page.wait_for_timeout(300)
    assert len(hits) == seen + 1, "the reconnect fetched what its snapshot brings"

    # A dropped socket: the page re-syncs, and the reconnect's snapshot is the state.
    socket.sockets[-1].close(code=1011, reason="gone")
    expect(page.locator(".connection")).to_have_text("Checking for updates every few seconds.")
    state["job"] = fake_job("processing", "processing", 85.0)
    socket.wait_subscribes(page, 3)
    expect(bar).to_have_attribute("aria-valuenow", "85")
    expect(page.locator(".connection")).to_have_text("Live updates on.")

    # Done: the page shows the finished job (its files too) and stops fetching.
    state["job"] = fake_job("completed", "completed", 100.0)
    burst({"type": "video", "jobId": "jfake", "videoId": "vfake", "status": "completed",
           "progress": 100.0},
          {"type": "job", "jobId": "jfake", "status": "completed"})
    expect(job_badge(page)).to_have_text("Completed")
    expect(page.locator("li.video")).to_contain_text("Done · 3 variations")
    expect(page.get_by_role("link", name="Download ZIP")).to_be_visible()
    seen = len(hits)
    page.wait_for_timeout(2_500)
    assert len(hits) == seen, "kept fetching a finished job"


def test_socket_closed_as_unauthorized_goes_to_login(page):
    login(page)
    page.route(re.compile(r"/api/jobs/jfake$"),
               lambda route: route.fulfill(json=fake_job("processing", "processing", 5.0)))
    page.route_web_socket(re.compile(r"/api/ws\?token="),
                          lambda ws: ws.close(code=4401, reason="expired"))
    page.goto("/#/jobs/jfake")
    expect(page).to_have_url(re.compile(r"#/login$"))
    expect(page.get_by_role("status")).to_contain_text("Your session has expired")
    assert page.evaluate("localStorage.getItem('vr.token')") is None


# -- history, phone width -------------------------------------------------------------------


def test_history_lists_jobs_newest_first(page, completed_job, api):
    login(page)
    page.get_by_role("link", name="History").click()
    expect(page).to_have_url(re.compile(r"#/history$"))
    expect(page.get_by_role("heading", name="History")).to_be_visible()

    expected = [j["id"] for j in api.get("/api/jobs").json()["jobs"]]
    items = page.locator("li.job-item")
    expect(items).to_have_count(len(expected))
    assert items.evaluate_all("els => els.map(e => e.dataset.jobId)") == expected

    item = page.locator(f'li.job-item[data-job-id="{completed_job["id"]}"]')
    expect(item.locator(".badge")).to_have_text("Completed")
    expect(item).to_contain_text("1 completed")
    expect(item).to_contain_text(re.compile(r"Expires in (23 h|24 h|1 day)"))
    link = item.get_by_role("link", name=re.compile("Download ZIP"))
    expect(link).to_be_visible()
    assert f"/api/jobs/{completed_job['id']}/download?token=" in link.get_attribute("href")
    screenshot(page, "history")

    item.get_by_role("link", name=re.compile("^Details")).click()
    expect(page).to_have_url(re.compile(rf"#/jobs/{completed_job['id']}$"))
    expect(job_badge(page)).to_have_text("Completed")


def test_phone_width_job_page(browser, server, console, completed_job):
    with fitted_page(browser, server, console, viewport=PHONE, is_mobile=True, has_touch=True,
                     device_scale_factor=2) as page:
        page.goto(f"/#/jobs/{completed_job['id']}")
        expect(job_badge(page)).to_have_text("Completed")
        expect(page.get_by_role("link", name="Download ZIP")).to_be_visible()
        expect(page.get_by_role("link", name="History")).to_be_visible()
        expect(page.get_by_test_id("verdict")).to_have_text(re.compile("Meta's PDQ matcher"))
        expect(page.get_by_test_id("variation").first).to_be_visible()
        assert no_overflow(page)
        screenshot(page, "job-phone")
        page.get_by_role("link", name="History").click()
        expect(page.locator("li.job-item").first).to_be_visible()
        assert no_overflow(page)


def test_views_have_visible_focus_styles(page):
    login(page)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => {
        const el = document.activeElement;
        const s = getComputedStyle(el);
        return {tag: el.tagName, shadow: s.boxShadow, outline: s.outlineStyle};
    }""")
    assert focused["tag"] != "BODY"
    assert focused["shadow"] != "none" or focused["outline"] != "none", focused


def test_focus_stays_put_when_the_effect_switches_arrive(page):
    """The effect switches come with /api/health after the form is shown: a person already
    typing in a field keeps their focus (it used to fall back to the page's body)."""
    held = []
    login(page)
    page.route(re.compile(r"/api/health$"), lambda route: held.append(route))
    page.reload()  # a fresh page: nothing known about the server yet
    expect(page.get_by_role("heading", name="New upload")).to_be_visible()
    while not held:
        page.wait_for_timeout(50)
    page.locator("#job-name").focus()
    page.keyboard.type("spring")
    expect(page.locator("#with-tilt")).to_have_count(0)
    held[0].continue_()
    expect(page.locator("#with-tilt")).to_be_attached()
    page.keyboard.type(" sale")
    expect(page.locator("#job-name")).to_be_focused()
    expect(page.locator("#job-name")).to_have_value("spring sale")


# -- formats ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """One tiny clip per container the server renders, a video misnamed .txt, two non-videos."""
    d = tmp_path_factory.mktemp("ui-formats")
    png = make_encoded_clip(d, "x.png", ["-frames:v", "1", "-update", "1"])
    return {
        "videos": [
            make_encoded_clip(d, "vp9.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime",
                                              "-cpu-used", "8", "-b:v", "200k"], ["-c:a", "libopus"]),
            make_encoded_clip(d, "h264-10bit.mkv", ["-c:v", "libx264", "-preset", "ultrafast",
                                                    "-pix_fmt", "yuv420p10le"], ["-c:a", "aac"]),
            make_encoded_clip(d, "mpeg4.avi", ["-c:v", "mpeg4", "-q:v", "5"], ["-c:a", "ac3"]),
            make_encoded_clip(d, "mpeg2.mpg", ["-c:v", "mpeg2video", "-q:v", "5"], ["-c:a", "mp2"]),
            make_encoded_clip(d, "prores.mov", ["-c:v", "prores_ks", "-profile:v", "0"]),
            make_clip(d, "clip.mp4").rename(d / "clip.txt"),  # sent as text/plain
        ],
        "not_videos": [make_text_file_as_mp4(d, "fake.mp4"), png.rename(d / "x.webm")],
    }


def test_upload_page_judges_files_by_content_not_name(page, formats, api, tmp_path):
    """WebM, MKV, AVI, MPEG-2, ProRes MOV and an MP4 named .txt pass; text and a PNG do not."""
    login(page)
    expect(page.locator(".dropzone-title")).to_have_text("Drag MP4, MOV, WebM, MKV, AVI… files here")
    accept = page.locator("#files").get_attribute("accept").split(",")
    assert accept[0] == "video/*" and {".webm", ".mkv", ".avi", ".mpg", ".ts", ".ogv"} <= set(accept)
    page.locator("form").evaluate("f => f.requestSubmit()")  # Enter with nothing picked
    expect(page.locator("form [role=alert]")).to_have_text(
        "Add at least one video (MP4, MOV, WebM, MKV, AVI…).")

    videos, not_videos = formats["videos"], formats["not_videos"]
    page.set_input_files("#files", [*videos, *not_videos])
    expect(page.locator(".file-item")).to_have_count(len(videos) + len(not_videos))
    summary = page.locator(".file-summary")
    expect(summary).to_contain_text("Remove 2 flagged files to continue.")
    for path in not_videos:
        expect(page.locator(".file-item", has_text=path.name)).to_contain_text(NOT_A_VIDEO)
    expect(page.locator(".file-item-bad")).to_have_count(2)
    # For a look at the mixed list; docs/screenshots/upload.png stays the two-video form's.
    page.screenshot(path=str(tmp_path / "upload-formats.png"), full_page=True, animations="disabled")
    submit = page.get_by_role("button", name="Upload and start")
    expect(submit).to_be_disabled()

    for path in not_videos:
        page.get_by_role("button", name=f"Remove {path.name}").click()
    expect(page.locator(".file-item-bad")).to_have_count(0)
    expect(summary).to_have_text(re.compile(r"^6 videos, [\d.]+ KB in total\.$"))
    page.fill("#variations", "1")
    submit.click()
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"))
    expect(page.locator("li.video")).to_have_count(len(videos))
    job = api.get(f"/api/jobs/{page.url.rsplit('/', 1)[1]}").json()
    assert [v["name"] for v in job["videos"]] == [p.name for p in videos]
    # And the server renders every one of them (a second or two for clips this small).
    expect(job_badge(page)).to_have_text("Completed", timeout=RENDER_TIMEOUT)
    expect(page.locator("li.video .badge", has_text="Completed")).to_have_count(len(videos))


def _figures(source_matches: int, sibling_matches: int | None, similarity: float | None) -> dict:
    return {"video": {"metric": "pdq", "frames": 16, "sourceMatches": source_matches,
                      "sourceDistance": 8 if source_matches else 70,
                      "siblingMatches": sibling_matches, "siblingDistance": 50},
            "audio": None if similarity is None else {
                "metric": "chromaprint", "sourceSimilarity": similarity,
                "siblingSimilarity": similarity},
            "rerolls": 2 if source_matches else 0}


@pytest.mark.parametrize("case", ["copy-and-same-audio", "all-good-pitched", "silent",
                                  "sibling-copy-with-tilt"])
def test_the_verdict_says_what_the_figures_mean(page, case):
    """The verdict in words for each kind of figures: a variation that still matches is named
    with what to do; audio that is the same recording points to Pitch shift unless it is on;
    no audio line for a silent video."""
    job = fake_job("completed", "completed", 100.0)
    outputs = job["videos"][0]["outputs"]
    job["videos"][0]["previewUrl"] = "/api/jobs/jfake/videos/vfake/preview"
    figures = {
        "copy-and-same-audio": [_figures(0, 0, 0.93), _figures(9, 0, 0.95), _figures(0, 0, 0.9)],
        "all-good-pitched": [_figures(0, 0, 0.62), _figures(0, 0, 0.66), _figures(0, 0, 0.6)],
        "silent": [_figures(0, 0, None)] * 3,
        "sibling-copy-with-tilt": [_figures(0, 0, None), _figures(0, 5, None), _figures(0, 0, None)],
    }[case]
    # The defaults leave the opt-in families out; the pitched job asked for `+pitch`.
    job["excludedEffects"] = {"all-good-pitched": ["hue", "rotation"],
                              "sibling-copy-with-tilt": ["hue", "pitch"]}.get(
        case, ["hue", "pitch", "rotation"])
    for i, (out, fig) in enumerate(zip(outputs, figures, strict=True)):
        out.update(distinctness=fig, effects=["mirrored", "5 % zoom"],
                   url=f"/api/jobs/jfake/videos/vfake/outputs/{i + 1}",
                   previewUrl=f"/api/jobs/jfake/videos/vfake/outputs/{i + 1}/preview")
    page.route(re.compile(r"/api/jobs/jfake$"), lambda route: route.fulfill(json=job))
    page.route(re.compile(r"/preview\?token="), lambda route: route.fulfill(
        status=200, content_type="image/jpeg", body=b""))
    login(page)
    page.goto("/#/jobs/jfake")
    verdict = page.get_by_test_id("verdict")
    video_line, audio_line = verdict.locator(".verdict-video"), verdict.locator(".verdict-audio")
    if case == "copy-and-same-audio":
        expect(verdict).to_have_attribute("data-level", "low")
        expect(video_line).to_have_text("1 variation of 3 still looks like a copy of the original "
                                        "to Meta's PDQ matcher (9 of 48 frames match it).")
        expect(verdict.locator(".verdict-flagged li")).to_have_text(
            "fake_v02.mp4: 9 of 16 frames match the original. Turn on Small tilt or ask for "
            "fewer variations, then upload again.")
        expect(audio_line).to_have_text("Audio is the same recording (similarity up to 0.95) — "
                                        "turn on Pitch shift to change it.")
    elif case == "all-good-pitched":
        expect(verdict).to_have_attribute("data-level", "good")
        expect(video_line).to_have_text("All 3 variations differ from the original for Meta's "
                                        "PDQ matcher (0 of 48 frames match).")
        expect(audio_line).to_contain_text("Audio no longer matches the original recording "
                                           "(similarity up to 0.66")
        expect(verdict.locator(".verdict-flagged li")).to_have_count(0)
    elif case == "silent":
        expect(video_line).to_contain_text("All 3 variations differ")
        expect(audio_line).to_be_hidden()
    else:  # tilt already on: the advice is another upload, not the tilt
        expect(video_line).to_have_text("All 3 variations differ from the original (0 of 48 "
                                        "frames match), but 1 variation looks like a copy of "
                                        "another one to Meta's PDQ matcher.")
        expect(verdict.locator(".verdict-flagged li")).to_have_text(
            "fake_v02.mp4: 5 of 16 frames match another variation. Upload the video again for "
            "fresh variations, or ask for fewer.")
    expect(page.get_by_test_id("variation")).to_have_count(3)
    expect(page.get_by_test_id("variation").first).to_contain_text("mirrored · 5 % zoom")


def test_logging_out_during_an_upload_asks_and_cancel_keeps_both(page, media):
    """"Log out" while an upload runs asks like any other way out; "Cancel" keeps the session
    and the upload (the session was cleared anyway and the upload lost without a word)."""
    login(page)
    held = []

    def hold(route):  # the upload's requests wait: the upload stays in progress
        if route.request.method in ("POST", "PATCH"):
            held.append(route)
        else:
            route.continue_()

    page.route(re.compile(r"/api/uploads"), hold)
    page.set_input_files("#files", [media["long"]])
    page.get_by_role("button", name="Upload and start").click()
    wait_for(lambda: held, timeout=10)
    questions = []
    page.once("dialog", lambda d: (questions.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Log out").click()
    wait_for(lambda: questions, timeout=5)
    assert "upload is in progress" in questions[0]
    page.wait_for_timeout(300)
    expect(page).to_have_url(re.compile(r"#/upload$"))
    # A link asks the same question; "Cancel" stays on the page.
    page.once("dialog", lambda d: (questions.append(d.message), d.dismiss()))
    page.get_by_role("link", name="History").click()
    page.wait_for_timeout(500)  # the dialog's handler runs while Playwright waits
    assert len(questions) == 2
    expect(page).to_have_url(re.compile(r"#/upload$"))
    expect(page.get_by_role("button", name="Uploading…")).to_be_disabled()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    stored_token = "() => Object.keys(localStorage).filter((k) => /token/i.test(k)).length"
    assert page.evaluate(stored_token) == 1
    # "OK" leaves: logged out, asked once.
    page.once("dialog", lambda d: (questions.append(d.message), d.accept()))
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"#/login$"))
    assert len(questions) == 3
    expect(page.get_by_text("You have logged out.")).to_be_visible()
    for route in held:
        route.abort()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_pages_fit_the_window_even_with_a_long_file_name(browser, server, console, media,
                                                         viewport):
    """Nothing scrolls sideways: the upload form, and a job page whose file name is 200
    characters long (the original's caption ran on one line and made it 1,894 px wide)."""
    name = "very_long_name_" + "x" * 185 + ".mp4"
    with server.client() as client, open(media["a"], "rb") as fh:
        r = client.post("/api/jobs", files=[("videos", (name, fh, "video/mp4"))],
                        data={"variations": "1"})
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["jobId"], timeout=60)
    with fitted_page(browser, server, console, viewport=viewport) as page:
        page.goto(f"/#/jobs/{job['id']}")
        shown = job["videos"][0]["name"]  # as the server keeps it (long names are shortened)
        assert len(shown) > 150
        expect(page.locator(".tile-source figcaption")).to_contain_text(shown)
        expect(page.get_by_test_id("variation").first).to_be_visible()
        assert no_overflow(page)


def test_an_upload_the_server_could_not_take_can_be_sent_again(page, media, console):
    """A full server (507) or a lost connection does not flag the file: the form says what
    happened and "Upload and start" sends it again as it is (it stayed greyed out until the
    file was removed and added again)."""
    console.allow(r"status of 507")  # Chromium logs the refused request
    login(page)
    uploads = re.compile(r"/api/uploads$")
    refused = []

    def full(route):
        if route.request.method != "POST":
            return route.continue_()
        refused.append(route.request.url)
        return route.fulfill(status=507, content_type="application/json", body=json.dumps(
            {"error": {"code": "storage_full", "message": "The server is out of space."}}))

    page.route(uploads, full)
    page.set_input_files("#files", [media["a"]])
    button = page.get_by_role("button", name="Upload and start")
    button.click()
    expect(page.get_by_text("The server is out of space.").first).to_be_visible()
    assert refused
    expect(button).to_be_enabled()
    expect(page.get_by_text(re.compile("flagged file"))).to_have_count(0)
    page.unroute(uploads)
    button.click()
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"), timeout=30_000)


def test_an_upload_whose_requests_fail_says_it_is_trying_again(page, media, console):
    """While the upload's requests fail and are tried again (the network, a busy server), its
    row and the progress line say so, instead of the last speed and time left; then it goes on
    by itself."""
    console.allow(r"status of 503")  # Chromium logs the failed requests
    login(page)
    failed = []

    def flaky(route):
        if route.request.method == "PATCH" and len(failed) < 3:
            failed.append(route.request.url)
            return route.fulfill(status=503, content_type="application/json",
                                 body=json.dumps({"error": {"code": "busy", "message": "Busy."}}))
        return route.continue_()

    page.route(re.compile(r"/api/uploads/"), flaky)
    page.set_input_files("#files", [media["a"]])
    page.get_by_role("button", name="Upload and start").click()
    expect(page.get_by_test_id("file-transfer")).to_contain_text(
        re.compile(r"Connection lost at \d+ % · trying again…"))
    expect(page.locator(".upload-progress")).to_contain_text("connection lost, trying again…")
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"), timeout=30_000)
    assert len(failed) == 3


def test_a_finished_job_says_which_videos_did_not_finish(page, server, media, tmp_path):
    """The server calls a job "completed" when every video has ended; when some failed or
    were cancelled, the job reads "Partly completed" in the warning colour (not a green
    "Completed" and a full green bar), on its page and in History, with a line that says
    what the ZIP holds."""
    with server.client() as client, open(media["a"], "rb") as a, \
            open(media["damaged"], "rb") as bad:
        r = client.post("/api/jobs", data={"variations": "1"}, files=[
            ("videos", ("a.mp4", a, "video/mp4")), ("videos", ("bad.mp4", bad, "video/mp4"))])
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["jobId"], timeout=60)
    assert job["status"] == "completed"
    assert [v["status"] for v in job["videos"]] == ["completed", "failed"]
    login(page)
    page.goto(f"/#/jobs/{job['id']}")
    expect(job_badge(page)).to_have_text("Partly completed")
    expect(page.locator(".job-head")).to_have_attribute("data-status", "completed")
    expect(page.locator(".job-head .alert-info")).to_have_text(
        "1 of 2 videos did not finish (1 failed); the ZIP holds the 1 that did.")
    warn = "rgb(161, 98, 7)"  # --warn
    assert job_badge(page).evaluate("b => getComputedStyle(b).color") == warn
    overall = page.get_by_role("progressbar", name="Overall progress")
    expect(overall).to_have_attribute("aria-valuenow", "50")  # the share that finished
    assert overall.locator(".bar-fill").evaluate("f => getComputedStyle(f).backgroundColor") == warn
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_snapshot()
    page.screenshot(path=str(tmp_path / "job-partial-desktop.png"), full_page=True,
                    animations="disabled")
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(tmp_path / "job-partial-phone.png"), full_page=True,
                    animations="disabled")
    page.set_viewport_size(DESKTOP)

    page.get_by_role("link", name="History").click()
    item = page.locator(f'li.job-item[data-job-id="{job["id"]}"]')
    expect(item.locator(".badge")).to_have_text("Partly completed")
    expect(item).to_have_attribute("data-status", "completed")
    assert item.locator(".badge").evaluate("b => getComputedStyle(b).color") == warn
    expect(item).to_contain_text("1 completed · 1 failed")
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_snapshot()


def test_a_cancelled_upload_stays_cancelled_while_its_delete_is_retried(page, media, console):
    """Cancel upload sends a DELETE, which tus retries when it meets a 409 (the cut PATCH still
    finishing on the server): those retries are not the upload's, and its row shows nothing
    ("Connection lost … trying again" came back after the cancel)."""
    console.allow(r"status of 409")
    login(page)
    held, deletes = [], []

    def route(r):
        if r.request.method == "PATCH":
            held.append(r)  # the upload stays in progress until it is cancelled
        elif r.request.method == "DELETE" and not deletes:
            deletes.append(r.request.url)
            r.fulfill(status=409, content_type="application/json", body=json.dumps(
                {"error": {"code": "upload_busy", "message": "Busy."}}))
        else:
            r.continue_()

    page.route(re.compile(r"/api/uploads/"), route)
    page.set_input_files("#files", [media["long"]])
    page.get_by_role("button", name="Upload and start").click()
    expect(page.get_by_test_id("file-transfer")).to_contain_text("Uploading")
    page.get_by_role("button", name="Cancel upload").click()
    expect(page.get_by_role("button", name="Upload and start")).to_be_enabled()
    expect(page.get_by_test_id("file-transfer")).to_have_count(0)
    page.wait_for_timeout(1500)  # tus's retry delays: 0, then 1 s
    assert deletes
    expect(page.get_by_test_id("file-transfer")).to_have_count(0)
    for r in held:
        r.abort()
