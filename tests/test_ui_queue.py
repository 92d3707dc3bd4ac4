"""The browser app for a team that plans around the queue: places in line and times, the tab's
title, the completion announcement and notification, per-video cancel and log, retry all,
deletions seen live, downloads that say why they cannot work, the way back to a job after
logging in, and axe-core's accessibility rules on every view (zero violations).

Real Chromium against a real server with one worker; a few states that a real server only
reaches by chance (two failed videos, an expired ZIP) are played by ``page.route``.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.clips import make_clip
from tests.server import ServerProcess, wait_for, wait_job
from tests.test_ui_e2e import fake_job, job_badge, login
from tests.ui_helpers import DESKTOP, PHONE

RENDER_TIMEOUT = 45_000
# Records notifications instead of showing them (the permission is the test's to give).
FAKE_NOTIFICATIONS = """
window.__notifications = [];
window.Notification = class {
  constructor(title, options) { window.__notifications.push([title, options && options.body]); }
  static get permission() { return window.__permission || "default"; }
  static requestPermission() { window.__permission = "granted"; return Promise.resolve("granted"); }
};
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("ui-queue") / "data",
                        env={"VR_WORKERS": "1"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("ui-queue-clips")
    return [make_clip(d, f"{name}.mp4", seconds=1.0, size="160x120")
            for name in ("first", "second")]


@pytest.fixture
def context(browser, server):
    ctx = browser.new_context(base_url=server.url, viewport=DESKTOP, accept_downloads=True)
    ctx.add_init_script(FAKE_NOTIFICATIONS)
    yield ctx
    ctx.close()


@pytest.fixture
def api(server):
    with server.client() as client:
        yield client
        client.post("/api/queue/resume")


def _upload(api, *paths, **fields) -> str:
    files = [("videos", (p.name, p.read_bytes(), "video/mp4")) for p in paths]
    r = api.post("/api/jobs", files=files, data={"variations": "2", **fields})
    assert r.status_code == 202, r.text
    return r.json()["jobId"]


def _no_violations(page, where: str) -> None:
    results = Axe().run(page)
    assert results.violations_count == 0, f"{where}:\n{results.generate_snapshot()}\n" + \
        json.dumps([{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]]}
                    for v in results.response["violations"]], indent=1)


def test_queued_videos_show_their_place_and_the_finished_job_what_it_took(page, api, clips):
    wait_job(api, _upload(api, clips[0]))  # one render measured: estimates from here on
    api.post("/api/queue/pause")
    job_id = _upload(api, *clips, name="Queued pair")
    login(page)
    page.goto(f"/#/jobs/{job_id}")
    cards = page.locator("li.video")
    expect(cards.nth(0).locator(".progress-text")).to_have_text("Waiting · next in line")
    expect(cards.nth(1).locator(".progress-text")).to_have_text("Waiting · 2nd in line")
    expect(page).to_have_title("(0 %) Queued pair · Video Refresher")
    _no_violations(page, "job page, queued")

    # One video is cancelled; the other goes on.
    questions = []
    page.once("dialog", lambda d: (questions.append(d.message), d.accept()))
    cards.nth(1).get_by_role("button", name="Cancel second.mp4").click()
    expect(cards.nth(1).locator(".badge")).to_have_text("Cancelled")
    assert questions == ["Cancel second.mp4? The job's other videos go on."]
    expect(cards.nth(0).locator(".progress-text")).to_have_text("Waiting · next in line")

    page.get_by_role("button", name="Notify me when it finishes").click()
    expect(page.get_by_role("button", name="You will be notified")).to_be_disabled()
    api.post("/api/queue/resume")
    expect(job_badge(page)).to_have_text("Partly completed", timeout=RENDER_TIMEOUT)
    expect(cards.nth(0).locator(".progress-text")).to_have_text(
        re.compile(r"^Done · 2 variations · took \d+ s$"))
    expect(page.locator("[data-testid=job-summary]")).to_contain_text(re.compile(r"took \d+ s"))
    words = "Queued pair has finished: 1 of 2 videos done · 1 cancelled."
    expect(page.get_by_test_id("job-announce")).to_have_text(words)
    assert page.evaluate("window.__notifications") == [["Video Refresher", words]]
    expect(page).to_have_title("Queued pair · Video Refresher")

    # The log is one click away: every FFmpeg command of the render.
    log = cards.nth(0).get_by_role("link", name="FFmpeg log of first.mp4 (opens in a new tab)")
    expect(log).to_be_visible()
    with page.context.expect_page() as opened:
        log.click()
    tab = opened.value
    tab.wait_for_load_state()
    text = tab.locator("body").inner_text()
    assert "== attempt 1" in text and "-filter_complex" in text
    tab.close()
    expect(cards.nth(1).get_by_role("link", name=re.compile("^FFmpeg log"))).to_be_hidden()
    _no_violations(page, "job page, completed")


