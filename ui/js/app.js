// Entry point: navigation bar, session handling and the routes.

import { clearToken, getToken, logout, onUnauthorized, rememberReturnPath } from "./api.js";
import { h, replace } from "./dom.js";
import { setFlash } from "./flash.js";
import { Router } from "./router.js";
import { renderHistory } from "./views/history.js";
import { renderJob } from "./views/job.js";
import { renderLogin } from "./views/login.js";
import { renderUpload } from "./views/upload.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");

const routes = [
  { path: "/login", view: renderLogin, public: true, title: "Log in" },
  { path: "/upload", view: renderUpload, nav: "upload", title: "New upload" },
  { path: "/jobs/:id", view: renderJob, nav: "history", title: "Job" },
  { path: "/history", view: renderHistory, nav: "history", title: "History" },
];

const router = new Router(main, {
  routes,
  fallback: "/upload",
  guard(route) {
    const loggedIn = Boolean(getToken());
    if (!route.public && !loggedIn) {
      rememberReturnPath(window.location.hash);
      return "/login";
    }
    if (route.public && loggedIn) return "/upload";
    return null;
  },
  afterRender(route) {
    document.title = `${route.title} · Video Refresher`;
    renderNav(route);
    // Move focus to the new view's heading so keyboard and screen-reader users follow along.
    const autofocus = main.querySelector("[autofocus]");
    const heading = main.querySelector("h1");
    if (autofocus) {
      autofocus.focus();
    } else if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  },
});

function link(href, label, current) {
  return h("a", {
    class: "nav-link",
    href,
    "aria-current": current ? "page" : null,
  }, label);
}

function renderNav(route) {
  const loggedIn = Boolean(getToken()) && !route.public;
  nav.hidden = !loggedIn;
  if (!loggedIn) {
    nav.replaceChildren();
    return;
  }
  replace(nav,
    link("#/upload", "New upload", route.nav === "upload"),
    link("#/history", "History", route.nav === "history"),
    h("button", {
      type: "button",
      class: "nav-link nav-button",
      onclick: () => {
        // An upload in progress asks first; "Cancel" keeps the session and the upload.
        if (!router.mayLeave()) return;
        logout();
        setFlash("You have logged out.");
        router.navigate("/login");
      },
    }, "Log out"));
}

let expiring = false;
onUnauthorized(() => {
  // Several requests may fail at once: send the person to the login page only once.
  clearToken();
  if (expiring || window.location.hash === "#/login") return;
  expiring = true;
  setFlash("Your session has expired. Please log in again.", "warning");
  rememberReturnPath(window.location.hash);
  queueMicrotask(() => {
    expiring = false;
    if (window.location.hash !== "#/login") router.navigate("/login");
  });
});

// The skip link must not change the hash (that is the router's).
document.querySelector(".skip-link")?.addEventListener("click", (ev) => {
  ev.preventDefault();
  main.focus();
});

// A file dropped outside the drop zone must not navigate away from the app.
window.addEventListener("dragover", (ev) => ev.preventDefault());
window.addEventListener("drop", (ev) => ev.preventDefault());

router.start();
