// Upload: pick or drop videos, choose options, send them with a progress bar.

import { uploadJob } from "../api.js";
import { formatBytes, formatPercent, h, plural, progressBar, replace, setText } from "../dom.js";
import { effectSwitches, effectsField } from "../effects.js";
import { knownHealth, refreshHealth } from "../health.js";
import { ACCEPT, mayBeVideo } from "../sniff.js";

const FORMATS = "MP4, MOV, WebM, MKV, AVI…";

/** What is wrong with the `index`-th selected item ({ file, video, serverIssue }), or null. */
function fileIssue({ file, video, serverIssue }, index, limits) {
  if (serverIssue) return serverIssue;
  if (video === false) return `Not a video file (${FORMATS})`;
  if (file.size === 0) return "This file is empty";
  if (file.size > limits.maxUpload) return `Larger than the ${formatBytes(limits.maxUpload)} limit`;
  if (index >= limits.maxFiles) return `Over the limit of ${plural(limits.maxFiles, "file")} per upload`;
  return null;
}

function fileKey(file) {
  return `${file.name}\u0000${file.size}\u0000${file.lastModified}`;
}

/** Items ({ key, file }) for the files in `fileList` that are not in `items` yet. */
function newItems(items, fileList) {
  const known = new Set(items.map((i) => i.key));
  const added = [];
  for (const file of Array.from(fileList || [])) {
    const key = fileKey(file);
    if (known.has(key)) continue;
    known.add(key);
    added.push({ key, file });
  }
  return added;
}

/** Sniff each new item's first bytes (item.video: undefined until known), then call `done`. */
function checkContent(added, done) {
  Promise.all(added.map(async (item) => { item.video = await mayBeVideo(item.file); })).then(done);
}

/** Flag the item a 415/422 answer names ("'clip.avi' is not a video we can process: …") with it. */
function flagRejected(items, message) {
  for (const item of items) {
    const { name } = item.file;
    if (message.includes(`'${name}'`) || message.includes(`"${name}"`)) item.serverIssue = message;
  }
}