def test_running_and_queued_videos_say_how_long(page):
    login(page)
    job = fake_job("processing", "processing", 40.0)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 65))
    job.update(startedAt=started, etaSeconds=320.0, name="Two clips")
    # Estimates far from a rounding edge: the page counts them down from each fetch.
    first = {**job["videos"][0], "startedAt": None, "etaSeconds": 130.0}
    second = {**job["videos"][0], "id": "v2", "name": "later.mp4", "status": "queued",
              "progress": 0.0, "queuePosition": 2, "startsInSeconds": 140.0, "etaSeconds": 300.0}
    job["videos"] = [first, second]
    page.route(re.compile(r"/api/jobs/jfake$"), lambda route: route.fulfill(json=job))
    page.route_web_socket(re.compile(r"/api/ws\?"), lambda ws: ws.close(code=1011))
    page.goto("/#/jobs/jfake")
    texts = page.locator("li.video .progress-text")
    expect(texts.nth(0)).to_have_text("Rendering · 40 % · about 2 min left")
    expect(texts.nth(1)).to_have_text("Waiting · 2nd in line · starts in about 2 min")
    expect(page.get_by_test_id("job-summary")).to_have_text(
        re.compile(r"^0 of 2 videos done · 20 % · 1 min \d+ s so far · about 5 min left$"))
    expect(page).to_have_title("(20 %) Two clips · Video Refresher")
    _no_violations(page, "job page, rendering")


def test_a_finished_page_follows_a_retry_made_in_another_tab(page, api, clips):
    api.post("/api/queue/pause")
    job_id = _upload(api, clips[0])
    assert api.post(f"/api/jobs/{job_id}/cancel").status_code == 202
    login(page)
    page.goto(f"/#/jobs/{job_id}")
    expect(job_badge(page)).to_have_text("Cancelled")
    page.wait_for_timeout(500)
    video_id = api.get(f"/api/jobs/{job_id}").json()["videos"][0]["id"]
    assert api.post(f"/api/jobs/{job_id}/videos/{video_id}/retry").status_code == 202
    expect(job_badge(page)).to_have_text("Queued", timeout=5_000)
    expect(page.locator("li.video .progress-text")).to_have_text("Waiting · next in line")

    # History follows too: a job made elsewhere appears without a reload.
    page.goto("/#/history")
    expect(page.locator(f'li.job-item[data-job-id="{job_id}"]')).to_be_visible()
    other = _upload(api, clips[1], name="Made elsewhere")
    expect(page.locator(f'li.job-item[data-job-id="{other}"]')).to_contain_text(
        "Made elsewhere", timeout=5_000)


def test_retry_all_failed_retries_every_failed_video(page):
    login(page)
    job = fake_job("failed", "failed", 0.0)
    job["videos"] = [{**job["videos"][0], "id": f"v{i}", "name": f"f{i}.mp4", "retryable": True,
                      "error": "FFmpeg failed"} for i in range(3)]
    job["counts"] = {"failed": 3}
    retried = []

    def retry(route):
        retried.append(route.request.url.rsplit("/", 2)[1])
        route.fulfill(status=202, json=job)

    page.route(re.compile(r"/api/jobs/jfake$"), lambda route: route.fulfill(json=job))
    page.route(re.compile(r"/api/jobs/jfake/videos/v\d/retry$"), retry)
    page.route_web_socket(re.compile(r"/api/ws\?"), lambda ws: ws.close(code=1011))
    page.goto("/#/jobs/jfake")
    page.get_by_role("button", name="Retry all failed").click()
    wait_for(lambda: len(retried) == 3, timeout=5)
    assert sorted(retried) == ["v0", "v1", "v2"]


