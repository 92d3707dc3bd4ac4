// Job page: per-video status and progress, live; download, cancel and retry.

import { cancelJob, downloadUrl, getJob, retryVideo } from "../api.js";
import {
  badge, expiryText, formatBytes, formatDateTime, formatPercent, h, plural, progressBar, replace,
  setText,
} from "../dom.js";
import { effectWords } from "../effects.js";
import { knownHealth, refreshHealth } from "../health.js";
import { ProgressTicks, hasDownload, isActive, jobTitle } from "../jobs.js";
import { LiveFeed } from "../live.js";

/** A sentence for an action's failure; a missing endpoint is said plainly. */
export function actionError(err, what) {
  if (!err) return "";
  if ((err.status === 404 && err.code === "not_found") || err.status === 405) {
    return `This server cannot ${what} yet.`;
  }
  return err.message || `Could not ${what}. Please try again.`;
}

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

// -- distinctness (docs/distinctness.md) ------------------------------------------------------

export const DISTINCT_HELP = "How different these variations look from the original and from each "
  + "other (perceptual-hash distance: 0 = same picture, 22–30 ≈ unrelated clips; mirroring doesn't "
  + "count). Variations below the minimum are re-rolled automatically.";
const LEVEL_LABELS = { good: "Distinct", fair: "Fairly distinct", low: "Barely distinct" };

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : Math.round((v[mid - 1] + v[mid]) / 2);
}

/** "good" (8 and up), "fair" (4–7) or "low" (under 4) for the smallest distance. */
export function distanceLevel(d) {
  if (d >= 8) return "good";
  return d >= 4 ? "fair" : "low";
}

/**
 * A video's distinctness over its outputs' `distance` figures, or null when none was measured:
 * { source: {min, median}, siblings: {min, median} | null, rerolls, lowest, level, measured, total }.
 */
export function distinctness(outputs) {
  const all = outputs || [];
  const ds = all.map((o) => o.distance).filter((d) => d && Number.isFinite(d.source));
  if (!ds.length) return null;
  const finite = (key) => ds.map((d) => d[key]).filter(Number.isFinite);
  const src = finite("source");
  const sibMin = finite("siblingsMin");
  const sibMedian = finite("siblingsMedian");
  const source = { min: Math.min(...src), median: median(src) };
  const siblings = sibMin.length
    ? { min: Math.min(...sibMin), median: median(sibMedian.length ? sibMedian : sibMin) }
    : null;
  const lowest = Math.min(source.min, siblings ? siblings.min : Infinity);
  return {
    source,
    siblings,
    rerolls: ds.reduce((n, d) => n + (Number(d.rerolls) || 0), 0),
    lowest,
    level: distanceLevel(lowest),
    measured: ds.length,
    total: all.length,
  };
}

const span = (r) => (r.min === r.median ? `${r.min}` : `${r.min}–${r.median}`);

/**
 * The pill's text in pieces that never break inside (lowest–median):
 * ["Distinct:", "src 9–14", "· sib 8–12", "· 1 re-roll"] reads "Distinct: src 9–14 · sib 8–12 · 1 re-roll".
 */
export function distinctnessParts(d) {
  const parts = [`${LEVEL_LABELS[d.level]}:`, `src ${span(d.source)}`];
  if (d.siblings) parts.push(`· sib ${span(d.siblings)}`);
  if (d.rerolls) parts.push(`· ${plural(d.rerolls, "re-roll")}`);
  return parts;
}

/** The pill's tooltip and accessible description: the figures in words, then what they mean. */
export function distinctnessHelp(d) {
  const lines = [`From the original: lowest ${d.source.min}, median ${d.source.median}.`];
  if (d.siblings) {
    lines.push(`From each other: lowest ${d.siblings.min}, median ${d.siblings.median}.`);
  }
  if (d.measured < d.total) lines.push(`Measured for ${d.measured} of ${d.total} variations.`);
  lines.push(DISTINCT_HELP);
  if (d.rerolls) {
    lines.push(`Re-rolled ${d.rerolls === 1 ? "once" : `${d.rerolls} times`} for being too close.`);
  }
  return lines.join(" ");
}

