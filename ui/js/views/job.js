// Job page: per-video status and progress, live; download, cancel and retry.
//
// The page's job is the server's (GET /api/jobs/{id}, or the socket's `subscribed` snapshot);
// LiveFeed (live.js) keeps it fresh. jobHead() and videoCard() draw it; renderJob() owns the
// state and the actions.

import { cancelJob, downloadUrl, getJob, retryVideo } from "../api.js";
import {
  badge, expiryText, formatBytes, formatDateTime, formatPercent, h, plural, progressBar, replace,
  setText,
} from "../dom.js";
import { verdictBox } from "../distinct.js";
import { effectWords } from "../effects.js";
import { knownHealth, refreshHealth } from "../health.js";
import { ProgressTicks, hasDownload, isActive, jobTitle } from "../jobs.js";
import { LiveFeed } from "../live.js";
import { gallery } from "../variations.js";

/** A sentence for an action's failure; a missing endpoint is said plainly. */
export function actionError(err, what) {
  if (!err) return "";
  if ((err.status === 404 && err.code === "not_found") || err.status === 405) {
    return `This server cannot ${what} yet.`;
  }
  return err.message || `Could not ${what}. Please try again.`;
}

// -- words ------------------------------------------------------------------------------------

function videoStatusText(video, progress) {
  switch (video.status) {
    case "queued": return "Waiting to start";
    case "processing": return `Rendering · ${formatPercent(progress)}`;
    case "completed": return `Done · ${plural((video.outputs || []).length || video.outputCount || 0, "variation")}`;
    case "failed": return "Rendering failed";
    case "cancelled": return "Cancelled";
    case "interrupted": return "Interrupted · will resume";
    default: return video.status;
  }
}

function summaryText(job) {
  const counts = job.counts || {};
  const total = (job.videos || []).length;
  const done = counts.completed || 0;
  const parts = [`${done} of ${plural(total, "video")} done`];
  if (counts.failed) parts.push(`${counts.failed} failed`);
  if (counts.cancelled) parts.push(`${counts.cancelled} cancelled`);
  return parts.join(" · ");
}

/** "Created … · 5 variations per video · no mirror · Expires in …". */
function metaText(job) {
  return [
    `Created ${formatDateTime(job.createdAt)}`,
    `${plural(job.variationsPerVideo, "variation")} per video`,
    // The effects that differ from the defaults (the families come from /api/health).
    ...effectWords(knownHealth().effects || [], job.excludedEffects),
    expiryText(job),
  ].filter(Boolean).join(" · ");
}

function noticeText(job) {
  if (job.status === "expired") return "These results have expired and their files were deleted.";
  if (job.status !== "cancelled") return "";
  return hasDownload(job)
    ? "This job was cancelled. Videos that finished before that can still be downloaded."
    : "This job was cancelled.";
}

// -- components -------------------------------------------------------------------------------

/** The job's card: title, status, overall progress, notices, download and cancel. */
function jobHead(id, onCancel) {
  const title = h("h1", { class: "job-title" }, "Job");
  const status = badge("queued");
  status.hidden = true;
  const meta = h("p", { class: "muted job-meta" });
  const overall = progressBar("Overall progress");
  const overallText = h("p", { class: "progress-text", "data-testid": "job-summary" });
  const connection = h("p", { class: "connection muted small", "aria-live": "off" });
  const alert = h("p", { class: "alert alert-error", role: "alert", hidden: true });
  const notice = h("p", { class: "alert alert-info", role: "status", hidden: true });
  const download = h("a", {
    class: "btn btn-primary",
    href: downloadUrl(id),
    download: "",
    hidden: true,
    "data-testid": "download",
  }, "Download ZIP");
  const cancel = h("button", {
    type: "button",
    class: "btn btn-danger",
    hidden: true,
    onclick: onCancel,
  }, "Cancel job");
  const actions = h("div", { class: "actions" }, download, cancel);
  const root = h("section", { class: "card job-head", "aria-busy": "true" },
    h("div", { class: "title-row" }, title, status),
    meta, overall, overallText, connection, notice, alert, actions);

  /** Draw `job` with its overall `progress`, whether a cancel is on its way and the feed's mode. */
  const update = (job, { progress, cancelling, mode }) => {
    root.setAttribute("aria-busy", "false");
    setText(title, jobTitle(job, "Job"));
    status.hidden = false;
    status.update(job.status);
    setText(meta, metaText(job));
    overall.set(job.status === "completed" ? 100 : progress, job.status);
    const active = isActive(job.status);
    setText(overallText, active
      ? `${summaryText(job)} · ${formatPercent(progress)}`
      : summaryText(job));
    download.hidden = !hasDownload(job);
    download.href = downloadUrl(id);
    cancel.hidden = !active;
    cancel.disabled = cancelling;
    setText(cancel, cancelling ? "Cancelling…" : "Cancel job");
    const words = noticeText(job);
    notice.hidden = !words;
    setText(notice, words);
    connection.hidden = !active;
    setText(connection, mode === "live"
      ? "Live updates on."
      : "Checking for updates every few seconds.");
  };

  /** Show (or with null, hide) an error; `source` says whose it is: "load" or "action". */
  const showAlert = (message, source) => {
    if (source) alert.dataset.source = source;
    setText(alert, message || "");
    alert.hidden = !message;
  };
  const alertSource = () => alert.dataset.source;

  const notFound = () => {
    root.setAttribute("aria-busy", "false");
    replace(root,
      h("h1", {}, "Job not found"),
      h("p", {}, "There is no job with this id. It may have been deleted or expired."),
      h("div", { class: "actions" },
        h("a", { class: "btn btn-primary", href: "#/history" }, "See all jobs"),
        h("a", { class: "btn btn-secondary", href: "#/upload" }, "New upload")));
  };
  return { root, update, showAlert, alertSource, notFound };
}