def test_a_download_that_cannot_work_says_why(page, console):
    console.allow(r"status of 410")  # Chromium logs the probe's answer
    login(page)
    done = fake_job("completed", "completed", 100.0)
    page.route(re.compile(r"/api/jobs/jfake$"), lambda route: route.fulfill(json=done))
    page.route(re.compile(r"/api/jobs/jfake/download\?"), lambda route: route.fulfill(
        status=410, json={"error": {"code": "job_expired",
                                    "message": "This job's results have expired and were deleted."}}))
    page.route_web_socket(re.compile(r"/api/ws\?"), lambda ws: ws.close(code=1011))
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.goto("/#/jobs/jfake")
    page.get_by_role("link", name="Download ZIP").click()
    expect(page.locator(".job-head [role=alert]")).to_have_text(
        "This job's results have expired and were deleted.")
    page.wait_for_timeout(500)
    assert downloads == []


def test_a_job_deleted_in_another_tab_and_history_delete(page, console, api, clips):
    console.allow(r"status of 404")  # Chromium logs the deleted job's 404
    kept = wait_job(api, _upload(api, clips[0], name="Kept"))["id"]
    gone = wait_job(api, _upload(api, clips[0], name="Deleted elsewhere"))["id"]
    login(page)
    page.goto(f"/#/jobs/{gone}")
    expect(job_badge(page)).to_have_text("Completed")
    expect(page.locator(".connection")).to_be_hidden()
    page.wait_for_timeout(500)  # the socket stays open for a finished job
    assert api.delete(f"/api/jobs/{gone}").status_code == 204
    expect(page.get_by_role("heading", name="Job not found")).to_be_visible(timeout=5_000)
    expect(page).to_have_title("Job not found · Video Refresher")

    page.goto("/#/history")
    item = page.locator(f'li.job-item[data-job-id="{kept}"]')
    expect(item.get_by_role("link", name="Kept", exact=True)).to_be_visible()
    _no_violations(page, "history")
    page.once("dialog", lambda d: d.accept())
    item.get_by_role("button", name="Delete Kept").click()
    expect(item).to_have_count(0)
    # The focus was on the button just removed: it goes to the job now in its place, or the
    # page's heading, not back to the top of the page.
    focused = page.evaluate("() => { const e = document.activeElement; return e.tagName + '|'"
                            " + (e.closest('li.job-item') ? 'job' : '') + '|' + e.textContent; }")
    assert focused.startswith("A|job|") or focused == "H1||History", focused
    assert api.get(f"/api/jobs/{kept}").status_code == 404


def test_a_job_link_opened_logged_out_comes_back_after_login(page, api, clips):
    job_id = wait_job(api, _upload(api, clips[0], name="Shared link"))["id"]
    page.goto(f"/#/jobs/{job_id}")
    expect(page).to_have_url(re.compile(r"#/login$"))
    _no_violations(page, "login")
    page.fill("#password", "correct horse battery staple")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(rf"#/jobs/{job_id}$"))
    expect(page.get_by_role("heading", name="Shared link")).to_be_visible()


def test_upload_page_has_a_name_field_and_no_violations(browser, server, console, api, clips):
    for viewport in (DESKTOP, PHONE):
        ctx = browser.new_context(base_url=server.url, viewport=viewport)
        try:
            page = ctx.new_page()
            console.attach(page)
            login(page)
            _no_violations(page, f"upload page {viewport}")
            page.set_input_files("#files", [clips[0]])
            page.fill("#job-name", "Spring ad")
            page.fill("#variations", "1")
            _no_violations(page, f"upload page with a file {viewport}")
            page.get_by_role("button", name="Upload and start").click()
            expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"))
            expect(page.get_by_role("heading", name="Spring ad")).to_be_visible()
            job_id = page.url.rsplit("/", 1)[1]
            assert wait_job(api, job_id)["name"] == "Spring ad"
        finally:
            ctx.close()
    assert not console.unexpected(), console.unexpected()


