// A one-shot message for the next view, e.g. why the person is back on the login page.

let pending = null;

export function setFlash(message, kind = "info") {
  pending = { message, kind };
}

export function takeFlash() {
  const f = pending;
  pending = null;
  return f;
}
