// A video's variations side by side with its original: contact strips the render tapped
// (GET …/preview), each variation's effects in words, a click plays it in place, and each
// file downloads alone. The figures' words come from distinct.js.

import { tokenUrl } from "./api.js";
import { formatBytes, h, replace } from "./dom.js";
import { figureText } from "./distinct.js";

// A contact strip's layout (pipeline/media/preview.py): 4 frames side by side, 4 px apart,
// each 320 px wide and as tall as the picture's shape makes it (distinct.py tap_size).
const STRIP_FRAMES = 4;
const STRIP_GAP = 4;
const TAP_WIDTH = 320;

/**
 * The size of the strip of a picture of `shape` ({width, height}; unknown: 16:9), given to
 * its <img> so that its room is kept before it loads: the page does not jump, and no play
 * button lies over the headings meanwhile. Short clips have fewer frames: once loaded, the
 * image's own shape wins (CSS `height: auto`).
 */
export function stripSize(shape) {
  const [w, h] = shape && shape.width > 0 && shape.height > 0 ? [shape.width, shape.height] : [16, 9];
  return {
    width: STRIP_FRAMES * TAP_WIDTH + (STRIP_FRAMES - 1) * STRIP_GAP,
    height: Math.max(2, Math.round((TAP_WIDTH * h) / w / 2) * 2),
  };
}

/** A contact strip of a picture of `shape`; one that cannot be loaded gives way to a label. */
function strip(url, alt, shape) {
  if (!url) return h("span", { class: "strip strip-missing" }, "No preview");
  const { width, height } = stripSize(shape);
  const img = h("img", { class: "strip", src: tokenUrl(url), alt, loading: "lazy", width, height });
  img.addEventListener("error", () => img.replaceWith(
    h("span", { class: "strip strip-missing" }, "No preview")), { once: true });
  return img;
}

/** The original's tile: its strip, captioned. The strip is in the original's shape when that is
 * one of the job's shapes, else in the first (pipeline/media/quality.py first_pass). */
function sourceTile(video) {
  const outputs = video.outputs || [];
  const shape = outputs.find((o) => !o.format || o.format === "source") || outputs[0];
  return h("figure", { class: "tile tile-source" },
    strip(video.previewUrl, `Frames of the original ${video.name}`, shape),
    h("figcaption", {}, h("strong", {}, "Original"), " ", h("span", { class: "muted small" }, video.name)));
}

/** "9:16 · 406 × 720" (the original's shape: "Original shape"). */
export function shapeText(output) {
  const shape = !output.format || output.format === "source" ? "Original shape" : output.format;
  return output.width && output.height ? `${shape} · ${output.width} × ${output.height}` : shape;
}

/** "−14.0 LUFS · peak −2.5 dBTP" */
export function loudnessText(l) {
  const n = (x) => x.toFixed(1).replace("-", "−");
  return `${n(l.integrated)} LUFS · peak ${n(l.truePeak)} dBTP`;
}

/**
 * A variation's tile: its strip (a button that plays it), name, effects (its shape instead
 * when `grouped` under its variation), figures, download.
 */
function outputTile(output, grouped = false) {
  const label = `Play ${output.name}`;
  const frame = h("div", { class: "tile-media" });
  const play = h("button", {
    type: "button", class: "tile-play", "aria-label": label, title: label,
    onclick: () => {
      const player = h("video", {
        class: "player", src: tokenUrl(output.url), controls: true, autoplay: true,
        // Its shape before the file's own is known (CSS caps its height: a portrait one
        // was taller than a laptop's screen).
        width: output.width || null, height: output.height || null,
        playsinline: true, preload: "metadata", "aria-label": `${output.name} (Escape: back to its frames)`,
        // Escape stops it and puts the strip back, with the focus on it.
        onkeydown: (ev) => {
          if (ev.key !== "Escape") return;
          ev.preventDefault();
          player.pause();
          player.removeAttribute("src");
          player.load(); // lets go of the file's connection
          replace(frame, play);
          play.focus();
        },
      });
      replace(frame, player);
      player.focus();
    },
  }, strip(output.previewUrl, `Frames of ${output.name}`, output), h("span", { class: "tile-play-icon", "aria-hidden": "true" }, "▶"));
  frame.append(play);
  const effects = (output.effects || []).join(" · ") || "no visible change";
  return h("figure", { class: "tile", "data-testid": "variation", "data-format": output.format || "source" },
    frame,
    h("figcaption", {},
      h("span", { class: "file-name" }, output.name),
      grouped
        ? h("span", { class: "tile-shape small" }, shapeText(output))
        : h("span", { class: "tile-effects small" }, effects),
      output.loudness ? h("span", { class: "tile-loudness muted small" }, loudnessText(output.loudness)) : null,
      h("span", { class: "tile-figures muted small" }, figureText(output)),
      h("span", { class: "tile-actions small" },
        h("span", { class: "muted" }, formatBytes(output.size)), " · ",
        h("a", { href: tokenUrl(output.url, { download: "1" }), download: output.name },
          `Download ${output.name}`))));
}

/**
 * The gallery of one video: the original first (when it has a strip), then each variation;
 * empty until it is done.
 */
export function gallery(video) {
  const outputs = video.outputs || [];
  if (!outputs.length) return [];
  const source = video.previewUrl ? [sourceTile(video)] : [];
  if (outputs.every((o) => !o.format || o.format === "source")) {
    return [...source, ...outputs.map((o) => outputTile(o))];
  }
  // Placement formats: each variation's files together, under its effects.
  const byVariation = new Map();
  for (const o of outputs) {
    const key = o.variation ?? o.index;
    if (!byVariation.has(key)) byVariation.set(key, []);
    byVariation.get(key).push(o);
  }
  const groups = [...byVariation.entries()].map(([n, outs]) => {
    const effects = (outs[0].effects || []).join(" · ") || "no visible change";
    const title = `Variation ${n + 1}`;
    return h("section", { class: "variation-group", "aria-label": title, "data-testid": "variation-group" },
      h("h3", { class: "variation-title" }, title, " ", h("span", { class: "tile-effects small" }, effects)),
      h("div", { class: "tiles" }, outs.map((o) => outputTile(o, true))));
  });
  return [...source, ...groups];
}
