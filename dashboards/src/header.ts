// The header: the views' navigation, who is signed in, the live status and signing out.
// On a narrow screen (a phone, a half-screen window) the navigation, the user and signing
// out fold into a menu behind a button that names the view shown (style.css, `.menu`).

import type { Me } from "./api";
import { el } from "./dom";

export class Header {
  readonly el: HTMLElement;
  /** `● live`, `○ reconnecting…`: the live events' state. */
  readonly status: HTMLElement;
  private nav: HTMLElement;
  private toggle: HTMLButtonElement;
  private shown: HTMLElement;

  constructor(me: Me, routes: [string, string][], navigate: (path: string) => void, signOut: () => void) {
    this.status = el("span", { class: "live-status", role: "status", "aria-live": "polite" }, "connecting…");
    this.nav = el("nav", { "aria-label": "Views" });
    for (const [path, label] of routes) {
      const a = el("a", { href: path }, label);
      a.addEventListener("click", (e) => {
        e.preventDefault();
        this.close();
        navigate(path);
      });
      this.nav.append(a);
    }
    const who = `${me.username} (${me.role}) · ${me.tenants.join(", ")}`;
    const out = el("button", { type: "button", class: "link sign-out" }, "Sign out");
    out.addEventListener("click", signOut);
    this.shown = el("span", { class: "menu-view" });
    this.toggle = el(
      "button",
      { type: "button", class: "menu-toggle", "aria-expanded": "false", "aria-controls": "menu", "aria-label": "Views and account" },
      el("span", { "aria-hidden": "true" }, "☰ "),
      this.shown,
    );
    this.toggle.addEventListener("click", () => (this.el.classList.contains("menu-open") ? this.close() : this.open()));
    const menu = el(
      "div",
      { class: "menu", id: "menu" },
      this.nav,
      // Cut short where the links leave little room: the tooltip has it whole.
      el("span", { class: "who", title: who }, who),
      out,
    );
    this.el = el("header", { class: "top" }, el("strong", { class: "brand" }, "cityhub"), this.toggle, menu, this.status);
    this.el.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.el.classList.contains("menu-open")) {
        this.close();
        this.toggle.focus();
      }
    });
    document.addEventListener("pointerdown", (e) => {
      if (!this.el.contains(e.target as Node)) this.close();
    });
  }

  /** Marks the view shown (`aria-current`) and names it on the menu's button. */
  setCurrent(path: string): void {
    for (const a of this.nav.querySelectorAll("a")) {
      if (a.getAttribute("href") === path) {
        a.setAttribute("aria-current", "page");
        this.shown.textContent = a.textContent;
      } else a.removeAttribute("aria-current");
    }
  }

  private open(): void {
    this.el.classList.add("menu-open");
    this.toggle.setAttribute("aria-expanded", "true");
    this.nav.querySelector<HTMLElement>("a[aria-current]")?.focus();
  }

  private close(): void {
    this.el.classList.remove("menu-open");
    this.toggle.setAttribute("aria-expanded", "false");
  }
}