/** One output's figures for the file list: visible shorthand plus words for screen readers. */
function outputDistance(o) {
  const d = o.distance;
  if (!d || !Number.isFinite(d.source)) return null;
  const sib = Number.isFinite(d.siblingsMin) ? d.siblingsMin : null;
  const rerolls = Number(d.rerolls) || 0;
  const short = [`src ${d.source}`];
  const words = [`distance to the original ${d.source}`];
  if (sib !== null) {
    short.push(`sib ${sib}`);
    words.push(`to the nearest other variation ${sib}`);
  }
  if (rerolls) {
    short.push("re-rolled");
    words.push(rerolls === 1 ? "re-rolled once" : `re-rolled ${rerolls} times`);
  }
  const lowest = Math.min(d.source, sib ?? Infinity);
  return h("span", { class: "out-dist small", "data-level": distanceLevel(lowest) },
    h("span", { "aria-hidden": "true" }, short.join(" · ")),
    h("span", { class: "visually-hidden" }, `${words.join(", ")}.`));
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

export function renderJob(outlet, { id }) {
  let job = null;
  const ticks = new ProgressTicks();
  const cards = new Map(); // videoId -> { root, update }
  let cardOrder = "";
  let cancelling = false;

  // -- skeleton ---------------------------------------------------------------------------
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
  const list = h("ul", { class: "video-list", "aria-label": "Videos in this job" });
  const head = h("section", { class: "card job-head", "aria-busy": "true" },
    h("div", { class: "title-row" }, title, status),
    meta, overall, overallText, connection, notice, alert, actions);
  outlet.append(head, list);

  // -- rendering --------------------------------------------------------------------------
  function makeCard(video) {
    const name = h("h2", { class: "video-name" });
    const size = h("span", { class: "muted small" });
    const vbadge = badge(video.status);
    const bar = progressBar(`Progress of ${video.name}`);
    const text = h("p", { class: "progress-text small" });
    const error = h("p", { class: "video-error", hidden: true });
    // Distinctness pill: a focusable pill with a tooltip that is also its accessible description.
    const tipId = `dist-tip-${String(video.id).replace(/[^\w-]/g, "_")}`;
    const distTip = h("span", { class: "dist-tip", role: "tooltip", id: tipId });
    const dist = h("span", {
      class: "dist",
      tabindex: "0",
      "aria-describedby": tipId,
      "data-testid": "distinctness",
      onkeydown: (ev) => {
        if (ev.key === "Escape") distTip.dataset.dismissed = "true";
      },
      onblur: () => delete distTip.dataset.dismissed,
    });
    const distBox = h("div", { class: "dist-box", hidden: true }, dist, distTip);
    const outputs = h("ul", { class: "outputs" });
    const details = h("details", { class: "outputs-box", hidden: true },
      h("summary", {}, "Files in the ZIP"), outputs);
    const retry = h("button", {
      type: "button",
      class: "btn btn-secondary btn-small",
      hidden: true,
      onclick: () => onRetry(video.id, retry),
    }, "Retry");
    const root = h("li", { class: "card video", "data-video-id": video.id },
      h("div", { class: "title-row" }, h("div", { class: "video-title" }, name, size), vbadge),
      bar, text, distBox, error, details, h("div", { class: "actions" }, retry));

    let outputsKey = "";
    const update = (v) => {
      const p = ticks.videoProgress(job, v);
      setText(name, v.name);
      setText(size, formatBytes(v.size));
      vbadge.update(v.status);
      root.dataset.status = v.status;
      bar.set(p, v.status);
      bar.setAttribute("aria-valuetext", videoStatusText(v, p));
      setText(text, videoStatusText(v, p));
      error.hidden = !v.error;
      setText(error, v.error || "");
      retry.hidden = !(v.retryable && job && job.status !== "expired");
      const outs = v.outputs || [];
      const key = outs.map((o) => `${o.index}:${o.name}:${o.size}:${JSON.stringify(o.distance ?? null)}`)
        .join("|");
      if (key !== outputsKey) {
        outputsKey = key;
        replace(outputs, outs.map((o) => h("li", {},
          h("span", { class: "file-name" }, o.name),
          h("span", { class: "out-meta" },
            outputDistance(o),
            h("span", { class: "muted small" }, formatBytes(o.size))))));
        const d = distinctness(outs);
        distBox.hidden = !d;
        if (d) {
          replace(dist, distinctnessParts(d).map((part, i) => [
            i ? " " : null, h("span", { class: "dist-part" }, part)]));
          dist.dataset.level = d.level;
          const help = distinctnessHelp(d);
          dist.title = help;
          setText(distTip, help);
        }
      }
      details.hidden = outs.length === 0;
    };
    update(video);
    return { root, update };
  }

  function render() {
    if (!job) return;
    head.setAttribute("aria-busy", "false");
    setText(title, jobTitle(job, "Job"));
    status.hidden = false;
    status.update(job.status);
    const metaParts = [
      `Created ${formatDateTime(job.createdAt)}`,
      `${plural(job.variationsPerVideo, "variation")} per video`,
    ];
    // The effects that differ from the defaults (the families come from /api/health).
    metaParts.push(...effectWords(knownHealth().effects || [], job.excludedEffects));
    const expiry = expiryText(job);
    if (expiry) metaParts.push(expiry);
    setText(meta, metaParts.join(" · "));

    const videos = job.videos || [];
    const order = videos.map((v) => v.id).join(",");
    if (order !== cardOrder) {
      cardOrder = order;
      cards.clear();
      replace(list, videos.map((v) => {
        const card = makeCard(v);
        cards.set(v.id, card);
        return card.root;
      }));
    } else {
      for (const v of videos) cards.get(v.id).update(v);
    }

    const progress = videos.length ? ticks.jobProgress(job) : 0;
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
    if (job.status === "expired") {
      notice.hidden = false;
      setText(notice, "These results have expired and their files were deleted.");
    } else if (job.status === "cancelled") {
      notice.hidden = false;
      setText(notice, hasDownload(job)
        ? "This job was cancelled. Videos that finished before that can still be downloaded."
        : "This job was cancelled.");
    } else {
      notice.hidden = true;
    }
    connection.hidden = !active;
    setText(connection, feed.mode === "live"
      ? "Live updates on."
      : "Checking for updates every few seconds.");
  }

  function showAlert(message) {
    setText(alert, message || "");
    alert.hidden = !message;
  }

  // -- live updates (the model: live.js) -------------------------------------------------
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
    onError: (err) => {
      if (!err) {
        if (alert.dataset.source === "load") showAlert(null);
        return;
      }
      if (err.status === 404 && err.code !== "not_found") {
        // This job does not exist (any more).
        head.setAttribute("aria-busy", "false");
        replace(head,
          h("h1", {}, "Job not found"),
          h("p", {}, "There is no job with this id. It may have been deleted or expired."),
          h("div", { class: "actions" },
            h("a", { class: "btn btn-primary", href: "#/history" }, "See all jobs"),
            h("a", { class: "btn btn-secondary", href: "#/upload" }, "New upload")));
        list.replaceChildren();
        return;
      }
      alert.dataset.source = "load";
      showAlert(err.status === 0
        ? "Cannot reach the server right now. Retrying…"
        : err.message || "Could not load this job. Retrying…");
    },
  });

  async function onCancel() {
    if (cancelling) return;
    cancelling = true;
    render();
    alert.dataset.source = "action";
    showAlert(null);
    try {
      await cancelJob(id);
      feed.kick();
    } catch (err) {
      cancelling = false;
      render();
      if (err.status !== 401) showAlert(actionError(err, "cancel jobs"));
    }
  }

  async function onRetry(videoId, button) {
    button.disabled = true;
    alert.dataset.source = "action";
    showAlert(null);
    try {
      await retryVideo(id, videoId);
      ticks.forget(id, videoId);
      feed.kick();
    } catch (err) {
      if (err.status !== 401) showAlert(actionError(err, "retry videos"));
    } finally {
      button.disabled = false;
    }
  }

  feed.start();
  if (!knownHealth().effects) refreshHealth().then(render);
  return () => feed.stop();
}
