// Small DOM helpers. Everything is built with createElement/textContent: no HTML strings.

/**
 * Create an element.
 *   h("button", { class: "btn", type: "button", onclick: fn }, "Label")
 * Attribute rules:
 *   class / text            -> className / textContent
 *   on<event>: function     -> addEventListener(event, fn)
 *   value, checked, disabled, hidden, indeterminate, multiple -> set as DOM properties
 *   null / undefined / false -> skipped;  true -> empty attribute
 *   anything else           -> setAttribute(name, String(value))
 * Children may be nodes, strings, numbers, arrays, or null/false (skipped).
 */
const PROPS = new Set(["value", "checked", "disabled", "hidden", "indeterminate", "multiple"]);

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (name === "text") {
      el.textContent = String(value);
    } else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (PROPS.has(name)) {
      el[name] = value;
    } else if (value === false) {
      continue;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Set text only when it changed (keeps screen readers and selection calm). */
export function setText(el, text) {
  const t = String(text ?? "");
  if (el.textContent !== t) el.textContent = t;
}

/** A progress bar: a track with a fill whose width is set from JS (CSP forbids style attributes). */
export function progressBar(label) {
  const fill = h("div", { class: "bar-fill" });
  const bar = h("div", {
    class: "bar",
    role: "progressbar",
    "aria-label": label,
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": "0",
  }, fill);
  bar.set = (percent, state) => {
    const p = Math.max(0, Math.min(100, Number(percent) || 0));
    fill.style.width = `${p}%`;
    bar.setAttribute("aria-valuenow", String(Math.round(p)));
    bar.dataset.state = state || "";
  };
  bar.set(0);
  return bar;
}

/** A status pill. */
export function badge(status) {
  const el = h("span", { class: "badge" });
  el.update = (s) => {
    el.dataset.status = s;
    setText(el, STATUS_LABELS[s] || s);
  };
  el.update(status);
  return el;
}

export const STATUS_LABELS = {
  queued: "Queued",
  processing: "Processing",
  completed: "Completed",
  partial: "Partly completed", // a completed job some of whose videos did not finish
  failed: "Failed",
  cancelled: "Cancelled",
  interrupted: "Interrupted",
  expired: "Expired",
};

// -- formatting -----------------------------------------------------------------------------

export function formatBytes(n) {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  if (i === 0) return `${v} ${v === 1 ? "byte" : "bytes"}`;
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function formatPercent(p) {
  const v = Math.max(0, Math.min(100, Number(p) || 0));
  return `${v >= 10 || v === 0 ? Math.round(v) : v.toFixed(1)} %`;
}

/** "3 h 20 min", "45 min", "less than a minute" for a duration in ms. */
export function formatSpan(ms) {
  if (ms < 60_000) return "less than a minute";
  const minutes = Math.floor(ms / 60_000);
  const hours = Math.floor(minutes / 60);
  const mins = minutes % 60;
  if (hours >= 48) return `${Math.floor(hours / 24)} days`;
  if (hours === 0) return `${mins} min`;
  return mins ? `${hours} h ${mins} min` : `${hours} h`;
}

export function formatDateTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

export function timeAgo(iso, now = Date.now()) {
  if (!iso) return "";
  const ms = now - new Date(iso).getTime();
  if (Number.isNaN(ms)) return "";
  if (ms < 60_000) return "just now";
  return `${formatSpan(ms)} ago`;
}

/** Text for a job's expiry: "Expires in 23 h 59 min", "Expired", or "" when not set. */
export function expiryText(job, now = Date.now()) {
  if (job.status === "expired") return "Expired";
  if (!job.expiresAt) return "";
  const left = new Date(job.expiresAt).getTime() - now;
  if (Number.isNaN(left)) return "";
  return left <= 0 ? "Expired" : `Expires in ${formatSpan(left)}`;
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** A measured duration in seconds: "8 s", "2 min 5 s", "1 h 4 min". */
export function formatSeconds(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return s % 60 ? `${minutes} min ${s % 60} s` : `${minutes} min`;
  const mins = minutes % 60;
  return mins ? `${Math.floor(minutes / 60)} h ${mins} min` : `${Math.floor(minutes / 60)} h`;
}

/** An estimate in seconds, rounded as estimates should be: "a few seconds", "about 2 min". */
export function formatEstimate(seconds) {
  const s = Math.max(0, Number(seconds) || 0);
  if (s < 15) return "a few seconds";
  if (s < 60) return `about ${Math.round(s / 10) * 10} s`;
  if (s < 3600) return `about ${Math.round(s / 60)} min`;
  const hours = Math.floor(s / 3600);
  const mins = Math.round((s % 3600) / 600) * 10;
  return mins ? `about ${hours} h ${mins} min` : `about ${hours} h`;
}

/** The place in line in words: "next in line", "2nd in line". */
export function placeText(position) {
  if (position === 1) return "next in line";
  const n = Number(position);
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
  return `${n}${suffix} in line`;
}
