// Resumable uploads with tus (the server: web/resumable.py): each file on its own, a few at a
// time, in chunks, retried with backoff after a network error, and resumed after a page reload
// (tus-js-client keeps each upload's URL in localStorage under the file's fingerprint: the
// same file chosen again goes on from where it stopped). Then the job from the finished ones.

import { ApiError, clearToken, getToken, request, sessionExpired } from "./api.js";
import { Upload } from "../vendor/tus.js";

const PARALLEL = 3;
const CHUNK = 8 * 1024 * 1024;
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000];

/** The server's sentence for a failed tus request (its JSON error), else a generic one. */
function errorOf(err) {
  const res = err && err.originalResponse;
  const status = res ? res.getStatus() : 0;
  let body = null;
  try {
    body = res ? JSON.parse(res.getBody() || "null") : null;
  } catch {
    body = null;
  }
  const e = body && body.error;
  if (e && typeof e.message === "string") return new ApiError(status, e.code || "error", e.message);
  if (status) return new ApiError(status, "http_error", `The server answered HTTP ${status}.`);
  return new ApiError(0, "network_error",
    "The upload was interrupted. Check your connection and try again.");
}

/**
 * Whether a failed upload's error is about the file itself (not a video, too large …), so
 * that sending it again cannot help; not the network, a timeout, a busy or full server.
 */
export function refusesTheFile(error) {
  const status = error ? error.status : 0;
  return status >= 400 && status < 500 && ![401, 408, 409, 423, 429].includes(status);
}

/** Retry what a retry can fix: the network, a busy or restarting server; not a refusal. */
function shouldRetry(err) {
  const res = err && err.originalResponse;
  const status = res ? res.getStatus() : 0;
  return status === 0 || status === 409 || status === 423 || (status >= 500 && status !== 507);
}

/**
 * Upload one file; `onProgress(sent, total)`; `onRetry()` when a request failed and is tried
 * again (the network, a busy server). Resolves to its upload id; rejects with an ApiError.
 * `track(stop)` receives what stops it (the tus Upload's abort, which reports nothing, and
 * then this promise's rejection).
 */
function uploadOne(file, onProgress, track, onRetry) {
  return new Promise((resolve, reject) => {
    const upload = new Upload(file, {
      endpoint: "/api/uploads",
      chunkSize: CHUNK,
      retryDelays: RETRY_DELAYS,
      metadata: { filename: file.name, filetype: file.type || "" },
      headers: { Authorization: `Bearer ${getToken() || ""}` },
      // Kept after the last byte: a file whose upload finished before the page was reloaded,
      // but whose job was not made yet, is not sent again when it is chosen again (a HEAD
      // finds it complete). `forget` (after the job is made) lets go of it.
      removeFingerprintOnSuccess: false,
      onShouldRetry: (err) => {
        const again = shouldRetry(err);
        if (again) onRetry();
        return again;
      },
      onProgress: (sent, total) => onProgress(sent, total),
      onSuccess: () => resolve({ id: upload.url.split("/").pop(), forget: () => forget(upload) }),
      onError: (err) => {
        const apiErr = errorOf(err);
        if (apiErr.status === 401) {
          clearToken();
          sessionExpired();
        }
        reject(apiErr);
      },
    });
    track((terminate) => {
      upload.abort(terminate).catch(() => {}); // terminate: DELETE it on the server too
      reject(new ApiError(0, "aborted", "The upload was cancelled."));
    });
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    }, () => upload.start());
  });
}

/** Drop what tus keeps in localStorage to resume `upload` (its job is made, or given up). */
function forget(upload) {
  return upload.findPreviousUploads()
    .then((previous) => Promise.all(previous.map((p) => upload.options.urlStorage
      .removeUpload(p.urlStorageKey))))
    .catch(() => {});
}

/**
 * Upload `files` (PARALLEL at a time) and report each one: `onFile(index, state)` with
 * `{ phase: "waiting"|"uploading"|"retrying"|"done"|"refused", sent, total, error }`
 * ("retrying": a request failed and is tried again, `sent` bytes are on the server). Returns
 * `{ promise, abort(terminate) }`; the promise resolves to `[{ index, id, forget } | { index,
 * error }]` (`forget()` once the upload is in a job: a later choice of the file starts anew).
 * `abort(true)` also deletes the files' uploads on the server (Cancel upload); `abort(false)`
 * keeps them to be resumed (the page was left).
 */
export function uploadFiles(files, onFile) {
  const running = new Set();
  let aborted = false;
  let next = 0;
  const results = [];
  files.forEach((f, i) => onFile(i, { phase: "waiting", sent: 0, total: f.size }));

  async function worker() {
    while (!aborted && next < files.length) {
      const index = next;
      next += 1;
      const file = files[index];
      let tracked = null;
      let sentSoFar = 0;
      let retrying = false; // until bytes move past where the failed request left them
      try {
        const { id, forget: letGo } = await uploadOne(file,
          (sent, total) => {
            if (retrying && sent <= sentSoFar) return;
            retrying = false;
            sentSoFar = sent;
            onFile(index, { phase: "uploading", sent, total });
          },
          (stop) => { tracked = stop; running.add(stop); },
          () => {
            // Cancelling retries too (its DELETE may meet a 409): nothing to show for it.
            if (aborted) return;
            retrying = true;
            onFile(index, { phase: "retrying", sent: sentSoFar, total: file.size });
          });
        results.push({ index, id, forget: letGo });
        onFile(index, { phase: "done", sent: file.size, total: file.size });
      } catch (error) {
        results.push({ index, error });
        if (!aborted) onFile(index, { phase: "refused", sent: 0, total: file.size, error });
      } finally {
        running.delete(tracked);
      }
    }
  }

  const promise = Promise.all(Array.from({ length: Math.min(PARALLEL, files.length) }, worker))
    .then(() => {
      if (aborted) throw new ApiError(0, "aborted", "The upload was cancelled.");
      return results.sort((a, b) => a.index - b.index);
    });
  return {
    promise,
    abort: (terminate = false) => {
      aborted = true;
      for (const stop of [...running]) stop(terminate);
    },
  };
}

/**
 * The job from finished uploads (`ids`, in the files' order). A file the server refuses
 * (error.upload names it) is reported with `onRefused(id, error)` and left out, and the job is
 * asked for again with the rest; rejects when none is left or on any other error.
 */
export async function createJobFromUploads(ids, fields, onRefused) {
  let left = [...ids];
  let last = null;
  while (left.length) {
    try {
      return await request("POST", "/api/jobs", { json: { uploads: left, ...fields } });
    } catch (err) {
      const refused = err.upload;
      if (!refused || !left.includes(refused)) throw err;
      onRefused(refused, err);
      left = left.filter((id) => id !== refused);
      last = err;
    }
  }
  throw last; // every file was refused: the last one's sentence
}
