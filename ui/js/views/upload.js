// Upload: pick or drop videos, choose options, send them with a progress bar.
//
// dropZone(), fileList(), uploadOptions() and uploadProgress() draw the form's parts;
// renderUpload() owns the selection (selection.js) and the upload in flight.

import { setFlash } from "../flash.js";
import { createJobFromUploads, refusesTheFile, uploadFiles } from "../resumable.js";
import {
  append, formatBytes, formatEstimate, formatPercent, h, plural, progressBar, replace, setText,
} from "../dom.js";
import { effectSwitches, effectsField } from "../effects.js";
import { placementOptions } from "../placement.js";
import { knownHealth, refreshHealth } from "../health.js";
import { FORMATS, Selection } from "../selection.js";
import { ACCEPT } from "../sniff.js";

// -- components -------------------------------------------------------------------------------

/** The drop zone with the file picker; `onFiles(fileList)` unless `isBusy()`. */
function dropZone(onFiles, isBusy) {
  const input = h("input", {
    id: "files",
    class: "visually-hidden",
    type: "file",
    name: "videos",
    multiple: true,
    accept: ACCEPT,
    "aria-describedby": "drop-hint",
  });
  const hint = h("p", { class: "muted small", id: "drop-hint" });
  const root = h("div", { class: "dropzone", "data-testid": "dropzone" },
    h("div", { class: "dropzone-icon", "aria-hidden": "true" }),
    h("p", { class: "dropzone-title" }, `Drag ${FORMATS} files here`),
    h("p", { class: "dropzone-or" }, "or"),
    input,
    h("label", { for: "files", class: "btn btn-secondary" }, "Choose files"),
    hint);

  // "Choose files" looks like a button, so Enter opens the picker as Space does (browsers
  // differ on what Enter does on a file input; Chromium opens it too, and once only).
  input.addEventListener("change", () => {
    onFiles(input.files);
    input.value = ""; // picking the same file again after removing it still works
  });
  let depth = 0;
  const over = (on) => root.classList.toggle("dropzone-over", on);
  root.addEventListener("dragenter", (ev) => {
    ev.preventDefault();
    depth += 1;
    if (!isBusy()) over(true);
  });
  root.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer) ev.dataTransfer.dropEffect = isBusy() ? "none" : "copy";
  });
  root.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) over(false);
  });
  root.addEventListener("drop", (ev) => {
    ev.preventDefault();
    depth = 0;
    over(false);
    if (!isBusy() && ev.dataTransfer && ev.dataTransfer.files) onFiles(ev.dataTransfer.files);
  });
  // A click anywhere on the zone opens the picker too (the button and input do it themselves).
  root.addEventListener("click", (ev) => {
    if (isBusy() || ev.target === input || ev.target.closest("label")) return;
    input.click();
  });

  return {
    root,
    input,
    setLimits: (limits) => setText(hint,
      `Up to ${plural(limits.maxFiles, "file")}, ${formatBytes(limits.maxUpload)} each.`),
    setBusy: (busy) => {
      input.disabled = busy;
      root.classList.toggle("dropzone-disabled", busy);
    },
  };
}

/** One file's upload in words: "Waiting", "Uploading · 45 % · 2.1 MB/s · about 10 s left". */
function transferText(t) {
  if (t.phase === "waiting") return "Waiting";
  if (t.phase === "done") return "Uploaded";
  const pct = t.total ? (t.sent / t.total) * 100 : 0;
  if (t.phase === "retrying") return `Connection lost at ${formatPercent(pct)} · trying again…`;
  if (t.phase !== "uploading") return "";
  const pace = t.speed > 0
    ? ` · ${formatBytes(t.speed)}/s · ${formatEstimate((t.total - t.sent) / t.speed)} left` : "";
  return `Uploading · ${formatPercent(pct)}${pace}`;
}

/** `message` about file `name`, led by the name unless it names the file already (the
 * server's words usually do: "'a.mp4' is not a video we can process"). */
function named(name, message) {
  return message.includes(name) ? message : `${name}: ${message}`;
}

