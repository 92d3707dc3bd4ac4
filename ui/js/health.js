// What the server says about itself in GET /api/health that the views use: the upload limits
// and the effect families. The last answer is kept for the pages opened after it.

import { getHealth } from "./api.js";
import { parseEffects } from "./effects.js";

// Soft checks only: the server has the real limits (VR_MAX_UPLOAD, VR_MAX_FILES) and enforces
// them; these defaults apply until it answers, or when it cannot.
export const DEFAULT_LIMITS = Object.freeze({ maxUpload: 4_000_000_000, maxFiles: 10, maxVariations: 20 });

/** The limits in a health answer, each falling back to its default when missing or odd. */
export function parseLimits(body) {
  const l = body && body.limits;
  if (!l || typeof l !== "object") return null;
  const pick = (v, d) => (Number.isSafeInteger(v) && v > 0 ? v : d);
  return {
    maxUpload: pick(l.maxUpload, DEFAULT_LIMITS.maxUpload),
    maxFiles: pick(l.maxFiles, DEFAULT_LIMITS.maxFiles),
    maxVariations: pick(l.maxVariations, DEFAULT_LIMITS.maxVariations),
  };
}

// { limits, effects }: effects is null until the server has listed its families.
let known = { limits: DEFAULT_LIMITS, effects: null };
let asking = null;

/** What is known now, without asking. */
export function knownHealth() {
  return known;
}

/** Ask the server (one request at a time); resolves to what is known after its answer. */
export function refreshHealth() {
  if (!asking) {
    asking = getHealth()
      .then((body) => {
        known = {
          limits: parseLimits(body) || known.limits,
          effects: parseEffects(body) || known.effects,
        };
      })
      .catch(() => {})
      .then(() => {
        asking = null;
        return known;
      });
  }
  return asking;
}