/** One video's card: status, progress, the distinctness verdict, error, its variations and Retry. */
function videoCard(video, onRetry) {
  const name = h("h2", { class: "video-name" });
  const size = h("span", { class: "muted small" });
  const vbadge = badge(video.status);
  const bar = progressBar(`Progress of ${video.name}`);
  const text = h("p", { class: "progress-text small" });
  const error = h("p", { class: "video-error", hidden: true });
  const verdict = verdictBox();
  const tiles = h("div", { class: "tiles", hidden: true, role: "group",
    "aria-label": `The original and the variations of ${video.name}` });
  const retry = h("button", {
    type: "button",
    class: "btn btn-secondary btn-small",
    hidden: true,
    onclick: () => onRetry(video.id, retry),
  }, "Retry");
  const root = h("li", { class: "card video", "data-video-id": video.id },
    h("div", { class: "title-row" }, h("div", { class: "video-title" }, name, size), vbadge),
    bar, text, verdict.root, error, tiles, h("div", { class: "actions" }, retry));

  let outputsKey = "";
  /**
   * Draw `v` at `progress` percent; `canRetry`: whether its job still allows a retry;
   * `pitchOn`, `tiltOn`: whether the job asked for the pitch shift and the tilt (the verdict's
   * advice);
   * `expired`: the job's files are gone, so no previews.
   */
  const update = (v, progress, { canRetry, pitchOn, tiltOn, expired }) => {
    setText(name, v.name);
    setText(size, formatBytes(v.size));
    vbadge.update(v.status);
    root.dataset.status = v.status;
    bar.set(progress, v.status);
    bar.setAttribute("aria-valuetext", videoStatusText(v, progress));
    setText(text, videoStatusText(v, progress));
    error.hidden = !v.error;
    setText(error, v.error || "");
    retry.hidden = !(v.retryable && canRetry);
    const outs = v.outputs || [];
    // Made anew only when the outputs change, so a playing video keeps playing.
    const key = JSON.stringify([v.previewUrl, outs]);
    if (key !== outputsKey) {
      outputsKey = key;
      replace(tiles, gallery(v));
      verdict.update(outs, { pitchOn, tiltOn });
    }
    tiles.hidden = outs.length === 0 || expired; // an expired job's files are gone
  };
  return { root, update };
}

/** The list of video cards; the cards are made anew only when the videos change. */
function videoList(onRetry) {
  const root = h("ul", { class: "video-list", "aria-label": "Videos in this job" });
  const cards = new Map(); // videoId -> videoCard
  let order = "";
  const update = (job, ticks) => {
    const videos = job.videos || [];
    const ids = videos.map((v) => v.id).join(",");
    if (ids !== order) {
      order = ids;
      cards.clear();
      for (const v of videos) cards.set(v.id, videoCard(v, onRetry));
      replace(root, videos.map((v) => cards.get(v.id).root));
    }
    const flags = {
      canRetry: job.status !== "expired",
      expired: job.status === "expired",
      pitchOn: !(job.excludedEffects || []).includes("pitch"),
      tiltOn: !(job.excludedEffects || []).includes("rotation"),
    };
    for (const v of videos) cards.get(v.id).update(v, ticks.videoProgress(job, v), flags);
  };
  return { root, update };
}

/** What a failed (or, with null, a good) load of the job means for the page. */
function showLoadError(err, head, list) {
  if (!err) {
    if (head.alertSource() === "load") head.showAlert(null);
  } else if (err.status === 404 && err.code !== "not_found") {
    head.notFound(); // this job does not exist (any more)
    list.root.replaceChildren();
  } else {
    head.showAlert(err.status === 0
      ? "Cannot reach the server right now. Retrying…"
      : err.message || "Could not load this job. Retrying…", "load");
  }
}

// -- the page ---------------------------------------------------------------------------------

export function renderJob(outlet, { id }) {
  let job = null;
  let cancelling = false;
  const ticks = new ProgressTicks();
  const head = jobHead(id, onCancel);
  const list = videoList(onRetry);
  outlet.append(head.root, list.root);

  function render() {
    if (!job) return;
    const progress = (job.videos || []).length ? ticks.jobProgress(job) : 0;
    head.update(job, { progress, cancelling, mode: feed.mode });
    list.update(job, ticks);
  }

  // Live updates (the model: live.js).
  const feed = new LiveFeed({
    jobId: id,
    load: () => getJob(id),
    snapshot: (ev) => (ev.type === "subscribed" && ev.job && ev.job.id === id ? ev.job : null),
    isActive: (data) => isActive(data.status),
    onData: (data) => {
      ticks.settle([data]);
      job = data;
      if (!isActive(job.status)) cancelling = false;
      render();
    },
    onTick: (ev) => {
      ticks.record(ev);
      render();
    },
    onConnection: () => render(),
    onError: (err) => showLoadError(err, head, list),
  });

  async function onCancel() {
    if (cancelling) return;
    cancelling = true;
    render();
    head.showAlert(null, "action");
    try {
      await cancelJob(id);
      feed.kick();
    } catch (err) {
      cancelling = false;
      render();
      if (err.status !== 401) head.showAlert(actionError(err, "cancel jobs"));
    }
  }

  async function onRetry(videoId, button) {
    button.disabled = true;
    head.showAlert(null, "action");
    try {
      await retryVideo(id, videoId);
      ticks.forget(id, videoId);
      feed.kick();
    } catch (err) {
      if (err.status !== 401) head.showAlert(actionError(err, "retry videos"));
    } finally {
      button.disabled = false;
    }
  }

  feed.start();
  if (!knownHealth().effects) refreshHealth().then(render);
  return () => feed.stop();
}