/** The summary line and the list of selected files, each with its issue and Remove. */
function fileList(onRemove) {
  const summary = h("p", { class: "file-summary", "aria-live": "polite" });
  const list = h("ul", { class: "file-list", "aria-label": "Selected videos" });

  const row = (item, issue, busy) => h("li", {
    class: ["file-item", issue && "file-item-bad"],
    "data-name": item.file.name,
  },
  h("div", { class: "file-main" },
    h("span", { class: "file-name" }, item.file.name),
    h("span", { class: "file-size muted" }, formatBytes(item.file.size)),
    issue ? h("span", { class: "file-issue" }, issue) : null,
    !issue && item.transfer ? h("span", { class: "file-transfer muted small",
      "data-testid": "file-transfer" }, transferText(item.transfer)) : null),
  h("button", {
    type: "button",
    class: "btn btn-ghost btn-small",
    "aria-label": `Remove ${item.file.name}`,
    disabled: busy,
    onclick: () => onRemove(item.key),
  }, "Remove"));

  /** Draw `selection`; `blocking` are the sentences for what keeps it from being sent. */
  const update = (selection, issues, blocking, busy) => {
    replace(list, selection.items.map((item, i) => row(item, issues[i], busy)));
    list.hidden = selection.size === 0;
    summary.classList.toggle("file-summary-bad", blocking.length > 0);
    // "videos" only once each file's content says so: before, or with a flagged one, "files".
    const noun = selection.items.every((i) => i.video === true) ? "video" : "file";
    setText(summary, selection.size === 0 ? "" : [
      `${plural(selection.size, noun)}, ${formatBytes(selection.totalBytes)} in total.`,
      ...blocking,
    ].join(" "));
  };

  /** After a removal: focus the next Remove button, else `fallback`. */
  const focusAfter = (index, fallback) => {
    const buttons = list.querySelectorAll("button");
    (buttons[Math.min(index, buttons.length - 1)] || fallback).focus();
  };
  return { summary, list, update, focusAfter };
}

/**
 * The drop zone, the summary and the list over a Selection, checked against `getLimits()`.
 * `onAdd()` when files come in, `onChange(blocking)` after each drawing with what keeps the
 * selection from being sent.
 */
function filePicker(getLimits, isBusy, { onAdd, onChange }) {
  const selection = new Selection();
  let stopped = false;
  const zone = dropZone(add, isBusy);
  const files = fileList(remove);

  function render() {
    const limits = getLimits();
    const blocking = selection.problems(limits);
    files.update(selection, selection.issues(limits), blocking, isBusy());
    onChange(blocking);
  }

  function add(fileList) {
    const checked = selection.add(fileList);
    onAdd();
    render();
    checked.then(() => stopped || render());
  }

  function remove(key) {
    const index = selection.remove(key);
    render();
    files.focusAfter(index, zone.input); // keep keyboard focus in the list
  }

  return {
    selection,
    parts: [zone.root, files.summary, files.list],
    render,
    setLimits: (limits) => {
      zone.setLimits(limits);
      render();
    },
    setBusy: zone.setBusy,
    /** Show a file's upload (resumable.js's state) in its row, with its own speed. */
    showTransfer: (item, state) => {
      if (!item.rate || state.phase === "waiting") item.rate = uploadRate();
      item.transfer = { ...state, speed: item.rate.add(state.sent) };
      render();
    },
    stop: () => {
      stopped = true;
    },
  };
}

/** Variations per video and a switch for each effect family this app has words for. */
function uploadOptions(limits) {
  const variations = h("input", {
    id: "variations",
    name: "variations",
    type: "number",
    inputmode: "numeric",
    min: "1",
    max: String(limits.maxVariations),
    step: "1",
    value: "5",
    required: true,
    "aria-describedby": "variations-hint",
  });
  const hint = h("p", { class: "hint", id: "variations-hint" });
  const variationsField = h("div", { class: "field" },
    h("label", { for: "variations" }, "Variations per video"), variations, hint);
  const name = h("input", {
    id: "job-name",
    name: "name",
    type: "text",
    maxlength: "120",
    autocomplete: "off",
    "aria-describedby": "job-name-hint",
  });
  const nameField = h("div", { class: "field" },
    h("label", { for: "job-name" }, "Job name (optional)"), name,
    h("p", { class: "hint", id: "job-name-hint" },
      "Shown in History and used as the ZIP's file name. Empty: the first video's name."));
  const root = h("div", { class: "options" }, nameField, variationsField);
  let switches = []; // effectSwitches() with their checkbox as `input`

  const switchField = (s) => h("div", { class: "field field-check" },
    s.input,
    h("label", { for: s.id }, s.label),
    h("p", { class: "hint", id: `${s.id}-hint` }, s.hint));

  /** The switches for the server's families (once they are known). */
  const showEffects = (families, busy) => {
    if (!families || switches.length) return;
    switches = effectSwitches(families).map((s) => ({
      ...s,
      input: h("input", {
        id: s.id,
        name: s.id.replace(/-(\w)/g, (_, c) => c.toUpperCase()),
        type: "checkbox",
        disabled: busy,
        "aria-describedby": `${s.id}-hint`,
      }),
    }));
    // Appended, not re-rendered: a field being typed in keeps its focus.
    append(root, switches.map(switchField));
  };

  return {
    root,
    variations,
    showEffects,
    setLimits: (l) => {
      variations.max = String(l.maxVariations);
      setText(hint, `How many different versions to make of each video (1–${l.maxVariations}).`);
    },
    /** The number asked for, or null when it is not one from 1 to the limit. */
    readVariations: (l) => {
      const raw = variations.value.trim();
      const n = Number(raw);
      return /^\d+$/.test(raw) && n >= 1 && n <= l.maxVariations ? n : null;
    },
    effects: () => effectsField(switches.filter((s) => s.input.checked)),
    name: () => name.value.trim(),
    setBusy: (busy) => {
      variations.disabled = busy;
      name.disabled = busy;
      for (const s of switches) s.input.disabled = busy;
    },
  };
}

