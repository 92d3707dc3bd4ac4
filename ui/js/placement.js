// The upload form's placement choices: which shapes to deliver (chips with a small outline of
// each), how a picture takes another shape (crop or blurred pad), where a crop sits, and a
// loudness target. What it sends are the job fields `formats`, `fit`, `focus` and `loudness`
// (README, "Placement formats and loudness").

import { h } from "./dom.js";

export const SHAPES = [
  { value: "source", label: "Original", hint: "as uploaded" },
  { value: "9:16", label: "9:16", hint: "Reels, Stories, TikTok, Shorts" },
  { value: "1:1", label: "1:1", hint: "feed" },
  { value: "4:5", label: "4:5", hint: "feed" },
  { value: "16:9", label: "16:9", hint: "YouTube" },
];

export const FOCUS = [
  { value: "center", label: "Centre" },
  { value: "left", label: "Left" },
  { value: "right", label: "Right" },
  { value: "top", label: "Top" },
  { value: "bottom", label: "Bottom" },
];

export const LOUDNESS = [
  { value: "", label: "Leave as is" },
  { value: "-14", label: "−14 LUFS (YouTube, Instagram, Facebook)" },
  { value: "-16", label: "−16 LUFS (TikTok)" },
  { value: "-23", label: "−23 LUFS (broadcast, EBU R128)" },
];

/** The outline of a shape: a box of its ratio (the original: a dashed 16:9 one). */
/**
 * A job's `placement` ({formats, fit, focus, loudness}) in a few words for its page, e.g.
 * "Original, 9:16, 1:1 (cropped, left)" and "−14 LUFS"; none for the defaults (the original's
 * shape, levels left alone).
 */
export function placementWords(placement) {
  if (!placement) return [];
  const words = [];
  const shapes = placement.formats || ["source"];
  if (shapes.some((f) => f !== "source")) {
    const label = (f) => SHAPES.find((s) => s.value === f)?.label || f;
    const focus = placement.fit !== "pad" && placement.focus && placement.focus !== "center"
      ? `, ${placement.focus}` : "";
    words.push(`${shapes.map(label).join(", ")} (${placement.fit === "pad" ? "padded" : "cropped"}${focus})`);
  }
  if (placement.loudness !== null && placement.loudness !== undefined) {
    words.push(`${String(placement.loudness).replace("-", "−")} LUFS`);
  }
  return words;
}

function outline(value) {
  const cls = value === "source" ? "shape shape-source" : `shape shape-${value.replace(":", "x")}`;
  return h("span", { class: cls, "aria-hidden": "true" });
}

/**
 * The fieldset, and what it reads: `fields()` → {formats, fit, focus, loudness} to send.
 * `onChange()` runs when the shapes change (the form clears its error then).
 */
export function placementOptions({ onChange = () => {} } = {}) {
  const chips = SHAPES.map((s) => ({
    ...s,
    input: h("input", {
      type: "checkbox",
      id: `shape-${s.value.replace(":", "x")}`,
      name: "formats",
      value: s.value,
      checked: s.value === "source",
      onchange: () => {
        showFits();
        onChange();
      },
    }),
  }));
  const fits = [
    { value: "crop", label: "Crop to fill", checked: true },
    { value: "pad", label: "Whole picture on a blurred background" },
  ].map((f) => ({
    ...f,
    input: h("input", { type: "radio", name: "fit", id: `fit-${f.value}`, value: f.value,
      checked: Boolean(f.checked), onchange: () => showFits() }),
  }));
  const focus = h("select", { id: "focus", name: "focus" },
    FOCUS.map((f) => h("option", { value: f.value }, f.label)));
  // Where a crop sits; a padded picture is whole, so it is shown for crops only.
  const focusField = h("div", { class: "field" }, h("label", { for: "focus" }, "Crop position"), focus);
  const fitGroup = h("div", { class: "fits", role: "radiogroup", "aria-label": "Other shapes" },
    fits.map((f) => h("label", { class: "fit", for: f.input.id }, f.input, f.label)));
  // How another shape is made means nothing while the original's is the only one chosen.
  const showFits = () => {
    const reshaped = chips.some((c) => c.input.checked && c.value !== "source");
    fitGroup.hidden = !reshaped;
    focusField.hidden = !reshaped || !fits[0].input.checked;
  };
  const loudness = h("select", { id: "loudness", name: "loudness",
    "aria-describedby": "loudness-hint" },
  LOUDNESS.map((l) => h("option", { value: l.value }, l.label)));

  const root = h("fieldset", { class: "field placement" },
    h("legend", {}, "Placements"),
    h("div", { class: "chips", role: "group", "aria-label": "Shapes" },
    chips.map((c) => h("label", { class: "chip", for: c.input.id },
      c.input, outline(c.value),
      h("span", { class: "chip-text" }, h("strong", {}, c.label), h("small", {}, c.hint))))),
    fitGroup,
    focusField,
    h("label", { for: "loudness" }, "Loudness"),
    loudness,
    h("p", { class: "hint", id: "loudness-hint" },
      "Each variation comes in every shape chosen, from one render. With a target, every variation's loudness is measured after encoding."));

  showFits();
  const chosen = () => chips.filter((c) => c.input.checked).map((c) => c.value);
  return {
    root,
    /** The fields to send; null (after saying why with `showError`) when no shape is chosen. */
    fields(showError) {
      const formats = chosen();
      if (!formats.length) {
        showError("Choose at least one shape under Placements.");
        chips[0].input.focus();
        return null;
      }
      const fit = fits.find((f) => f.input.checked)?.value || "crop";
      const isDefault = formats.length === 1 && formats[0] === "source";
      return {
        formats: isDefault ? undefined : formats.join(","),
        fit: isDefault || fit === "crop" ? undefined : fit,
        focus: isDefault || fit !== "crop" || focus.value === "center" ? undefined : focus.value,
        loudness: loudness.value || undefined,
      };
    },
    setBusy(busy) {
      for (const c of chips) c.input.disabled = busy;
      for (const f of fits) f.input.disabled = busy;
      focus.disabled = busy;
      loudness.disabled = busy;
    },
  };
}
