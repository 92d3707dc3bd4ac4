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

/** A variation's tile: its strip (a button that plays it), name, effects, figures, download. */
function outputTile(output) {
  const label = `Play ${output.name}`;
  const frame = h("div", { class: "tile-media" });
  const play = h("button", {
    type: "button", class: "tile-play", "aria-label": label, title: label,
    onclick: () => {
      const player = h("video", {
        class: "player", src: tokenUrl(output.url), controls: true, autoplay: true,
        playsinline: true, preload: "metadata", "aria-label": output.name,
      });
      replace(frame, player);
      player.focus();
    },
  }, strip(output.previewUrl, `Frames of ${output.name}`), h("span", { class: "tile-play-icon", "aria-hidden": "true" }, "▶"));
  frame.append(play);
  const effects = (output.effects || []).join(" · ") || "no visible change";
  return h("figure", { class: "tile", "data-testid": "variation" },
    frame,
    h("figcaption", {},
      h("span", { class: "file-name" }, output.name),
      h("span", { class: "tile-effects small" }, effects),
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
  return [...(video.previewUrl ? [sourceTile(video)] : []), ...outputs.map(outputTile)];
}