export function renderUpload(outlet) {
  let items = []; // { key, file, video, serverIssue }
  let limits = knownHealth().limits;
  let switches = []; // { family, id, label, hint, input }: the effect switches offered
  let upload = null; // { abort } while sending
  let leaving = false;

  // -- elements -----------------------------------------------------------------------------
  const input = h("input", {
    id: "files",
    class: "visually-hidden",
    type: "file",
    name: "videos",
    multiple: true,
    accept: ACCEPT,
    "aria-describedby": "drop-hint",
  });
  const dropHint = h("p", { class: "muted small", id: "drop-hint" });
  const dropzone = h("div", { class: "dropzone", "data-testid": "dropzone" },
    h("div", { class: "dropzone-icon", "aria-hidden": "true" }),
    h("p", { class: "dropzone-title" }, `Drag ${FORMATS} files here`),
    h("p", { class: "dropzone-or" }, "or"),
    input,
    h("label", { for: "files", class: "btn btn-secondary" }, "Choose files"),
    dropHint);

  const summary = h("p", { class: "file-summary", "aria-live": "polite" });
  const list = h("ul", { class: "file-list", "aria-label": "Selected videos" });

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
  const variationsHint = h("p", { class: "hint", id: "variations-hint" });
  const bar = progressBar("Upload progress");
  const progressText = h("p", { class: "progress-text", "aria-live": "polite" });
  const cancelUpload = h("button", {
    type: "button",
    class: "btn btn-secondary btn-small",
    onclick: () => upload && upload.abort(),
  }, "Cancel upload");
  const progressBox = h("div", { class: "upload-progress", hidden: true },
    progressText, bar, h("div", { class: "actions" }, cancelUpload));

  const error = h("p", { class: "alert alert-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Upload and start");

  const variationsField = h("div", { class: "field" },
    h("label", { for: "variations" }, "Variations per video"),
    variations,
    variationsHint);
  const options = h("div", { class: "options" }, variationsField);

  const form = h("form", { class: "stack", novalidate: true, onsubmit: onSubmit },
    dropzone,
    summary,
    list,
    options,
    progressBox,
    error,
    h("div", { class: "actions" }, submit));

  outlet.append(h("section", { class: "card" },
    h("h1", {}, "New upload"),
    h("p", { class: "muted" },
      "Each video gets a set of subtly different variations, delivered together as one ZIP."),
    form));

  // -- behaviour ----------------------------------------------------------------------------
  function addFiles(fileList) {
    const added = newItems(items, fileList);
    items.push(...added);
    hideError();
    renderList();
    checkContent(added, () => leaving || renderList());
  }

  function removeItem(key) {
    const index = items.findIndex((i) => i.key === key);
    items = items.filter((i) => i.key !== key);
    renderList();
    // Keep keyboard focus in the list: the next Remove button, else the file picker.
    const buttons = list.querySelectorAll("button");
    const next = buttons[Math.min(index, buttons.length - 1)];
    (next || input).focus();
  }

  function issues() {
    return items.map((item, index) => fileIssue(item, index, limits));
  }

  function problems() {
    const out = [];
    const bad = issues().filter(Boolean).length;
    if (bad) out.push(`Remove ${plural(bad, "flagged file")} to continue.`);
    if (items.some((i) => i.video === undefined)) out.push("Checking the files…");
    if (items.length > limits.maxFiles) out.push(`At most ${plural(limits.maxFiles, "file")} per upload.`);
    const total = items.reduce((n, i) => n + i.file.size, 0);
    if (total > limits.maxUpload) {
      out.push(`${formatBytes(total)} is over the ${formatBytes(limits.maxUpload)} limit per upload.`);
    }
    return out;
  }

  function renderList() {
    const flags = issues();
    const rows = items.map((item, index) => h("li", {
      class: ["file-item", flags[index] && "file-item-bad"],
      "data-name": item.file.name,
    },
    h("div", { class: "file-main" },
      h("span", { class: "file-name" }, item.file.name),
      h("span", { class: "file-size muted" }, formatBytes(item.file.size)),
      flags[index] ? h("span", { class: "file-issue" }, flags[index]) : null),
    h("button", {
      type: "button",
      class: "btn btn-ghost btn-small",
      "aria-label": `Remove ${item.file.name}`,
      disabled: Boolean(upload),
      onclick: () => removeItem(item.key),
    }, "Remove")));
    replace(list, rows);
    list.hidden = items.length === 0;

    const total = items.reduce((n, i) => n + i.file.size, 0);
    const blocking = problems();
    summary.classList.toggle("file-summary-bad", blocking.length > 0);
    if (items.length === 0) {
      setText(summary, "");
    } else {
      setText(summary, [`${plural(items.length, "video")}, ${formatBytes(total)} in total.`, ...blocking]
        .join(" "));
    }
    submit.disabled = Boolean(upload) || items.length === 0 || blocking.length > 0;
  }

  /** Show the limits in the hints and check the selection against them. */
  function applyLimits() {
    setText(dropHint, `Up to ${plural(limits.maxFiles, "file")}, ${formatBytes(limits.maxUpload)} in total.`);
    variations.max = String(limits.maxVariations);
    setText(variationsHint,
      `How many different versions to make of each video (1–${limits.maxVariations}).`);
    renderList();
  }

  /** A checkbox for each effect family the server lists and this app has words for. */
  function showEffects(families) {
    if (!families || switches.length) return;
    switches = effectSwitches(families).map((s) => ({
      ...s,
      input: h("input", {
        id: s.id,
        name: s.id.replace(/-(\w)/g, (_, c) => c.toUpperCase()),
        type: "checkbox",
        disabled: Boolean(upload),
        "aria-describedby": `${s.id}-hint`,
      }),
    }));
    replace(options, variationsField, switches.map((s) => h("div", { class: "field field-check" },
      s.input,
      h("label", { for: s.id }, s.label),
      h("p", { class: "hint", id: `${s.id}-hint` }, s.hint))));
  }

  function showError(message) {
    setText(error, message);
    error.hidden = false;
  }

  function hideError() {
    error.hidden = true;
  }

  function readVariations() {
    const raw = variations.value.trim();
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < 1 || n > limits.maxVariations) return null;
    return n;
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    if (upload) return;
    hideError();
    if (items.length === 0) {
      showError(`Add at least one video (${FORMATS}).`);
      return;
    }
    const issues = problems();
    if (issues.length) {
      showError(issues.join(" "));
      return;
    }
    const count = readVariations();
    if (count === null) {
      variations.setAttribute("aria-invalid", "true");
      showError(`Variations per video must be a whole number from 1 to ${limits.maxVariations}.`);
      variations.focus();
      return;
    }
    variations.removeAttribute("aria-invalid");

    const files = items.map((i) => i.file);
    const total = files.reduce((n, f) => n + f.size, 0);
    progressBox.hidden = false;
    bar.set(0, "active");
    setText(progressText, `Uploading ${plural(files.length, "video")}… 0 %`);
    setFormBusy(true);

    const effects = effectsField(switches.filter((s) => s.input.checked));
    const started = uploadJob(files, { variations: count, effects },
      (loaded, sent) => {
        const pct = sent ? (loaded / sent) * 100 : 0;
        bar.set(pct, "active");
        setText(progressText, loaded >= sent
          ? "Upload complete. Checking the videos…"
          : `Uploading ${plural(files.length, "video")}… ${formatPercent(pct)} `
            + `(${formatBytes(Math.min(loaded, total))} of ${formatBytes(total)})`);
      });
    upload = started;
    renderList();
    try {
      const result = await started.promise;
      upload = null;
      if (leaving) return;
      bar.set(100, "done");
      window.location.hash = `#/jobs/${encodeURIComponent(result.jobId)}`;
    } catch (err) {
      upload = null;
      if (leaving) return;
      progressBox.hidden = true;
      setFormBusy(false);
      if (err.status === 415 || err.status === 422) flagRejected(items, err.message);
      renderList();
      if (err.status === 401) return; // on the way to the login page
      showError(err.message || "The upload failed. Please try again.");
    }
  }

  function setFormBusy(busy) {
    input.disabled = busy;
    variations.disabled = busy;
    for (const s of switches) s.input.disabled = busy;
    dropzone.classList.toggle("dropzone-disabled", busy);
    setText(submit, busy ? "Uploading…" : "Upload and start");
  }

  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = ""; // picking the same file again after removing it still works
  });

  let depth = 0;
  dropzone.addEventListener("dragenter", (ev) => {
    ev.preventDefault();
    depth += 1;
    if (!upload) dropzone.classList.add("dropzone-over");
  });
  dropzone.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer) ev.dataTransfer.dropEffect = upload ? "none" : "copy";
  });
  dropzone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) dropzone.classList.remove("dropzone-over");
  });
  dropzone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    depth = 0;
    dropzone.classList.remove("dropzone-over");
    if (upload) return;
    if (ev.dataTransfer && ev.dataTransfer.files) addFiles(ev.dataTransfer.files);
  });
  // A click anywhere on the zone opens the picker too (the button and input do it themselves).
  dropzone.addEventListener("click", (ev) => {
    if (upload || ev.target === input || ev.target.closest("label")) return;
    input.click();
  });

  const beforeUnload = (ev) => {
    if (!upload) return;
    ev.preventDefault();
    ev.returnValue = "";
  };
  window.addEventListener("beforeunload", beforeUnload);

  applyLimits();
  showEffects(knownHealth().effects);
  // The server's own limits and effects; until they arrive (or if they cannot) the last known
  // ones apply.
  refreshHealth().then((known) => {
    if (leaving) return;
    limits = known.limits;
    applyLimits();
    showEffects(known.effects);
  });

  return {
    confirmLeave: () => (upload ? "An upload is in progress. Leave this page and cancel it?" : null),
    cleanup: () => {
      leaving = true;
      window.removeEventListener("beforeunload", beforeUnload);
      if (upload) upload.abort();
    },
  };
}