/** The upload's progress bar with its words and Cancel upload. */
function uploadProgress(onCancel) {
  const bar = progressBar("Upload progress");
  const text = h("p", { class: "progress-text", "aria-live": "polite" });
  const cancel = h("button", {
    type: "button",
    class: "btn btn-secondary btn-small",
    onclick: onCancel,
  }, "Cancel upload");
  const root = h("div", { class: "upload-progress", hidden: true },
    text, bar, h("div", { class: "actions" }, cancel));
  const rate = uploadRate();
  return {
    root,
    start: (count) => {
      root.hidden = false;
      rate.reset();
      bar.set(0, "active");
      setText(text, `Uploading ${plural(count, "video")}… 0 %`);
    },
    /** `loaded` of `sent` bytes of the request are out; `total`: the videos' bytes;
     *  `retrying`: a file's request failed and is being tried again. */
    update: (count, loaded, sent, total, retrying = false) => {
      const pct = sent ? (loaded / sent) * 100 : 0;
      const speed = rate.add(loaded);
      bar.set(pct, "active");
      const pace = retrying ? " · connection lost, trying again…" : speed > 0
        ? ` · ${formatBytes(speed)}/s · ${formatEstimate((sent - loaded) / speed)} left`
        : "";
      setText(text, loaded >= sent
        ? "Upload complete. Checking the videos…"
        : `Uploading ${plural(count, "video")}… ${formatPercent(pct)} `
          + `(${formatBytes(Math.min(loaded, total))} of ${formatBytes(total)})${pace}`);
    },
    done: () => bar.set(100, "done"),
    hide: () => { root.hidden = true; },
  };
}

/**
 * The upload's speed in bytes per second over the last few seconds (0 until there is a second
 * of it), so a stall shows as a falling speed, not as the average since the start.
 */
function uploadRate(windowMs = 5000) {
  let samples = [];
  return {
    reset: () => { samples = []; },
    add: (loaded, now = Date.now()) => {
      samples.push([now, loaded]);
      while (samples.length > 2 && now - samples[1][0] > windowMs) samples.shift();
      const [t0, b0] = samples[0];
      return now - t0 >= 1000 ? ((loaded - b0) * 1000) / (now - t0) : 0;
    },
  };
}

