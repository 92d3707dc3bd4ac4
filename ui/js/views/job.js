// Job page: per-video status and progress, live; download, cancel and retry.
//
// The page's job is the server's (GET /api/jobs/{id}, or the socket's `subscribed` snapshot);
// LiveFeed (live.js) keeps it fresh. jobHead() and videoCard() draw it; renderJob() owns the
// state and the actions.

import { cancelJob, cancelVideo, downloadUrl, getJob, retryVideo, tokenUrl } from "../api.js";
import {
  badge, expiryText, formatBytes, formatDateTime, formatEstimate, formatPercent, formatSeconds, h,
  placeText, plural, progressBar, replace, setText,
} from "../dom.js";
import { verdictBox } from "../distinct.js";
import { guardDownload } from "../download.js";
import { takeFlash } from "../flash.js";
import { effectWords } from "../effects.js";
import { knownHealth, refreshHealth } from "../health.js";
import { ProgressTicks, hasDownload, isActive, jobTitle, shownStatus } from "../jobs.js";
import { LiveFeed } from "../live.js";
import { placementWords } from "../placement.js";
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

const RETRYABLE = new Set(["failed", "interrupted", "cancelled"]);

/** The videos "Retry all" sends again. */
function retryable(job) {
  return (job.videos || []).filter((v) => v.retryable && RETRYABLE.has(v.status));
}

/** "Retry all" named after what it retries: "Retry all failed", "Retry all cancelled"; plain
 *  "Retry all" for a mix (a cancelled job offered to retry "all failed"). */
function retryAllText(videos) {
  const statuses = new Set(videos.map((v) => v.status));
  return statuses.size === 1 ? `Retry all ${[...statuses][0]}` : "Retry all";
}

/** Seconds between two ISO times, or null. */
function secondsBetween(from, to) {
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) && ms >= 0 ? ms / 1000 : null;
}

/**
 * Seconds until a video is done: while rendering, from its own progress once it is a tenth
 * of the way (the time so far, scaled); before that, the server's estimate less the time since
 * it was fetched (`age`, seconds). Null when there is none.
 */
export function videoLeft(video, progress, age, now = Date.now()) {
  if (video.status === "processing" && progress >= 10 && video.startedAt) {
    const elapsed = (now - Date.parse(video.startedAt)) / 1000;
    if (elapsed > 0) return elapsed * (100 - Math.min(progress, 100)) / progress;
  }
  if (typeof video.etaSeconds !== "number") return null;
  return Math.max(video.etaSeconds - age, 0);
}

function queuedText(video, age, offline) {
  const parts = ["Waiting"];
  if (video.queuePosition) parts.push(placeText(video.queuePosition));
  // Offline, counted down from a stale answer, "starts in" would be a guess.
  if (typeof video.startsInSeconds === "number" && !offline) {
    const left = video.startsInSeconds - age;
    parts.push(left > 1 ? `starts in ${formatEstimate(left)}` : "starts soon");
  } else if (!video.queuePosition) {
    parts.push("to start");
  }
  return parts.join(" · ");
}

/** "5 variations", or with placement formats "5 variations × 3 shapes". */
function doneText(video) {
  const outs = video.outputs || [];
  if (!outs.length) return plural(video.outputCount || 0, "variation");
  const variations = new Set(outs.map((o) => o.variation ?? o.index)).size;
  const shapes = new Set(outs.map((o) => o.format || "source")).size;
  return plural(variations, "variation") + (shapes > 1 ? ` × ${plural(shapes, "shape")}` : "");
}

