// Hash router: "#/path/with/:params". One view renders at a time into the outlet.
//
// A route's view is `render(outlet, params)` and may return a cleanup function or
// { cleanup, confirmLeave } where confirmLeave() returns a question to ask before leaving
// (or null to leave quietly).

export class Router {
  constructor(outlet, { routes, fallback, guard, afterRender }) {
    this.outlet = outlet;
    this.routes = routes.map((r) => ({ ...r, ...compile(r.path) }));
    this.fallback = fallback;
    this.guard = guard;
    this.afterRender = afterRender;
    this.current = null; // { route, params, hash, cleanup, confirmLeave }
    this.restoring = false;
    this.leaveAgreed = false; // mayLeave() asked already: the next navigation does not ask again
    this.onHashChange = () => this.resolve();
  }

  /** Whether the current view lets the person leave, asking its question if it has one. */
  allowsLeaving() {
    const question = this.current && this.current.confirmLeave ? this.current.confirmLeave() : null;
    return !question || window.confirm(question);
  }

  /** `allowsLeaving`, for what leaves without a link (logging out): the navigation that
   *  follows does not ask again. */
  mayLeave() {
    if (!this.allowsLeaving()) return false;
    this.leaveAgreed = true;
    return true;
  }

  start() {
    window.addEventListener("hashchange", this.onHashChange);
    this.resolve();
  }

  navigate(path, { replace = false } = {}) {
    const hash = `#${path}`;
    if (window.location.hash === hash) {
      this.resolve({ force: true });
    } else if (replace) {
      window.location.replace(hash);
    } else {
      window.location.hash = hash;
    }
  }

  match(hash) {
    const path = hash.replace(/^#/, "") || "/";
    for (const route of this.routes) {
      const m = route.regex.exec(path);
      if (m) {
        const params = {};
        route.keys.forEach((k, i) => {
          params[k] = decodeURIComponent(m[i + 1]);
        });
        return { route, params };
      }
    }
    return null;
  }

  resolve({ force = false } = {}) {
    const hash = window.location.hash || "#/";
    if (this.restoring) {
      this.restoring = false;
      return;
    }
    if (!force && this.current && this.current.hash === hash) return;
    const agreed = this.leaveAgreed;
    this.leaveAgreed = false;

    // Ask the current view before leaving (e.g. an upload in progress).
    if (!agreed && this.current && this.current.hash !== hash && !this.allowsLeaving()) {
      this.restoring = true;
      window.location.hash = this.current.hash;
      return;
    }

    const found = this.match(hash);
    if (!found) {
      this.navigate(this.fallback, { replace: true });
      return;
    }
    const redirect = this.guard ? this.guard(found.route) : null;
    if (redirect) {
      this.navigate(redirect, { replace: true });
      return;
    }
    this.teardown();
    this.outlet.replaceChildren();
    const result = found.route.view(this.outlet, found.params) || null;
    const cleanup = typeof result === "function" ? result : result && result.cleanup;
    const confirmLeave = result && typeof result === "object" ? result.confirmLeave : null;
    this.current = { route: found.route, params: found.params, hash, cleanup, confirmLeave };
    if (this.afterRender) this.afterRender(found.route, found.params);
  }

  teardown() {
    if (this.current && this.current.cleanup) {
      try {
        this.current.cleanup();
      } catch (exc) {
        // A failing cleanup must not block navigation.
        window.console.warn("view cleanup failed", exc);
      }
    }
    this.current = null;
  }
}

function compile(path) {
  const keys = [];
  const pattern = path.replace(/\//g, "\\/").replace(/:(\w+)/g, (_, key) => {
    keys.push(key);
    return "([^/]+)";
  });
  return { regex: new RegExp(`^${pattern}\\/?$`), keys };
}
