// Live updates: the WebSocket when it is there, adaptive polling when it is not.
//
// One model: the server's REST state owns a view's state, and socket events are invalidations.
// Why not apply events as deltas: they are thin ("video v1 is completed", "job j1 is
// failed") while the views show what only the REST shapes carry (outputs and their distances,
// retryable, counts, expiry), so every delta that matters would need a refetch anyway, and two
// writers of one state (a patch and a fetch) can disagree. So a LiveFeed:
//  - renders only states: load() fetches one, onData(state) renders it. A socket message that
//    is a whole state, snapshot(ev) (the `hello` job list; the `subscribed` answer to
//    {"subscribe": jobId}), is taken like a fetch's answer. The server sends one on every
//    (re)connect, so a reconnect re-syncs without a fetch.
//  - treats "job" and "video" events as "this moved": a refetch, debounced (a video's change
//    comes with its job's, and bursts become one request).
//  - hands "progress" ticks to onTick(ev): not state (the server merges them, never queues
//    them), shown over the fetched progress until a fetch catches up (ProgressTicks, jobs.js).
//  - without a socket (not built, dropped, blocked by a proxy), polls: 2 s, growing to 10 s
//    while nothing changes, with jitter; polling pauses while the tab is hidden.
//  - on close 4401: the session ended. 4408 (too slow, events were dropped): refetch now and
//    reconnect soon. Anything else: refetch, poll, reconnect with exponential backoff.

import { getToken, sessionExpired, websocketUrl } from "./api.js";

const POLL_MIN = 2000;
const POLL_MAX = 10000;
const POLL_GROWTH = 1.5;
const RECONNECT_MIN = 1000;
const RECONNECT_MAX = 30000;
const EVENT_DEBOUNCE = 120;

export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_RESYNC = 4408;

function jitter(ms) {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}

export class LiveFeed {
  constructor({ jobId = null, load, snapshot, onData, onTick, onError, onConnection, isActive }) {
    this.jobId = jobId; // follow one job: subscribe to it, ignore the others' events
    this.load = load;
    this.snapshot = snapshot || (() => null);
    this.onData = onData;
    this.onTick = onTick || (() => {});
    this.onError = onError || (() => {});
    this.onConnection = onConnection || (() => {});
    this.isActive = isActive || (() => true);

    this.stopped = true;
    this.active = true;
    this.ws = null;
    this.wsOpen = false;
    this.wsAttempts = 0;
    this.reconnectTimer = null;
    this.reconnectPending = false;
    this.pollTimer = null;
    this.pollDelay = POLL_MIN;
    this.signature = null;
    this.followUntil = 0;
    this.loading = false;
    this.reloadQueued = false;
    this.eventTimer = null;
    this.onVisibility = () => this.visibilityChanged();
  }

  start() {
    this.stopped = false;
    document.addEventListener("visibilitychange", this.onVisibility);
    this.refresh(); // connects once the first answer says there is something to follow
  }

