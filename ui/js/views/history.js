// History: every job, newest first, with status, counts, expiry and downloads.
//
// The list is the server's (GET /api/jobs, or the socket's `hello`); LiveFeed (live.js) keeps
// it fresh, and any job's state event refetches it. jobCard() draws one job, jobList() the
// list; renderHistory() owns the state.

import { deleteJob, downloadUrl, listJobs } from "../api.js";
import {
  STATUS_LABELS, badge, expiryText, formatDateTime, formatPercent, h, plural, progressBar, replace,
  setText, timeAgo,
} from "../dom.js";
import { guardDownload } from "../download.js";
import { ProgressTicks, hasDownload, isActive, jobTitle, shownStatus } from "../jobs.js";
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

/** "Created 5 min ago · 2 videos · 5 variations each". */
function metaText(job) {
  const created = timeAgo(job.createdAt);
  return [
    created ? `Created ${created}` : "",
    plural((job.videos || []).length, "video"),
    `${plural(job.variationsPerVideo, "variation")} each`,
  ].filter(Boolean).join(" · ");
}

// -- components -------------------------------------------------------------------------------

/** One job's card: name, status, counts, progress while it runs, expiry, download, details,
 * delete. `actions`: `onDelete(job, button)` and `showError(message)`. */
function jobCard(job, actions) {
  const href = `#/jobs/${encodeURIComponent(job.id)}`;
  const link = h("a", { class: "job-link", href });
  const jbadge = badge(job.status);
  const meta = h("p", { class: "muted small" });
  const counts = h("p", { class: "job-counts" });
  const bar = progressBar(`Progress of ${jobTitle(job)}`);
  const barText = h("p", { class: "progress-text small" });
  const progressBox = h("div", { class: "job-progress" }, bar, barText);
  const expiry = h("p", { class: "small expiry" });
  const download = h("a", { class: "btn btn-primary btn-small", download: "" }, "Download ZIP");
  guardDownload(download, actions.showError);
  const details = h("a", { class: "btn btn-secondary btn-small", href }, "Details");
  let current = job;
  const remove = h("button", {
    type: "button",
    class: "btn btn-danger btn-small",
    onclick: () => actions.onDelete(current, remove),
  }, "Delete");
  const root = h("li", { class: "card job-item", "data-job-id": job.id },
    h("div", { class: "title-row" }, h("h2", { class: "job-name" }, link), jbadge),
    meta, counts, progressBox, expiry,
    h("div", { class: "actions" }, download, details, remove));

  /** Draw `j`, whose videos are at `progress` percent on average. */
  const update = (j, progress) => {
    current = j;
    const name = jobTitle(j);
    remove.setAttribute("aria-label", `Delete ${name}`);
    setText(link, name);
    details.setAttribute("aria-label", `Details of ${name}`);
    jbadge.update(shownStatus(j));
    root.dataset.status = j.status; // the server's own word
    setText(meta, metaText(j));
    meta.title = formatDateTime(j.createdAt);
    setText(counts, countsText(j));
    progressBox.hidden = !isActive(j.status);
    if (!progressBox.hidden) {
      bar.set(progress, j.status);
      setText(barText, formatPercent(progress));
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
  return { root, update };
}

/** The cards, newest first; a card is kept while its job is listed, and moved only on a reorder. */
function jobList(actions) {
  const root = h("ul", { class: "job-list", "aria-label": "Jobs" });
  const cards = new Map(); // jobId -> jobCard
  let order = "";
  const update = (jobs, ticks) => {
    const sorted = newestFirst(jobs);
    const seen = new Set();
    for (const j of sorted) {
      seen.add(j.id);
      if (!cards.has(j.id)) cards.set(j.id, jobCard(j, actions));
      cards.get(j.id).update(j, ticks.jobProgress(j));
    }
    for (const key of [...cards.keys()]) if (!seen.has(key)) cards.delete(key);
    const newOrder = sorted.map((j) => j.id).join(",");
    if (newOrder !== order) {
      order = newOrder;
      replace(root, sorted.map((j) => cards.get(j.id).root));
    }
  };
  return { root, update };
}

// -- the page ---------------------------------------------------------------------------------

export function renderHistory(outlet) {
  let jobs = null;
  const ticks = new ProgressTicks();
  const alert = h("p", { class: "alert alert-error", role: "alert", hidden: true });
  const empty = h("div", { class: "card empty", hidden: true },
    h("p", {}, "No jobs yet."),
    h("a", { class: "btn btn-primary", href: "#/upload" }, "Start a new upload"));
  const loading = h("p", { class: "muted" }, "Loading jobs…");
  const list = jobList({ onDelete, showError });
  const heading = h("h1", { tabindex: "-1" }, "History");
  outlet.append(
    h("div", { class: "page-head" },
      h("div", {},
        heading,
        h("p", { class: "muted" },
          "All jobs, newest first. Results are kept for 24 hours after a job finishes.")),
      h("a", { class: "btn btn-primary", href: "#/upload" }, "New upload")),
    alert, loading, empty, list.root);

  function render() {
    if (!jobs) return;
    loading.hidden = true;
    empty.hidden = jobs.length > 0;
    list.update(jobs, ticks);
  }

  // Live updates (the model: live.js).
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
      alert.hidden = !err;
      if (!err) return;
      loading.hidden = true;
      setText(alert, err.status === 0
        ? "Cannot reach the server right now. Retrying…"
        : err.message || "Could not load the jobs.");
    },
  });
  function showError(message) {
    alert.hidden = !message;
    setText(alert, message || "");
  }

  async function onDelete(job, button) {
    const name = jobTitle(job);
    const question = isActive(job.status)
      ? `Delete ${name}? Its renders stop now, and its files and results are removed.`
      : `Delete ${name}? Its files and results are removed from the server.`;
    if (!window.confirm(question)) return;
    button.disabled = true;
    const at = (jobs || []).findIndex((j) => j.id === job.id);
    try {
      await deleteJob(job.id);
      jobs = (jobs || []).filter((j) => j.id !== job.id);
      render();
      // The focus was on the button just removed: the job now in its place (or the last
      // one) takes it, or the page's heading when none is left.
      const next = outlet.querySelectorAll("li.job-item .job-name a")[Math.min(at, jobs.length - 1)];
      (next || heading).focus();
      feed.refresh();
    } catch (err) {
      button.disabled = false;
      if (err.status !== 401) showError(err.message || `Could not delete ${name}.`);
    }
  }

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
