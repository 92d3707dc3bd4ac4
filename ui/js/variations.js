// A video's variations side by side with its original: contact strips the render tapped
// (GET …/preview), each variation's effects in words, a click plays it in place, and each
// file downloads alone. The figures' words come from distinct.js.

import { tokenUrl } from "./api.js";
import { formatBytes, h, replace } from "./dom.js";
import { figureText } from "./distinct.js";

/** A contact strip; one that cannot be loaded gives way to a plain label. */
function strip(url, alt) {
  if (!url) return h("span", { class: "strip strip-missing" }, "No preview");
  const img = h("img", { class: "strip", src: tokenUrl(url), alt, loading: "lazy", width: "640" });
  img.addEventListener("error", () => img.replaceWith(
    h("span", { class: "strip strip-missing" }, "No preview")), { once: true });
  return img;
}

/** The original's tile: its strip, captioned. */
function sourceTile(video) {
  return h("figure", { class: "tile tile-source" },
    strip(video.previewUrl, `Frames of the original ${video.name}`),
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
  }, strip(output.previewUrl, `Frames of ${output.name}`), h("span", { class: "tile-play-icon", "aria-hidden": "true" }, "▶"));
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
