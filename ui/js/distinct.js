// Distinctness (docs/distinctness.md): how far a video's variations are from the original and
// from each other, from the `distance` figures of its outputs; the job page's pill and file list.

import { formatBytes, h, plural, replace, setText } from "./dom.js";

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

/** The pill with its tooltip, for one video's outputs; hidden while none was measured. */
export function distinctPill(videoId) {
  // A focusable pill with a tooltip that is also its accessible description.
  const tipId = `dist-tip-${String(videoId).replace(/[^\w-]/g, "_")}`;
  const tip = h("span", { class: "dist-tip", role: "tooltip", id: tipId });
  const pill = h("span", {
    class: "dist",
    tabindex: "0",
    "aria-describedby": tipId,
    "data-testid": "distinctness",
    onkeydown: (ev) => {
      if (ev.key === "Escape") tip.dataset.dismissed = "true";
    },
    onblur: () => delete tip.dataset.dismissed,
  });
  const root = h("div", { class: "dist-box", hidden: true }, pill, tip);
  const update = (outputs) => {
    const d = distinctness(outputs);
    root.hidden = !d;
    if (!d) return;
    replace(pill, distinctnessParts(d).map((part, i) => [
      i ? " " : null, h("span", { class: "dist-part" }, part)]));
    pill.dataset.level = d.level;
    const help = distinctnessHelp(d);
    pill.title = help;
    setText(tip, help);
  };
  return { root, update };
}

/** The rows of "Files in the ZIP": each output's name, figures and size. */
export function outputRows(outputs) {
  return outputs.map((o) => h("li", {},
    h("span", { class: "file-name" }, o.name),
    h("span", { class: "out-meta" },
      outputDistance(o),
      h("span", { class: "muted small" }, formatBytes(o.size)))));
}
