// API client for the HTTP API (README, "API"): bearer token, JSON errors (uploads: resumable.js).

const TOKEN_KEY = "vr.token";
const EXPIRES_KEY = "vr.expiresAt";

/** An API failure with a stable code and a sentence a person can read. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

// -- token ----------------------------------------------------------------------------------

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: the session lasts as long as the page
  }
}

let memoryToken = null;

export function getToken() {
  const s = storage();
  const token = s ? s.getItem(TOKEN_KEY) : memoryToken;
  if (!token) return null;
  const expires = s ? s.getItem(EXPIRES_KEY) : null;
  if (expires && Date.parse(expires) <= Date.now()) {
    clearToken();
    sessionExpired();
    return null;
  }
  return token;
}

export function setToken(token, expiresAt) {
  const s = storage();
  memoryToken = token;
  if (!s) return;
  s.setItem(TOKEN_KEY, token);
  if (expiresAt) s.setItem(EXPIRES_KEY, expiresAt);
  else s.removeItem(EXPIRES_KEY);
}

export function clearToken() {
  memoryToken = null;
  const s = storage();
  if (!s) return;
  s.removeItem(TOKEN_KEY);
  s.removeItem(EXPIRES_KEY);
}

// Where a logged-out visitor was going (a job link opened from a notification or a chat):
// kept for this tab while they log in, then taken back.
const RETURN_KEY = "vr.returnTo";

export function rememberReturnPath(hash) {
  try {
    if (hash && hash.startsWith("#/") && !hash.startsWith("#/login")) {
      window.sessionStorage.setItem(RETURN_KEY, hash);
    }
  } catch {
    // storage disabled: the visitor lands on the upload page
  }
}

export function takeReturnPath() {
  try {
    const hash = window.sessionStorage.getItem(RETURN_KEY);
    window.sessionStorage.removeItem(RETURN_KEY);
    return hash && hash.startsWith("#/") ? hash : null;
  } catch {
    return null;
  }
}

// Set by the app: what happens when the server says the token is no longer good.
let unauthorizedHandler = () => {};
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}
export function sessionExpired() {
  unauthorizedHandler();
}

// -- requests -------------------------------------------------------------------------------

const NETWORK_MESSAGE = "Could not reach the server. Check your connection and try again.";

async function errorFrom(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  const err = body && body.error;
  if (err && typeof err.message === "string") {
    const out = new ApiError(resp.status, err.code || "error", err.message);
    if (typeof err.upload === "string") out.upload = err.upload; // the resumable upload it names
    // Seconds to wait before asking again (a 429), so a page can count them down.
    const wait = Number.parseInt(resp.headers.get("Retry-After") || "", 10);
    if (wait >= 0) out.retryAfter = wait;
    return out;
  }
  return new ApiError(resp.status, "http_error",
    `The server answered with an error (HTTP ${resp.status}). Please try again.`);
}

/**
 * JSON request. Resolves to the parsed body (or null for an empty one); rejects with ApiError.
 * Any 401 outside the login call ends the session.
 */
export async function request(method, path, { json, auth = true, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (auth) {
    const token = getToken();
    if (!token) {
      throw new ApiError(401, "auth_required", "Please log in.");
    }
    headers.Authorization = `Bearer ${token}`;
  }
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body, signal, cache: "no-store" });
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network_error", NETWORK_MESSAGE);
  }
  if (!resp.ok) {
    const err = await errorFrom(resp);
    if (resp.status === 401 && auth) {
      clearToken();
      sessionExpired();
    }
    throw err;
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export async function login(password) {
  const body = await request("POST", "/api/auth", { json: { password }, auth: false });
  setToken(body.token, body.expiresAt);
  return body;
}

/**
 * End this session on the server too (its token, and the links made with it, stop working),
 * then forget it here. Best effort: offline, the token is forgotten here all the same.
 */
export function logout() {
  const token = getToken();
  clearToken();
  if (!token) return;
  fetch("/api/auth", { method: "DELETE", headers: { Authorization: `Bearer ${token}` },
    keepalive: true }).catch(() => {});
}

/** Public: service status and the upload limits ({ limits: { maxUpload, maxFiles, maxVariations } }). */
export const getHealth = (opts) => request("GET", "/api/health", { ...opts, auth: false });
export const listJobs = (opts) => request("GET", "/api/jobs", opts);
export const getJob = (id, opts) => request("GET", `/api/jobs/${encodeURIComponent(id)}`, opts);
export const cancelJob = (id) => request("POST", `/api/jobs/${encodeURIComponent(id)}/cancel`);
export const cancelVideo = (id, vid) =>
  request("POST", `/api/jobs/${encodeURIComponent(id)}/videos/${encodeURIComponent(vid)}/cancel`);
export const deleteJob = (id) => request("DELETE", `/api/jobs/${encodeURIComponent(id)}`);
export const retryVideo = (id, vid) =>
  request("POST", `/api/jobs/${encodeURIComponent(id)}/videos/${encodeURIComponent(vid)}/retry`);

/**
 * Whether a download link will give a file: asks for its first byte. Resolves when it will;
 * rejects with the server's ApiError (expired, nothing finished, files gone) when it will not,
 * so the page can say why instead of the browser saving the error as a file.
 */
export async function probeDownload(url) {
  let resp;
  try {
    resp = await fetch(url, { headers: { Range: "bytes=0-0" }, cache: "no-store" });
  } catch {
    throw new ApiError(0, "network_error", NETWORK_MESSAGE);
  }
  if (resp.ok) {
    resp.body?.cancel().catch(() => {});
    return;
  }
  const err = await errorFrom(resp);
  if (resp.status === 401) {
    clearToken();
    sessionExpired();
  }
  throw err;
}

/** A plain link target for the ZIP: the token travels in the query (web/app.py: QUERY_TOKEN). */
export function downloadUrl(id) {
  const token = getToken() || "";
  return `/api/jobs/${encodeURIComponent(id)}/download?token=${encodeURIComponent(token)}`;
}

/**
 * A server URL with the token in its query, for what the browser fetches by itself (an
 * `<img>`, a `<video>`, a plain download link); `extra` adds query fields.
 */
export function tokenUrl(url, extra = {}) {
  const query = new URLSearchParams({ ...extra, token: getToken() || "" });
  return `${url}${url.includes("?") ? "&" : "?"}${query}`;
}

/** The live socket; with `jobId` it follows that job only and opens with its snapshot. */
export function websocketUrl(jobId = null) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const token = getToken() || "";
  const job = jobId ? `&job=${encodeURIComponent(jobId)}` : "";
  return `${scheme}//${window.location.host}/api/ws?token=${encodeURIComponent(token)}${job}`;
}
