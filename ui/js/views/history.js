// History: every job, newest first, with status, counts, expiry and downloads.

import { downloadUrl, listJobs } from "../api.js";
import {
  STATUS_LABELS, badge, expiryText, formatDateTime, formatPercent, h, plural, progressBar, replace,
  setText, timeAgo,
} from "../dom.js";
import { ProgressTicks, hasDownload, isActive, jobTitle } from "../jobs.js";
import { LiveFeed } from "../live.js";

const COUNT_ORDER = ["completed", "processing", "queued", "interrupted", "failed", "cancelled"];
const TICK_MS = 30_000;

function countsText(job) {
  const counts = job.counts || {};
  const parts = COUNT_ORDER.filter((s) => counts[s])
    .map((s) => `${counts[s]} ${STATUS_LABELS[s].toLowerCase()}`);
  return parts.join(" · ");
}

function newestFirst(jobs) {
  return [...jobs].sort((a, b) => (Date.parse(b.createdAt) || 0) - (Date.parse(a.createdAt) || 0));
}

export function renderHistory(outlet) {
  let jobs = null;
  const cards = new Map(); // jobId -> { root, update }
  let order = "";
  const ticks = new ProgressTicks();

  const alert = h("p", { class: "alert alert-error", role: "alert", hidden: true });
  const empty = h("div", { class: "card empty", hidden: true },
    h("p", {}, "No jobs yet."),
    h("a", { class: "btn btn-primary", href: "#/upload" }, "Start a new upload"));
  const loading = h("p", { class: "muted" }, "Loading jobs…");
  const list = h("ul", { class: "job-list", "aria-label": "Jobs" });
  outlet.append(
    h("div", { class: "page-head" },
      h("div", {},
        h("h1", {}, "History"),
        h("p", { class: "muted" },
          "All jobs, newest first. Results are kept for 24 hours after a job finishes.")),
      h("a", { class: "btn btn-primary", href: "#/upload" }, "New upload")),
    alert, loading, empty, list);

  function makeCard(job) {
    const link = h("a", { class: "job-link", href: `#/jobs/${encodeURIComponent(job.id)}` });
    const jbadge = badge(job.status);
    const meta = h("p", { class: "muted small" });
    const counts = h("p", { class: "job-counts" });
    const bar = progressBar(`Progress of ${jobTitle(job)}`);
    const barText = h("p", { class: "progress-text small" });
    const progressBox = h("div", { class: "job-progress" }, bar, barText);
    const expiry = h("p", { class: "small expiry" });
    const download = h("a", { class: "btn btn-primary btn-small", download: "" }, "Download ZIP");
    const details = h("a", {
      class: "btn btn-secondary btn-small",
      href: `#/jobs/${encodeURIComponent(job.id)}`,
    }, "Details");
    const root = h("li", { class: "card job-item", "data-job-id": job.id },
      h("div", { class: "title-row" }, h("h2", { class: "job-name" }, link), jbadge),
      meta, counts, progressBox, expiry, h("div", { class: "actions" }, download, details));

    const update = (j) => {
      const name = jobTitle(j);
      setText(link, name);
      details.setAttribute("aria-label", `Details of ${name}`);
      jbadge.update(j.status);
      root.dataset.status = j.status;
      const created = timeAgo(j.createdAt);
      setText(meta, [
        created ? `Created ${created}` : "",
        plural((j.videos || []).length, "video"),
        `${plural(j.variationsPerVideo, "variation")} each`,
      ].filter(Boolean).join(" · "));
      meta.title = formatDateTime(j.createdAt);
      setText(counts, countsText(j));
      const active = isActive(j.status);
      progressBox.hidden = !active;
      if (active) {
        const p = ticks.jobProgress(j);
        bar.set(p, j.status);
        setText(barText, formatPercent(p));
      }
      const exp = expiryText(j);
      setText(expiry, exp);
      expiry.hidden = !exp;
      expiry.classList.toggle("expired", exp === "Expired");
      const canDownload = hasDownload(j) && exp !== "Expired";
      download.hidden = !canDownload;
      download.href = canDownload ? downloadUrl(j.id) : "#/history";
      download.setAttribute("aria-label", `Download ZIP of ${name}`);
    };
    update(job);
    return { root, update };
  }

  function render() {
    if (!jobs) return;
    loading.hidden = true;
    empty.hidden = jobs.length > 0;
    const sorted = newestFirst(jobs);
    const newOrder = sorted.map((j) => j.id).join(",");
    const seen = new Set();
    for (const j of sorted) {
      seen.add(j.id);
      const card = cards.get(j.id);
      if (card) card.update(j);
      else cards.set(j.id, makeCard(j));
    }
    for (const key of [...cards.keys()]) if (!seen.has(key)) cards.delete(key);
    if (newOrder !== order) {
      order = newOrder;
      replace(list, sorted.map((j) => cards.get(j.id).root));
    }
  }

  const feed = new LiveFeed({
    load: () => listJobs(),
    snapshot: (ev) => (ev.type === "hello" && Array.isArray(ev.jobs) ? { jobs: ev.jobs } : null),
    isActive: (data) => (data.jobs || []).some((j) => isActive(j.status)),
    onData: (data) => {
      jobs = data.jobs || [];
      ticks.settle(jobs);
      render();
    },
    onTick: (ev) => {
      ticks.record(ev);
      render();
    },
    onError: (err) => {
      if (!err) {
        alert.hidden = true;
        return;
      }
      loading.hidden = true;
      setText(alert, err.status === 0
        ? "Cannot reach the server right now. Retrying…"
        : err.message || "Could not load the jobs.");
      alert.hidden = false;
    },
  });
  feed.start();

  // Keep "Created … ago" and "Expires in …" honest, and pick up jobs started elsewhere.
  const ticker = setInterval(() => {
    if (document.visibilityState === "hidden") return;
    render();
    if (!feed.active) feed.refresh();
  }, TICK_MS);

  return () => {
    clearInterval(ticker);
    feed.stop();
  };
}
