// Effect families: which exist and which are on by default is the server's (GET /api/health
// "effects": [{name, default, geometric}, …], in the order it applies them); this module has
// only the words for them, keyed by family name.
//
// A family on by default can be turned off (`-name`), an opt-in one turned on (`+name`). The
// upload form offers a switch for a family when it has words for that direction here (`off`
// for a default family, `on` for an opt-in one); the job page names, by `noun`, each family
// with words whose state differs from its default. Families without words keep their default.

const WORDS = {
  mirror: {
    noun: "mirror",
    off: { id: "no-mirror", label: "No mirror",
      hint: "Never flip videos horizontally (keeps on-screen text readable)." },
  },
  rotation: {
    noun: "tilt",
    on: { id: "with-tilt", label: "Small tilt",
      hint: "Tilt every variation by under a degree. Slower: renders take about twice as long." },
  },
  hue: {
    noun: "hue shift",
    on: { id: "with-hue", label: "Hue shift",
      hint: "Shift colours by up to 4°. Adds about 20 % to the render time." },
  },
  pitch: {
    noun: "pitch shift",
    on: { id: "with-pitch", label: "Pitch shift",
      hint: "Raise or lower the sound by 3–5 % at the same tempo, so the audio no longer "
        + "fingerprints as the same recording. Voices sound slightly higher or deeper; music "
        + "moves off its key (fine for most ads, not for a jingle that must match a brand)." },
  },
};

/** The families in a health answer ([{ name, default }], in order), or null when missing. */
export function parseEffects(body) {
  const list = body && body.effects;
  if (!Array.isArray(list)) return null;
  return list
    .filter((f) => f && typeof f.name === "string" && typeof f.default === "boolean")
    .map((f) => ({ name: f.name, default: f.default }));
}

/** The families with words here: those on by default first, then the opt-in ones. */
function described(families) {
  const known = families.filter((f) => WORDS[f.name]);
  return [...known.filter((f) => f.default), ...known.filter((f) => !f.default)];
}

/** The upload form's switches: { family, id, label, hint } for each family with words for it. */
export function effectSwitches(families) {
  return described(families)
    .map((f) => ({ family: f, ...WORDS[f.name][f.default ? "off" : "on"] }))
    .filter((s) => s.id);
}

/** The upload's `effects` field for the switches that are checked: "-mirror,+rotation". */
export function effectsField(checked) {
  return checked.map((s) => `${s.family.default ? "-" : "+"}${s.family.name}`).join(",");
}

/**
 * A job's effects in words where they differ from the defaults, from the families and the
 * job's `excludedEffects`: ["no mirror", "with tilt"].
 */
export function effectWords(families, excluded) {
  const off = new Set(excluded || []);
  return described(families)
    .filter((f) => f.default === off.has(f.name))
    .map((f) => `${f.default ? "no" : "with"} ${WORDS[f.name].noun}`);
}