/** The card with the form around `parts`, its error line and the submit button. */
function uploadForm(parts, onSubmit) {
  const error = h("p", { class: "alert alert-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Upload and start");
  const root = h("section", { class: "card" },
    h("h1", {}, "New upload"),
    h("p", { class: "muted" },
      "Each video gets a set of subtly different variations, delivered together as one ZIP."),
    h("form", { class: "stack", novalidate: true, onsubmit: onSubmit },
      ...parts, error, h("div", { class: "actions" }, submit)));
  return {
    root,
    /** Say what is wrong (null: nothing). */
    showError: (message) => {
      setText(error, message || "");
      error.hidden = !message;
    },
    setBusy: (busy) => setText(submit, busy ? "Uploading…" : "Upload and start"),
    setSendable: (ok) => { submit.disabled = !ok; },
  };
}

/** Ask before the tab closes while `isBusy()`; returns the function that stops asking. */
function guardUnload(isBusy) {
  const beforeUnload = (ev) => {
    if (!isBusy()) return;
    ev.preventDefault();
    ev.returnValue = "";
  };
  window.addEventListener("beforeunload", beforeUnload);
  return () => window.removeEventListener("beforeunload", beforeUnload);
}

// -- the page ---------------------------------------------------------------------------------

export function renderUpload(outlet) {
  let limits = knownHealth().limits;
  let upload = null; // { abort } while sending
  let leaving = false;

  const picker = filePicker(() => limits, () => Boolean(upload), {
    onAdd: () => form.showError(null),
    onChange: (blocking) => form.setSendable(!upload && selection.size > 0 && !blocking.length),
  });
  const { selection } = picker;
  const options = uploadOptions(limits);
  const placement = placementOptions({ onChange: () => form.showError(null) });
  const progress = uploadProgress(() => upload && upload.abort(true));
  const form = uploadForm([...picker.parts, options.root, placement.root, progress.root],
    onSubmit);
  outlet.append(form.root);

  /** Show the limits in the hints and check the selection against them. */
  function applyLimits() {
    options.setLimits(limits);
    picker.setLimits(limits);
  }

  function setFormBusy(busy) {
    picker.setBusy(busy);
    options.setBusy(busy);
    placement.setBusy(busy);
    form.setBusy(busy);
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    if (upload) return;
    const count = checkForm(selection, options, limits, form.showError);
    if (count === null) return;
    const where = placement.fields(form.showError);
    if (where === null) return;
    const items = [...selection.items];
    const videos = items.map((i) => i.file);
    const total = selection.totalBytes;
    const sent = videos.map(() => 0);
    progress.start(videos.length);
    setFormBusy(true);
    for (const item of items) item.serverIssue = null;
    // Each file on its own (resumable.js); a refused one is marked in its row, the rest go on.
    upload = uploadFiles(videos, (index, state) => {
      sent[index] = state.sent;
      picker.showTransfer(items[index], state);
      // A file the server refused stays flagged until removed; one the network or a full
      // server stopped can be sent again as it is.
      if (state.phase === "refused" && refusesTheFile(state.error)) {
        items[index].serverIssue = state.error.message;
      }
      const loaded = sent.reduce((a, b) => a + b, 0);
      const retrying = items.some((i) => i.transfer && i.transfer.phase === "retrying");
      progress.update(videos.length, loaded, total, total, retrying);
    });
    picker.render();
    try {
      const results = await upload.promise;
      if (leaving) return;
      const finished = results.filter((r) => r.id);
      if (!finished.length) throw results[0].error;
      const byId = new Map(finished.map((r) => [r.id, items[r.index]]));
      const left = [];
      const job = await createJobFromUploads(finished.map((r) => r.id),
        { variations: count, effects: options.effects() || undefined, name: options.name() || undefined,
          ...where },
        (id, err) => {
          byId.get(id).serverIssue = err.message;
          left.push(named(byId.get(id).file.name, err.message));
        });
      upload = null;
      for (const r of finished) r.forget(); // in the job (or refused by it): not to resume
      if (leaving) return;
      progress.done();
      const refused = results.filter((r) => r.error)
        .map((r) => named(items[r.index].file.name, r.error.message));
      if (refused.length || left.length) {
        setFlash(`Left out of this job: ${[...refused, ...left].join(" · ")}`, "warning");
      }
      window.location.hash = `#/jobs/${encodeURIComponent(job.jobId)}`;
    } catch (err) {
      upload = null;
      if (leaving) return;
      progress.hide();
      setFormBusy(false);
      for (const item of items) item.transfer = null;
      picker.render();
      if (err.status !== 401 && err.code !== "aborted") {
        form.showError(err.message || "The upload failed. Please try again.");
      }
    }
  }

  const stopGuard = guardUnload(() => Boolean(upload));
  applyLimits();
  options.showEffects(knownHealth().effects, false);
  // The server's own limits and effects; until they arrive (or if they cannot) the last known
  // ones apply.
  refreshHealth().then((known) => {
    if (leaving) return;
    limits = known.limits;
    applyLimits();
    options.showEffects(known.effects, Boolean(upload));
  });

  return {
    confirmLeave: () => (upload ? "An upload is in progress. Leave this page and cancel it?" : null),
    cleanup: () => {
      leaving = true;
      picker.stop();
      stopGuard();
      if (upload) upload.abort();
    },
  };
}

/**
 * The variations to ask for when the form can be sent; otherwise null, after saying why with
 * `showError` (null: no error).
 */
function checkForm(selection, options, limits, showError) {
  showError(null);
  if (selection.size === 0) {
    showError(`Add at least one video (${FORMATS}).`);
    return null;
  }
  const problems = selection.problems(limits);
  if (problems.length) {
    showError(problems.join(" "));
    return null;
  }
  const count = options.readVariations(limits);
  if (count === null) {
    options.variations.setAttribute("aria-invalid", "true");
    showError(`Variations per video must be a whole number from 1 to ${limits.maxVariations}.`);
    options.variations.focus();
    return null;
  }
  options.variations.removeAttribute("aria-invalid");
  return count;
}
