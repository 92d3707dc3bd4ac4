// Live updates: the WebSocket when it is there, adaptive polling when it is not.
//
// A LiveFeed keeps one piece of server state fresh (a job, or the job list):
//  - load() fetches the state; onData(state) renders it. snapshot(ev) may turn a socket
//    message that carries the whole state (e.g. {"type":"subscribed","job":…}) into one.
//  - Over the socket, "progress" ticks go straight to onEvent(ev); state events ("job",
//    "video") go to onEvent too and trigger a refetch so the view stays consistent.
//  - Without a socket (not built, dropped, blocked by a proxy), it polls: 2 s, growing to 10 s
//    while nothing changes, with jitter; polling pauses while the tab is hidden.
//  - Socket close 4401: the session ended. 4408: the server dropped us for being slow, resync.
//    Anything else: reconnect with exponential backoff (polling covers the gap).

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
  constructor({ jobId = null, load, snapshot, onData, onEvent, onError, onConnection, isActive }) {
    this.jobId = jobId;
    this.load = load;
    this.snapshot = snapshot || (() => null);
    this.onData = onData;
    this.onEvent = onEvent || (() => {});
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
    if (this.active && !this.reconnectPending) this.connect();
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

  connect() {
    if (this.stopped || this.ws || this.hidden || !this.active) return;
    if (typeof window.WebSocket !== "function" || !getToken()) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectPending = false;
    let ws;
    try {
      ws = new WebSocket(websocketUrl());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.wsOpen = true;
      clearTimeout(this.pollTimer);
      if (this.jobId) ws.send(JSON.stringify({ subscribe: this.jobId }));
      this.onConnection("live");
      // Anything may have happened while we were not listening.
      this.refresh();
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
      if (!ev || typeof ev !== "object") return;
      if (this.jobId && ev.jobId && ev.jobId !== this.jobId) return;
      const snapshot = this.snapshot(ev);
      if (snapshot) {
        this.accept(snapshot);
        return;
      }
      this.onEvent(ev);
      if (ev.type === "job" || ev.type === "video") this.scheduleEventRefresh();
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

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectPending = false;
    if (this.stopped || !this.active) return;
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
