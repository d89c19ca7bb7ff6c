// Adding a webhook: its URL, what it is for, the municipality (for a user of several) and
// its filters, checked against the API's answer, whose refusal is shown in its own words
// beside the form. The secret comes back this once: `secretBox` shows it until the
// administrator says it is stored.

import { post } from "../api";
import { el } from "../dom";
import type { App } from "../app";
import { EVENT_GROUPS, KIND_GROUPS, stepWords, words, type NewWebhook } from "../webhooks";

/** A checkbox with its label: `name` is the request's field, `value` one of its values. */
function box(name: string, value: string, label: string): HTMLLabelElement {
  return el("label", { class: "choice" }, el("input", { type: "checkbox", name, value }), label);
}

/** A group of checkboxes under a legend, with a hint of what none checked means. */
function choices(legend: string, hint: string, ...children: HTMLElement[]): HTMLFieldSetElement {
  return el("fieldset", { class: "choices" }, el("legend", {}, legend), el("p", { class: "hint" }, hint), ...children);
}

export class WebhookForm {
  readonly el: HTMLFormElement;
  private url: HTMLInputElement;
  private tenant: HTMLSelectElement;
  private districts: HTMLElement;
  private error: HTMLElement;
  private submit: HTMLButtonElement;

  constructor(
    private app: App,
    added: (w: NewWebhook) => void,
    cancelled: () => void,
  ) {
    this.url = el("input", { type: "url", name: "url", required: true, maxlength: 2048, autocomplete: "off", placeholder: "https://…" });
    const description = el("input", { name: "description", maxlength: 200, autocomplete: "off" });
    // A user of several municipalities names one: none is chosen for them.
    const tenants = app.me.tenants;
    this.tenant = el("select", { name: "tenant", required: tenants.length > 1 });
    if (tenants.length > 1) this.tenant.append(el("option", { value: "" }, "municipality…"));
    for (const t of tenants) this.tenant.append(el("option", { value: t }, t));
    this.tenant.addEventListener("change", () => this.showDistricts());
    this.districts = el("div", { class: "choice-list" });
    this.error = el("p", { class: "error", role: "alert" });
    this.submit = el("button", { type: "submit", class: "primary" }, "Add webhook");
    const cancel = el("button", { type: "button" }, "Cancel");
    cancel.addEventListener("click", cancelled);
    this.el = el(
      "form",
      { class: "webhook-form", "aria-label": "Add a webhook", hidden: true },
      el("h2", {}, "Add a webhook"),
      el("label", {}, "URL", this.url),
      el("p", { class: "hint" }, "Each event is POSTed there, signed as Standard Webhooks says. Or mailto: and an address, where the hub sends e-mail."),
      el("label", {}, "Description (what it is for)", description),
      el("label", { hidden: tenants.length < 2 }, "Municipality", this.tenant),
      choices(
        "Events",
        "None checked: every event.",
        ...EVENT_GROUPS.map((g) =>
          el("fieldset", { class: "choice-group" }, el("legend", {}, g.label), el("div", { class: "choice-list" }, ...g.types.map((t) => box("event_types", t, stepWords(t))))),
        ),
      ),
      choices(
        "Outage kinds",
        "None checked: every kind. Work orders follow their outage's kind.",
        ...KIND_GROUPS.map((g) =>
          el("fieldset", { class: "choice-group" }, el("legend", {}, g.label), el("div", { class: "choice-list" }, ...g.kinds.map((k) => box("kinds", k, words(k))))),
        ),
      ),
      choices("Severities", "None checked: every severity.", el("div", { class: "choice-list" }, ...["critical", "major", "minor"].map((s) => box("severities", s, s)))),
      choices("Districts", "None checked: every district.", this.districts),
      this.error,
      el("div", { class: "actions" }, cancel, this.submit),
    );
    this.el.addEventListener("submit", async (e) => {
      e.preventDefault();
      this.error.textContent = "";
      this.submit.disabled = true;
      try {
        added(await post<NewWebhook>("/webhooks", this.request()));
      } catch (err) {
        this.error.textContent = `Not added: ${(err as Error).message}`;
      } finally {
        this.submit.disabled = false;
      }
    });
    // A refusal describes what was asked: it goes once the form changes.
    this.el.addEventListener("input", () => (this.error.textContent = ""));
  }