/** `offline`: the server cannot be reached, so no estimates (see timingText). */
function videoStatusText(video, progress, age = 0, offline = false) {
  switch (video.status) {
    case "queued": return queuedText(video, age, offline);
    case "processing": {
      const left = offline ? null : videoLeft(video, progress, age);
      return [`Rendering · ${formatPercent(progress)}`,
        left === null ? "" : `${formatEstimate(left)} left`].filter(Boolean).join(" · ");
    }
    case "completed": {
      const took = secondsBetween(video.startedAt, video.finishedAt);
      return [`Done · ${doneText(video)}`,
        took === null ? "" : `took ${formatSeconds(took)}`].filter(Boolean).join(" · ");
    }
    // The attempt says that a retry ran (and failed again), however quickly it did.
    case "failed": return video.attempts > 1 ? `Rendering failed (attempt ${video.attempts})`
      : "Rendering failed";
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

/**
 * While it runs: how long it has and how long it should still take; once done, what it took.
 * None for a running job while the server cannot be reached (`offline`): counted on from the
 * last answer, "so far" and "left" would be guesses about a job the page no longer hears of.
 */
function timingText(job, ticks, age, offline, now = Date.now()) {
  if (offline && isActive(job.status)) return ""; // what a finished job took stays true
  if (isActive(job.status)) {
    const lefts = (job.videos || []).filter((v) => isActive(v.status))
      .map((v) => videoLeft(v, ticks.videoProgress(job, v), age, now));
    const parts = [];
    if (job.startedAt) parts.push(`${formatSeconds((now - Date.parse(job.startedAt)) / 1000)} so far`);
    if (lefts.length && lefts.every((l) => l !== null)) {
      // The job's own estimate plays the queue forward; the videos' own are fresher.
      const server = typeof job.etaSeconds === "number" ? Math.max(job.etaSeconds - age, 0) : 0;
      parts.push(`${formatEstimate(Math.max(server, ...lefts))} left`);
    }
    return parts.join(" · ");
  }
  const took = secondsBetween(job.createdAt, job.completedAt);
  return job.status === "completed" && took !== null ? `took ${formatSeconds(took)}` : "";
}

/** The overall bar: full once done, the share of videos that finished when some did not. */
function overallPercent(job, shown, progress) {
  const videos = job.videos || [];
  if (shown === "partial" && videos.length) {
    return (videos.filter((v) => v.status === "completed").length / videos.length) * 100;
  }
  return job.status === "completed" ? 100 : progress;
}

/** "Created … · 5 variations per video · no mirror · Expires in …". */
function metaText(job) {
  return [
    `Created ${formatDateTime(job.createdAt)}`,
    `${plural(job.variationsPerVideo, "variation")} per video`,
    // The effects that differ from the defaults (the families come from /api/health).
    ...effectWords(knownHealth().effects || [], job.excludedEffects),
    ...placementWords(job.placement),
    expiryText(job),
  ].filter(Boolean).join(" · ");
}

function noticeText(job) {
  if (job.status === "expired") return "These results have expired and their files were deleted.";
  if (job.status === "completed") return gapsText(job.videos || []);
  if (job.status !== "cancelled") return "";
  return hasDownload(job)
    ? "This job was cancelled. Videos that finished before that can still be downloaded."
    : "This job was cancelled.";
}

/** For a finished job some of whose videos did not finish: how many, and what the ZIP holds
 *  ("2 of 6 videos did not finish (1 failed, 1 cancelled); the ZIP holds the 4 that did."). */
function gapsText(videos) {
  const left = videos.filter((v) => v.status !== "completed");
  if (!left.length) return "";
  const counts = ["failed", "cancelled"]
    .map((s) => [s, left.filter((v) => v.status === s).length])
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`);
  const done = videos.length - left.length;
  const why = counts.length ? ` (${counts.join(", ")})` : "";
  return `${left.length} of ${plural(videos.length, "video")} did not finish${why}; `
    + `the ZIP holds the ${done} that did.`;
}

// -- components -------------------------------------------------------------------------------

// The line under a running job's progress, by how the page hears of it (its dot's colour
// follows `data-state`): a socket, polling, or no answer from the server at all.
const CONNECTION_WORDS = {
  live: "Live updates on.",
  polling: "Checking for updates every few seconds.",
  offline: "Not connected to the server: what you see may be out of date. Trying again…",
};

/** The job's card: title, status, overall progress, notices, download, cancel, retry all. */
function jobHead(id, { onCancel, onRetryAll, onNotify }) {
  const title = h("h1", { class: "job-title" }, "Job");
  const status = badge("queued");
  status.hidden = true;
  const meta = h("p", { class: "muted job-meta" });
  const overall = progressBar("Overall progress");
  // Until the first answer: a slow network shows that something is coming.
  const overallText = h("p", { class: "progress-text", "data-testid": "job-summary" },
    "Loading…");
  const connection = h("p", { class: "connection muted small", "aria-live": "off" });
  // Says once, to screen readers, that the job finished (the page may be in another tab).
  const announce = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite",
    "data-testid": "job-announce" });
  const alert = h("p", { class: "alert alert-error", role: "alert", hidden: true });
  const notice = h("p", { class: "alert alert-info", role: "status", hidden: true });
  const download = h("a", {
    class: "btn btn-primary",
    href: downloadUrl(id),
    download: "",
    hidden: true,
    "data-testid": "download",
  }, "Download ZIP");
  guardDownload(download, (message) => showAlert(message, "action"));
  const cancel = h("button", {
    type: "button",
    class: "btn btn-danger",
    hidden: true,
    onclick: onCancel,
  }, "Cancel job");
  const retryAll = h("button", {
    type: "button",
    class: "btn btn-secondary",
    hidden: true,
    onclick: () => onRetryAll(retryAll),
  }, "Retry all failed");
  const notify = h("button", {
    type: "button",
    class: "btn btn-secondary",
    hidden: true,
    onclick: () => onNotify(notify),
  }, "Notify me when it finishes");
  const actions = h("div", { class: "actions" }, download, cancel, retryAll, notify);
  const root = h("section", { class: "card job-head", "aria-busy": "true" },
    h("div", { class: "title-row" }, title, status),
    meta, overall, overallText, connection, notice, alert, announce, actions);

  /**
   * Draw `job` with its overall `progress`, the timing words, whether a cancel is on its way,
   * the feed's mode and the notification choice (`notifying`: "off", "on" or "unavailable").
   */
  const update = (job, { progress, timing, cancelling, mode, notifying }) => {
    root.setAttribute("aria-busy", "false");
    setText(title, jobTitle(job, "Job"));
    status.hidden = false;
    const shown = shownStatus(job);
    status.update(shown);
    root.dataset.status = job.status; // the server's own word
    setText(meta, metaText(job));
    overall.set(overallPercent(job, shown, progress), shown);
    const active = isActive(job.status);
    setText(overallText, [summaryText(job), active ? formatPercent(progress) : "", timing]
      .filter(Boolean).join(" · "));
    download.hidden = !hasDownload(job);
    download.href = downloadUrl(id);
    cancel.hidden = !active;
    const again = retryable(job);
    retryAll.hidden = again.length < 2 || job.status === "expired";
    setText(retryAll, retryAllText(again));
    notify.hidden = !active || notifying === "unavailable";
    notify.disabled = notifying === "on";
    setText(notify, notifying === "on" ? "You will be notified" : "Notify me when it finishes");
    cancel.disabled = cancelling;
    setText(cancel, cancelling ? "Cancelling…" : "Cancel job");
    const words = noticeText(job);
    notice.hidden = !words;
    setText(notice, words);
    // Shown while the job moves, and whenever the server cannot be reached: it is then the
    // page's only word on it (no alert beside it).
    connection.hidden = !active && mode !== "offline";
    connection.dataset.state = mode;
    setText(connection, CONNECTION_WORDS[mode] || CONNECTION_WORDS.polling);
  };

  /** Show (or with null, hide) an error; `source` says whose it is: "load" or "action". */
  const showAlert = (message, source) => {
    if (source) alert.dataset.source = source;
    setText(alert, message || "");
    alert.hidden = !message;
  };
  const alertSource = () => alert.dataset.source;
  const say = (words) => setText(announce, words);

  const notFound = () => {
    root.setAttribute("aria-busy", "false");
    document.title = "Job not found · Video Refresher"; // not the gone job's "(23 %) name"
    replace(root,
      h("h1", {}, "Job not found"),
      h("p", {}, "There is no job with this id. It may have been deleted or expired."),
      h("div", { class: "actions" },
        h("a", { class: "btn btn-primary", href: "#/history" }, "See all jobs"),
        h("a", { class: "btn btn-secondary", href: "#/upload" }, "New upload")));
  };
  return { root, update, showAlert, alertSource, notFound, say };
}

/**
 * One video's card: status, progress, the distinctness verdict, error, its variations, Retry,
 * Cancel and the link to its FFmpeg log.
 */
function videoCard(video, { onRetry, onCancelVideo }) {
  const name = h("h2", { class: "video-name", tabindex: "-1" });
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
    "aria-label": `Retry ${video.name}`,
    // Retry hides once the video is queued again: the focus stays in its card, on its name.
    onclick: () => onRetry(video.id, retry, name),
  }, "Retry");
  const cancel = h("button", {
    type: "button",
    class: "btn btn-secondary btn-small",
    hidden: true,
    "aria-label": `Cancel ${video.name}`,
    onclick: () => onCancelVideo(video, cancel),
  }, "Cancel");
  const log = h("a", {
    class: "btn btn-link btn-small",
    target: "_blank",
    rel: "noopener",
    hidden: true,
    "aria-label": `FFmpeg log of ${video.name} (opens in a new tab)`,
  }, "FFmpeg log");
  const root = h("li", { class: "card video", "data-video-id": video.id },
    h("div", { class: "title-row" }, h("div", { class: "video-title" }, name, size), vbadge),
    bar, text, verdict.root, error, tiles, h("div", { class: "actions" }, retry, cancel, log));

  let outputsKey = "";
  /**
   * Draw `v` at `progress` percent; `canRetry`: whether its job still allows a retry;
   * `pitchOn`, `tiltOn`: whether the job asked for the pitch shift and the tilt (the verdict's
   * advice);
   * `expired`: the job's files are gone, so no previews.
   */
  const update = (v, progress, { canRetry, pitchOn, tiltOn, expired, age, offline }) => {
    setText(name, v.name);
    setText(size, formatBytes(v.size));
    vbadge.update(v.status);
    root.dataset.status = v.status;
    bar.set(progress, v.status);
    const words = videoStatusText(v, progress, age, offline);
    bar.setAttribute("aria-valuetext", words);
    setText(text, words);
    error.hidden = !v.error;
    setText(error, v.error || "");
    retry.hidden = !(v.retryable && canRetry);
    cancel.hidden = !isActive(v.status);
    log.hidden = !v.logUrl || !v.attempts || expired;
    if (v.logUrl) log.href = tokenUrl(v.logUrl);
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
function videoList(actions) {
  const root = h("ul", { class: "video-list", "aria-label": "Videos in this job" });
  const cards = new Map(); // videoId -> videoCard
  let order = "";
  const update = (job, ticks, age, offline) => {
    const videos = job.videos || [];
    const ids = videos.map((v) => v.id).join(",");
    if (ids !== order) {
      order = ids;
      cards.clear();
      for (const v of videos) cards.set(v.id, videoCard(v, actions));
      replace(root, videos.map((v) => cards.get(v.id).root));
    }
    const flags = {
      canRetry: job.status !== "expired",
      expired: job.status === "expired",
      pitchOn: !(job.excludedEffects || []).includes("pitch"),
      tiltOn: !(job.excludedEffects || []).includes("rotation"),
      age,
      offline,
    };
    for (const v of videos) cards.get(v.id).update(v, ticks.videoProgress(job, v), flags);
  };
  return { root, update };
}

/**
 * What a failed (or, with null, a good) load of the job means for the page; `shown`: whether
 * the page shows the job already (its connection line then says that the server cannot be
 * reached, and an alert would say it twice).
 */
function showLoadError(err, head, list, shown) {
  if (!err || (err.status === 0 && shown)) {
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

const CANCEL_JOB_QUESTION = "Cancel this job? Videos that already finished are kept and can "
  + "still be downloaded; the others stop now and can be retried later.";
// How often the page redraws its estimates between server updates.
const CLOCK_MS = 5000;

/** The tab's title: the progress first while it runs, so it shows in a narrow tab. */
function tabTitle(job, progress) {
  const name = jobTitle(job, "Job");
  return isActive(job.status)
    ? `(${Math.round(progress)} %) ${name} · Video Refresher`
    : `${name} · Video Refresher`;
}

function finishedWords(job) {
  const name = jobTitle(job, "The job");
  switch (job.status) {
    case "completed": return `${name} has finished: ${summaryText(job)}.`;
    case "failed": return `${name} has failed: ${summaryText(job)}.`;
    case "cancelled": return `${name} was cancelled.`;
    default: return "";
  }
}

export function renderJob(outlet, { id }) {
  let job = null;
  let fetchedAt = Date.now();
  let cancelling = false;
  let unreachable = false; // the last load found no server (not an error answer)
  let notifying = typeof window.Notification === "function"
    && window.Notification.permission !== "denied" ? "off" : "unavailable";
  const ticks = new ProgressTicks();
  const head = jobHead(id, { onCancel, onRetryAll, onNotify });
  const list = videoList({ onRetry, onCancelVideo });
  // Word from the upload page (files it had to leave out of this job).
  const flash = takeFlash();
  if (flash) {
    outlet.append(h("p", { class: `alert alert-${flash.kind}`, role: "status",
      "data-testid": "job-flash" }, flash.message));
  }
  outlet.append(head.root, list.root);

  function render() {
    if (!job) return;
    const progress = (job.videos || []).length ? ticks.jobProgress(job) : 0;
    const age = (Date.now() - fetchedAt) / 1000;
    head.update(job, {
      progress, timing: timingText(job, ticks, age, unreachable), cancelling,
      mode: unreachable ? "offline" : feed.mode, notifying,
    });
    list.update(job, ticks, age, unreachable);
    document.title = tabTitle(job, progress);
  }

  /** A job that was running has stopped: say so, and notify when asked to. */
  function finished(previous, current) {
    if (!previous || !isActive(previous.status) || isActive(current.status)) return;
    const words = finishedWords(current);
    if (!words) return;
    head.say(words);
    if (notifying === "on") {
      try {
        new window.Notification("Video Refresher", { body: words, tag: `job-${id}` });
      } catch {
        // Some browsers only allow notifications from a service worker: the page says it anyway.
      }
    }
  }

  // Live updates (the model: live.js).
  const feed = new LiveFeed({
    jobId: id,
    load: () => getJob(id),
    snapshot: (ev) => (ev.type === "subscribed" && ev.job && ev.job.id === id ? ev.job : null),
    isActive: (data) => isActive(data.status),
    onData: (data) => {
      ticks.settle([data]);
      const previous = job;
      job = data;
      fetchedAt = Date.now();
      if (!isActive(job.status)) cancelling = false;
      render();
      finished(previous, job);
    },
    onTick: (ev) => {
      ticks.record(ev);
      unreachable = false; // the server talks (a fetch failed while the socket stayed up)
      render();
    },
    onConnection: () => render(),
    onError: (err) => {
      const was = unreachable;
      unreachable = Boolean(err) && err.status === 0;
      showLoadError(err, head, list, Boolean(job));
      if (unreachable === was) return;
      render();
      // The connection line is not read out as it changes: say the change once.
      if (job) head.say(unreachable ? "Not connected to the server. Trying again." : "Connected again.");
    },
  });

  async function onCancel() {
    if (cancelling || !window.confirm(CANCEL_JOB_QUESTION)) return;
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

  /** One video's button: `action()` with the button held, then follow the job; `what` says
   * what failed. Returns whether the action went through. */
  async function videoAction(button, action, what) {
    button.disabled = true;
    head.showAlert(null, "action");
    try {
      await action();
      feed.kick();
      return true;
    } catch (err) {
      if (err.status !== 401) head.showAlert(actionError(err, what));
      return false;
    } finally {
      button.disabled = false;
    }
  }

  function onCancelVideo(video, button) {
    if (!window.confirm(`Cancel ${video.name}? The job's other videos go on.`)) return;
    videoAction(button, () => cancelVideo(id, video.id), "cancel videos");
  }

  async function retry(videoId) {
    await retryVideo(id, videoId);
    ticks.forget(id, videoId);
  }

  async function onRetry(videoId, button, then) {
    if (await videoAction(button, () => retry(videoId), "retry videos")) then.focus();
  }

  async function onRetryAll(button) {
    const failed = retryable(job);
    button.disabled = true;
    head.showAlert(null, "action");
    const results = await Promise.allSettled(failed.map((v) => retry(v.id)));
    button.disabled = false;
    feed.kick();
    const refused = results.filter((r) => r.status === "rejected" && r.reason.status !== 401);
    if (refused.length) {
      head.showAlert(`${plural(refused.length, "video")} could not be retried: `
        + actionError(refused[0].reason, "retry videos"));
    }
  }

  async function onNotify() {
    try {
      const permission = await window.Notification.requestPermission();
      notifying = permission === "granted" ? "on" : "unavailable";
    } catch {
      notifying = "unavailable";
    }
    render();
  }

  feed.start();
  if (!knownHealth().effects) refreshHealth().then(render);
  const clock = setInterval(() => {
    if (document.visibilityState !== "hidden") render();
  }, CLOCK_MS);
  return () => {
    clearInterval(clock);
    feed.stop();
  };
}