  stop() {
    this.stopped = true;
    document.removeEventListener("visibilitychange", this.onVisibility);
    clearTimeout(this.pollTimer);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.eventTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.onmessage = null;
      ws.onerror = null;
      ws.onopen = null;
      try {
        ws.close(1000, "view closed");
      } catch {
        // already closed
      }
    }
    this.wsOpen = false;
  }

  get hidden() {
    return document.visibilityState === "hidden";
  }

  get mode() {
    return this.wsOpen ? "live" : "polling";
  }

  /** Fetch now (coalescing with a fetch already running), render, and plan what comes next. */
  async refresh() {
    if (this.stopped) return;
    if (this.loading) {
      this.reloadQueued = true;
      return;
    }
    this.loading = true;
    clearTimeout(this.pollTimer);
    try {
      const data = await this.load();
      if (this.stopped) return;
      const changed = this.accept(data);
      this.pollDelay = changed ? POLL_MIN : Math.min(POLL_MAX, this.pollDelay * POLL_GROWTH);
    } catch (err) {
      if (this.stopped) return;
      if (err && err.status === 401) return; // the app is already going to the login page
      this.pollDelay = Math.min(POLL_MAX, this.pollDelay * POLL_GROWTH);
      const fatal = err && err.status === 404;
      this.onError(err);
      if (fatal) {
        this.active = false;
        return;
      }
    } finally {
      this.loading = false;
    }
    if (this.stopped) return;
    if (this.reloadQueued) {
      this.reloadQueued = false;
      this.refresh();
      return;
    }
    if (!this.reconnectPending) this.connect();
    this.schedulePoll();
  }

  /** Take a fresh state (from a fetch or a socket snapshot); returns whether it changed. */
  accept(data) {
    const signature = JSON.stringify(data);
    const changed = signature !== this.signature;
    this.signature = signature;
    // After an action the server may take a moment to show its effect: keep following.
    this.active = Boolean(this.isActive(data)) || Date.now() < this.followUntil;
    this.onData(data);
    this.onError(null);
    return changed;
  }

  /** Call after an action (cancel, retry) that makes the state move again. */
  kick() {
    this.active = true;
    this.followUntil = Date.now() + 6000;
    this.wsAttempts = 0;
    this.pollDelay = POLL_MIN;
    this.refresh();
  }

  schedulePoll() {
    clearTimeout(this.pollTimer);
    if (this.stopped || this.hidden || this.wsOpen || !this.active) return;
    this.pollTimer = setTimeout(() => this.refresh(), jitter(this.pollDelay));
  }

  // The socket stays open for a finished job too (it costs the server nothing while nothing
  // happens): a deletion, an expiry or a retry from another tab then reaches this page at once.
  // Only the polling fallback stops once nothing moves.
  connect() {
    if (this.stopped || this.ws || this.hidden) return;
    if (typeof window.WebSocket !== "function" || !getToken()) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectPending = false;
    let ws;
    try {
      ws = new WebSocket(websocketUrl(this.jobId));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.wsOpen = true;
      clearTimeout(this.pollTimer);
      // The first message (`subscribed` for the followed job, `hello` for all jobs) re-syncs
      // what we missed.
      this.onConnection("live");
    };
    ws.onmessage = (msg) => {
      if (this.ws !== ws) return;
      this.wsAttempts = 0; // the server talks: a real connection, not one that opens and drops
      let ev;
      try {
        ev = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (ev && typeof ev === "object") this.receive(ev);
    };
    ws.onerror = () => {
      // A close event always follows; nothing to do here.
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const wasOpen = this.wsOpen;
      this.ws = null;
      this.wsOpen = false;
      if (this.stopped) return;
      this.onConnection("polling");
      if (ev.code === CLOSE_UNAUTHORIZED) {
        sessionExpired();
        return;
      }
      if (ev.code === CLOSE_RESYNC) {
        this.refresh();
        this.reconnectPending = true;
        this.reconnectTimer = setTimeout(() => this.connect(), jitter(RECONNECT_MIN / 2));
        return;
      }
      if (wasOpen) this.refresh(); // resync, then keep polling until the socket is back
      else this.schedulePoll();
      this.scheduleReconnect();
    };
  }

  /** One socket message: a whole state, a progress tick, or word that the state moved. */
  receive(ev) {
    if (this.jobId && ev.jobId && ev.jobId !== this.jobId) return;
    const state = this.snapshot(ev);
    if (state) {
      // A refetch already planned stays planned: a `subscribed` snapshot is read before the
      // events queued ahead of it, so it may be older than they are.
      this.accept(state);
    } else if (ev.type === "progress") {
      this.onTick(ev);
    } else if (ev.type === "job" || ev.type === "video" || ev.type === "subscribed") {
      // `subscribed` without a job: it is gone; the fetch says so (404).
      this.scheduleEventRefresh();
    }
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectPending = false;
    if (this.stopped) return;
    this.reconnectPending = true;
    const delay = Math.min(RECONNECT_MAX, RECONNECT_MIN * 2 ** this.wsAttempts);
    this.wsAttempts += 1;
    this.reconnectTimer = setTimeout(() => this.connect(), jitter(delay));
  }

  scheduleEventRefresh() {
    clearTimeout(this.eventTimer);
    this.eventTimer = setTimeout(() => this.refresh(), EVENT_DEBOUNCE);
  }

  visibilityChanged() {
    if (this.stopped) return;
    if (this.hidden) {
      clearTimeout(this.pollTimer);
      clearTimeout(this.reconnectTimer);
      this.reconnectPending = false;
      return;
    }
    this.pollDelay = POLL_MIN;
    this.refresh(); // and reconnects if the job is still moving
  }
}