  /** Shows the form empty, the cursor in the URL. */
  open(): void {
    this.el.reset();
    this.error.textContent = "";
    this.showDistricts();
    this.el.hidden = false;
    this.url.focus();
  }

  close(): void {
    this.el.hidden = true;
  }

  /** The municipality's districts as the inventory names them, or a field to write them in. */
  private showDistricts(): void {
    const a = this.app.assets;
    const tenant = this.tenant.value;
    const names = new Set<string>();
    for (let i = 0; i < a.count; i++) if (a.district[i] && (!tenant || a.tenant[i] === tenant)) names.add(a.district[i]);
    const sorted = [...names].sort((x, y) => x.localeCompare(y));
    this.districts.replaceChildren(
      ...(sorted.length
        ? sorted.map((d) => box("districts", d, d))
        : [el("label", {}, "Districts, comma separated", el("input", { name: "district_names", autocomplete: "off" }))]),
    );
  }

  /** The request: filters with nothing checked are left out (they let everything through). */
  private request(): Record<string, unknown> {
    const form = new FormData(this.el);
    const list = (name: string) => form.getAll(name).map(String);
    const districts = [...list("districts"), ...String(form.get("district_names") ?? "").split(",")].map((d) => d.trim()).filter(Boolean);
    const body: Record<string, unknown> = { url: this.url.value.trim() };
    const description = String(form.get("description") ?? "").trim();
    if (description) body.description = description;
    if (this.tenant.value) body.tenant = this.tenant.value;
    for (const [name, values] of [["event_types", list("event_types")], ["kinds", list("kinds")], ["severities", list("severities")], ["districts", districts]] as const) {
      if (values.length) body[name] = values;
    }
    return body;
  }
}

/**
 * The new webhook's secret, shown this once, with a copy button and what to do with it;
 * `done` when the administrator has stored it. An e-mail subscription has none.
 */
export function secretBox(w: NewWebhook, done: () => void): HTMLElement {
  const ok = el("button", { type: "button", class: "primary", "data-action": "secret-done" }, w.secret ? "Done: I have stored it" : "Done");
  ok.addEventListener("click", done);
  if (!w.secret) {
    return el(
      "section",
      { class: "secret-box", role: "region", "aria-label": "Webhook added" },
      el("h2", {}, "Webhook added"),
      el("p", {}, `Each event is mailed to ${w.url.replace(/^mailto:/, "")}. Mails are not signed: there is no secret.`),
      ok,
    );
  }
  const secret = el("input", { class: "secret", readonly: true, value: w.secret, "aria-label": "Secret", spellcheck: "false", autocomplete: "off" });
  const said = el("span", { class: "copied", role: "status" });
  const copy = el("button", { type: "button", "data-action": "copy" }, "Copy");
  copy.addEventListener("click", async () => {
    secret.select();
    try {
      // Browsers offer the clipboard only to secure pages (https, or this machine);
      // elsewhere the selection is copied the old way.
      if (navigator.clipboard) await navigator.clipboard.writeText(w.secret!);
      else if (!document.execCommand("copy")) throw new Error("refused");
      said.textContent = "Copied.";
    } catch {
      said.textContent = "The browser would not copy it: it is selected, copy it with the keyboard.";
    }
  });
  return el(
    "section",
    { class: "secret-box", role: "region", "aria-label": "The new webhook's secret" },
    el("h2", {}, "Webhook added: its secret"),
    el("div", { class: "secret-line" }, secret, copy, said),
    el(
      "p",
      {},
      "This is the only time the secret is shown: the hub will not show it again. Give it to the receiver's Standard Webhooks library (",
      el("code", {}, "Webhook(secret).verify(body, headers)"),
      "), which checks with it that each message comes from this hub, unchanged. Keep it with the receiver's other secrets, out of its code and logs. Lost, it cannot be read again: remove this webhook and add a new one.",
    ),
    ok,
  );
}