# -- resumable uploads in the browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("ui-queue-big")
    return make_clip(d, "big.mp4", seconds=6.0, size="640x360", fps=25)


def _patches(page) -> list[dict]:
    seen = []
    page.on("request", lambda r: seen.append(
        {"url": r.url, "offset": r.headers.get("upload-offset")}) if r.method == "PATCH" else None)
    return seen


def test_an_upload_whose_first_chunk_fails_still_completes(page, console, api, clips):
    console.allow(r"ERR_CONNECTION_RESET|ERR_FAILED")
    login(page)
    cut = []

    def first_patch_fails(route):
        if route.request.method == "PATCH" and not cut:
            cut.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r"/api/uploads/u[0-9a-f]+$"), first_patch_fails)
    page.set_input_files("#files", [clips[0]])
    page.fill("#variations", "1")
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"), timeout=20_000)
    assert len(cut) == 1  # the first PATCH was cut; the retry carried the file
    job = wait_job(api, page.url.rsplit("/", 1)[1])
    assert job["status"] == "completed" and job["videos"][0]["name"] == "first.mp4"


def test_a_reload_mid_upload_resumes_where_it_stopped(page, context, console, server, api,
                                                       big_clip):
    console.allow(r"ERR_|status of 4")
    login(page)
    patches = _patches(page)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 150_000})
    page.set_input_files("#files", [big_clip])
    page.fill("#variations", "1")
    page.get_by_role("button", name="Upload and start").click()
    expect(page.get_by_test_id("file-transfer")).to_contain_text("Uploading", timeout=10_000)
    resumable = server.data_dir / "resumable"
    wait_for(lambda: any(p.stat().st_size > 300_000 for p in resumable.iterdir()), timeout=30)
    page.reload()  # the transfer is cut; the server keeps what arrived
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    expect(page.get_by_role("heading", name="New upload")).to_be_visible()
    before = len(patches)
    page.set_input_files("#files", [big_clip])  # the same file again
    page.fill("#variations", "1")
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"#/jobs/j[0-9a-f]+$"), timeout=30_000)
    resumed = patches[before:]
    assert resumed and int(resumed[0]["offset"]) > 300_000, patches
    assert resumed[0]["url"] == patches[0]["url"]  # the same upload, not a new one
    job = wait_job(api, page.url.rsplit("/", 1)[1])
    assert job["status"] == "completed" and job["videos"][0]["size"] == big_clip.stat().st_size
    assert not any(resumable.iterdir())


def test_cancel_upload_stops_and_deletes_it_on_the_server(page, context, console, server, api,
                                                          big_clip):
    # The DELETE may meet the cut PATCH still finishing on the server (409); the client retries.
    console.allow(r"status of 409")
    login(page)
    jobs_before = len(api.get("/api/jobs").json()["jobs"])
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 150_000})
    page.set_input_files("#files", [big_clip])
    page.get_by_role("button", name="Upload and start").click()
    expect(page.get_by_test_id("file-transfer")).to_contain_text("Uploading", timeout=10_000)
    resumable = server.data_dir / "resumable"
    wait_for(lambda: any(resumable.iterdir()), timeout=10)
    page.get_by_role("button", name="Cancel upload").click()
    expect(page.get_by_role("button", name="Upload and start")).to_be_enabled()
    expect(page.locator("form [role=alert]")).to_be_hidden()
    expect(page.get_by_test_id("file-transfer")).to_have_count(0)
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    wait_for(lambda: not any(resumable.iterdir()), timeout=15)  # terminated (DELETE)
    assert len(api.get("/api/jobs").json()["jobs"]) == jobs_before
