// Login: one shared password.

import { login, takeReturnPath } from "../api.js";
import { h, setText } from "../dom.js";
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

  const showError = (message) => {
    setText(error, message);
    error.hidden = false;
    password.setAttribute("aria-invalid", "true");
    password.select();
    password.focus();
  };

  const form = h("form", {
    class: "stack",
    novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (busy) return;
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
        if (err.status === 429) {
          showError(err.message || "Too many wrong passwords. Wait a minute and try again.");
        } else if (err.status === 401) {
          showError(err.message || "That password is not right.");
        } else {
          showError(err.message || "Could not log in. Please try again.");
        }
      } finally {
        busy = false;
        submit.disabled = false;
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
  return null;
}
