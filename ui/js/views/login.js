// Login: one shared password.

import { login, takeReturnPath } from "../api.js";
import { h, plural, replace, setText } from "../dom.js";
import { takeFlash } from "../flash.js";

export function renderLogin(outlet) {
  const flash = takeFlash();
  const error = h("p", { class: "alert alert-error", id: "login-error", role: "alert", hidden: true });
  const notice = flash
    ? h("p", { class: `alert alert-${flash.kind}`, role: "status" }, flash.message)
    : null;
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    autofocus: true,
    "aria-describedby": "login-error",
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Log in");
  let busy = false;
  let waiting = null; // the countdown's timer while too many tries keep the button off

  /** Say what went wrong (`message`: words, or nodes). */
  const showError = (...message) => {
    error.className = "alert alert-error";
    replace(error, ...message);
    error.hidden = false;
    password.setAttribute("aria-invalid", "true");
    password.select();
    password.focus();
  };

  /**
   * Too many wrong passwords: the wait counts down each second (it stood still at the
   * server's "55 seconds"), the button held until it is over.
   */
  const waitOut = (seconds) => {
    const until = Date.now() + seconds * 1000;
    // Read out once: the alert's own live setting would read it again each second.
    const count = h("span", { "aria-live": "off" });
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left > 0) {
        setText(count, plural(left, "second"));
        return;
      }
      clearInterval(waiting);
      waiting = null;
      submit.disabled = busy;
      error.className = "alert alert-info";
      setText(error, "You can try again now.");
    };
    tick();
    showError("Too many wrong passwords. Try again in ", count, ".");
    submit.disabled = true;
    waiting = setInterval(tick, 1000);
  };

  const form = h("form", {
    class: "stack",
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (busy || waiting) return;
      // A note from before ("You have logged out.") would stand above what this try says.
      if (notice) notice.hidden = true;
      if (!password.value) {
        showError("Enter the password.");
        return;
      }
      busy = true;
      submit.disabled = true;
      setText(submit, "Logging in…");
      error.hidden = true;
      try {
        await login(password.value);
        window.location.hash = takeReturnPath() || "#/upload";
      } catch (err) {
        if (err.status === 429 && err.retryAfter > 0) {
          waitOut(err.retryAfter);
        } else if (err.status === 429) {
          showError(err.message || "Too many wrong passwords. Wait a minute and try again.");
        } else if (err.status === 401) {
          showError(err.message || "That password is not right.");
        } else {
          showError(err.message || "Could not log in. Please try again.");
        }
      } finally {
        busy = false;
        submit.disabled = Boolean(waiting);
        setText(submit, "Log in");
      }
    },
  },
  h("div", { class: "field" },
    h("label", { for: "password" }, "Password"),
    password),
  error,
  submit);

  outlet.append(h("section", { class: "card card-narrow login" },
    h("h1", {}, "Log in"),
    h("p", { class: "muted" }, "Enter the team password to upload videos and get their variations."),
    notice,
    form));
  password.focus();
  return () => clearInterval(waiting);
}
