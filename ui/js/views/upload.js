// Upload: pick or drop videos, choose options, send them with a progress bar.

import { uploadJob } from "../api.js";
import { formatBytes, formatPercent, h, plural, progressBar, replace, setText } from "../dom.js";

// Soft checks only: the server has the real limits (VR_MAX_UPLOAD, VR_MAX_FILES).
export const MAX_TOTAL_BYTES = 4_000_000_000;
export const MAX_FILES = 10;
const ACCEPT = "video/mp4,video/quicktime,.mp4,.mov";
const TYPES = new Set(["video/mp4", "video/quicktime"]);
const EXTENSIONS = /\.(mp4|mov)$/i;

function fileIssue(file) {
  if (!TYPES.has(file.type) && !EXTENSIONS.test(file.name)) {
    return "Not an MP4 or MOV video";
  }
  if (file.size === 0) return "This file is empty";
  if (file.size > MAX_TOTAL_BYTES) return `Larger than the ${formatBytes(MAX_TOTAL_BYTES)} limit`;
  return null;
}

function fileKey(file) {
  return `${file.name}\u0000${file.size}\u0000${file.lastModified}`;
}

export function renderUpload(outlet) {
  let items = []; // { key, file, issue }
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
  const dropzone = h("div", { class: "dropzone", "data-testid": "dropzone" },
    h("div", { class: "dropzone-icon", "aria-hidden": "true" }),
    h("p", { class: "dropzone-title" }, "Drag MP4 or MOV files here"),
    h("p", { class: "dropzone-or" }, "or"),
    input,
    h("label", { for: "files", class: "btn btn-secondary" }, "Choose files"),
    h("p", { class: "muted small", id: "drop-hint" },
      `Up to ${MAX_FILES} files, ${formatBytes(MAX_TOTAL_BYTES)} in total.`));

  const summary = h("p", { class: "file-summary", "aria-live": "polite" });
  const list = h("ul", { class: "file-list", "aria-label": "Selected videos" });

  const variations = h("input", {
    id: "variations",
    name: "variations",
    type: "number",
    inputmode: "numeric",
    min: "1",
    max: "20",
    step: "1",
    value: "5",
    required: true,
    "aria-describedby": "variations-hint",
  });
  const variationsHint = h("p", { class: "hint", id: "variations-hint" },
    "How many different versions to make of each video (1–20).");
  const noMirror = h("input", {
    id: "no-mirror",
    name: "noMirror",
    type: "checkbox",
    "aria-describedby": "no-mirror-hint",
  });

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

  const form = h("form", { class: "stack", novalidate: true, onsubmit: onSubmit },
    dropzone,
    summary,
    list,
    h("div", { class: "options" },
      h("div", { class: "field" },
        h("label", { for: "variations" }, "Variations per video"),
        variations,
        variationsHint),
      h("div", { class: "field field-check" },
        noMirror,
        h("label", { for: "no-mirror" }, "No mirror"),
        h("p", { class: "hint", id: "no-mirror-hint" },
          "Never flip videos horizontally (keeps on-screen text readable)."))),
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
    const known = new Set(items.map((i) => i.key));
    for (const file of Array.from(fileList || [])) {
      const key = fileKey(file);
      if (known.has(key)) continue;
      known.add(key);
      items.push({ key, file, issue: fileIssue(file) });
    }
    hideError();
    renderList();
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

  function problems() {
    const out = [];
    const bad = items.filter((i) => i.issue).length;
    if (bad) out.push(`Remove ${plural(bad, "flagged file")} to continue.`);
    if (items.length > MAX_FILES) out.push(`At most ${MAX_FILES} files per upload.`);
    const total = items.reduce((n, i) => n + i.file.size, 0);
    if (total > MAX_TOTAL_BYTES) {
      out.push(`${formatBytes(total)} is over the ${formatBytes(MAX_TOTAL_BYTES)} limit per upload.`);
    }
    return out;
  }

  function renderList() {
    const rows = items.map((item) => h("li", {
      class: ["file-item", item.issue && "file-item-bad"],
      "data-name": item.file.name,
    },
    h("div", { class: "file-main" },
      h("span", { class: "file-name" }, item.file.name),
      h("span", { class: "file-size muted" }, formatBytes(item.file.size)),
      item.issue ? h("span", { class: "file-issue" }, item.issue) : null),
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
    const issues = problems();
    summary.classList.toggle("file-summary-bad", issues.length > 0);
    if (items.length === 0) {
      setText(summary, "");
    } else {
      setText(summary, [`${plural(items.length, "video")}, ${formatBytes(total)} in total.`, ...issues]
        .join(" "));
    }
    submit.disabled = Boolean(upload) || items.length === 0 || issues.length > 0;
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
    if (!/^\d+$/.test(raw) || n < 1 || n > 20) return null;
    return n;
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    if (upload) return;
    hideError();
    if (items.length === 0) {
      showError("Add at least one MP4 or MOV video.");
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
      showError("Variations per video must be a whole number from 1 to 20.");
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

    const started = uploadJob(files, { variations: count, effects: noMirror.checked ? "-mirror" : "" },
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
      renderList();
      if (err.status === 401) return; // on the way to the login page
      showError(err.message || "The upload failed. Please try again.");
    }
  }

  function setFormBusy(busy) {
    input.disabled = busy;
    variations.disabled = busy;
    noMirror.disabled = busy;
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

  renderList();

  return {
    confirmLeave: () => (upload ? "An upload is in progress. Leave this page and cancel it?" : null),
    cleanup: () => {
      leaving = true;
      window.removeEventListener("beforeunload", beforeUnload);
      if (upload) upload.abort();
    },
  };
}
