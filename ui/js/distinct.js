// Distinctness in plain words (docs/distinctness.md): how each video's variations compare with
// the original the way ad platforms match copies — Meta's PDQ on frames, Chromaprint on the
// audio — from the `distinctness` figures of its outputs.

import { h, plural } from "./dom.js";

// Chromaprint similarity at or above which the audio is still the same recording to a matcher
// (our default effects leave speech at 0.83–0.99; unrelated audio measures about 0.55–0.65).
export const AUDIO_SAME = 0.8;

/** The figures of one output, or null when they were not measured. */
export function figures(output) {
  const d = output && output.distinctness;
  return d && d.video && Number.isFinite(d.video.sourceMatches) ? d : null;
}

/** Does this output still look like a copy: a frame matches its source or a sibling? */
export function matches(d) {
  return d.video.sourceMatches > 0 || (d.video.siblingMatches || 0) > 0;
}

/**
 * A video's verdict over its outputs:
 * { level: "good"|"low", video: "…", audio: "…"|null, flagged: [{name, text}] }, or null.
 */
export function verdict(outputs, { pitchOn = false, tiltOn = false } = {}) {
  const measured = (outputs || []).map((o) => ({ o, d: figures(o) })).filter((x) => x.d);
  if (!measured.length) return null;
  const frames = measured.reduce((n, x) => n + x.d.video.frames, 0);
  const sourceHits = measured.reduce((n, x) => n + x.d.video.sourceMatches, 0);
  const flagged = measured.filter((x) => matches(x.d)).map((x) => ({
    name: x.o.name, text: flaggedText(x.o.name, x.d, tiltOn),
  }));
  const n = measured.length;
  const copies = measured.filter((x) => x.d.video.sourceMatches > 0).length;
  // With placement formats each variation is several files, each measured in its own shape.
  const noun = measured.some((x) => x.o.format && x.o.format !== "source") ? "file" : "variation";
  let video;
  if (flagged.length === 0) {
    video = `${n === 1 ? `The ${noun} differs` : `All ${n} ${noun}s differ`} from the original `
      + `for Meta's PDQ matcher (${sourceHits} of ${frames} frames match).`;
  } else if (copies > 0) {
    video = `${plural(copies, noun)} of ${n} still ${copies === 1 ? "looks" : "look"} `
      + `like a copy of the original to Meta's PDQ matcher (${sourceHits} of ${frames} frames match it).`;
  } else {
    video = `All ${n} ${noun}s differ from the original (0 of ${frames} frames match), but `
      + `${plural(flagged.length, noun)} ${flagged.length === 1 ? "looks" : "look"} like `
      + "a copy of another one to Meta's PDQ matcher.";
  }
  return { level: flagged.length ? "low" : "good", video, audio: audioText(measured, pitchOn), flagged };
}

function flaggedText(name, d, tiltOn) {
  const v = d.video;
  const what = v.sourceMatches > 0
    ? `${v.sourceMatches} of ${v.frames} frames match the original`
    : `${v.siblingMatches} of ${v.frames} frames match another variation`;
  const todo = tiltOn
    ? "Upload the video again for fresh variations, or ask for fewer."
    : "Turn on Small tilt or ask for fewer variations, then upload again.";
  return `${name}: ${what}. ${todo}`;
}

function audioText(measured, pitchOn) {
  const sims = measured.map((x) => x.d.audio && x.d.audio.sourceSimilarity).filter(Number.isFinite);
  if (!sims.length) return null;
  const top = Math.max(...sims);
  const shown = top.toFixed(2);
  if (top >= AUDIO_SAME) {
    return pitchOn
      ? `Audio is still close to the original recording (similarity up to ${shown}).`
      : `Audio is the same recording (similarity up to ${shown}) — turn on Pitch shift to change it.`;
  }
  return `Audio no longer matches the original recording (similarity up to ${shown}; `
    + "1 is the same, about 0.6 unrelated).";
}

/** One variation's figures in short words, for its tile: "PDQ 72 from the original · audio 0.91". */
export function figureText(output) {
  const d = figures(output);
  if (!d) return "";
  const parts = [`PDQ ${d.video.sourceDistance} from the original`];
  if (Number.isFinite(d.video.siblingDistance)) parts.push(`${d.video.siblingDistance} from the closest sibling`);
  if (d.audio && Number.isFinite(d.audio.sourceSimilarity)) {
    parts.push(`audio similarity ${d.audio.sourceSimilarity.toFixed(2)}`);
  }
  if (d.rerolls) parts.push(d.rerolls === 1 ? "re-rolled once" : `re-rolled ${d.rerolls} times`);
  return parts.join(" · ");
}

/** The verdict box of a video card; hidden while nothing was measured. */
export function verdictBox() {
  const videoLine = h("p", { class: "verdict-video" });
  const audioLine = h("p", { class: "verdict-audio" });
  const flaggedList = h("ul", { class: "verdict-flagged" });
  const root = h("div", { class: "verdict", hidden: true, "data-testid": "verdict" },
    videoLine, audioLine, flaggedList);
  const update = (outputs, options) => {
    const v = verdict(outputs, options);
    root.hidden = !v;
    if (!v) return;
    root.dataset.level = v.level;
    videoLine.textContent = v.video;
    audioLine.hidden = !v.audio;
    audioLine.textContent = v.audio || "";
    flaggedList.replaceChildren(...v.flagged.map((f) => h("li", {}, f.text)));
  };
  return { root, update };
}
