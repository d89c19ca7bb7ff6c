// Sign-in: user name and password; the hub answers with a session cookie.

import { post, SIGNED_IN_HINT } from "../api";
import { el } from "../dom";

export function showLogin(root: HTMLElement, done: () => void): void {
  const user = el("input", { name: "username", autocomplete: "username", required: true });
  const pass = el("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = el("p", { class: "error", role: "alert" });
  const button = el("button", { type: "submit", class: "primary" }, "Sign in");
  const form = el(
    "form",
    { class: "login", "aria-label": "Sign in" },
    el("h1", {}, "cityhub control center"),
    el("label", {}, "User name", user),
    el("label", {}, "Password", pass),
    button,
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    error.textContent = "";
    try {
      await post("/login", { username: user.value, password: pass.value });
      localStorage.setItem(SIGNED_IN_HINT, "1");
      done();
    } catch (err) {
      error.textContent = (err as Error).message;
      button.disabled = false;
      pass.select();
    }
  });
  root.replaceChildren(el("div", { class: "login-page" }, form));
  user.focus();
}
