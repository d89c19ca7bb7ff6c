// Webhooks (administrators only): the subscriptions of the user's municipalities with how
// their deliveries go, adding one (its secret shown once), enabling a disabled one again,
// removing one, and a chosen one's recent messages with every attempt at them. Deliveries
// have no live event of their own: the view asks again every few seconds while it is
// shown, and soon after an outage or work order event (which queues messages).

import { del, get, post, type Page as ListPage } from "../api";
import { ask, coalesce, el, keyboardRows } from "../dom";
import { timeEl } from "../time";
import * as live from "../live";
import type { App, Page } from "../app";
import { report } from "../app";
import { eventWords, filtersText, subject, took, type Message, type Webhook } from "../webhooks";
import { secretBox, WebhookForm } from "./webhookForm";

/** How often the view asks again while shown. */
const POLL_MS = 4000;
/** Messages shown at first, and added by "Older messages". */
const PAGE = 20;

const STATUS_ICON: Record<string, string> = { active: "✓", retrying: "↻", disabled: "✕", removed: "–" };

export class WebhooksPage implements Page {
  readonly el: HTMLElement;
  private hooks: Webhook[] = [];
  private list: HTMLOListElement;
  private count: HTMLElement;
  private add: HTMLButtonElement;
  private form: WebhookForm;
  private secret: HTMLElement;
  private messages: HTMLElement;
  private selected: number | null = null;
  private shownMessages = PAGE;
  /** What each part was last drawn from: unchanged answers are not drawn again. */
  private drawn = { list: "", messages: "" };
  private timer = 0;
  private visible = false;
  private running: Promise<void> | null = null;
  private again = false;
  private later = coalesce(() => this.refresh(), 500);

  constructor(app: App) {
    this.count = el("span", { class: "count", role: "status" });
    this.add = el("button", { type: "button", class: "primary", "data-action": "add" }, "Add webhook");
    this.secret = el("div", { class: "secret-slot" });
    this.form = new WebhookForm(
      app,
      (w) => {
        this.form.close();
        this.add.hidden = false;
        const box = secretBox(w, () => {
          this.secret.replaceChildren();
          this.add.focus();
        });
        this.secret.replaceChildren(box);
        box.querySelector<HTMLElement>("input.secret, button")?.focus();
        this.select(w.id);
      },
      () => {
        this.form.close();
        this.add.hidden = false;
        this.add.focus();
      },
    );
    this.add.addEventListener("click", () => {
      // A secret shown stays beside the form until the administrator says it is stored.
      this.add.hidden = true;
      this.form.open();
    });
    this.list = el("ol", { class: "cards webhook-list", "aria-label": "Webhooks" });
    keyboardRows(this.list, "li[tabindex]");
    this.messages = el("section", { class: "webhook-messages", "aria-label": "Messages" });
    this.el = el(
      "section",
      { class: "page webhooks-page", "aria-label": "Webhooks", hidden: true },
      el("div", { class: "toolbar" }, el("h1", {}, "Webhooks"), this.add, this.count),
      el("div", { class: "webhooks" }, el("div", { class: "webhooks-main" }, this.secret, this.form.el, this.list), this.messages),
    );
    this.drawMessages(null, []);
    live.onEvent("outage", () => this.soon());
    live.onEvent("work_order", () => this.soon());
    live.onResync(() => this.soon());
  }

  show(): void {
    this.el.hidden = false;
    this.visible = true;
    this.refresh();
    this.timer = window.setInterval(() => this.refresh(), POLL_MS);
  }

  hide(): void {
    this.el.hidden = true;
    this.visible = false;
    clearInterval(this.timer);
  }

  private soon(): void {
    if (this.visible) this.later();
  }

  /** Asks again; a call while a refresh runs makes one more run after it. */
  refresh(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.fetch().finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
    return this.running;
  }

  private async fetch(): Promise<void> {
    try {
      const selected = this.selected;
      const [hooks, page] = await Promise.all([
        get<ListPage<Webhook>>("/webhooks"),
        selected === null ? null : get<ListPage<Message>>(`/webhooks/${selected}/messages?limit=${this.shownMessages}`),
      ]);
      this.hooks = hooks.items;
      this.drawList();
      // A choice made meanwhile is drawn by its own refresh.
      if (selected === this.selected) {
        const hook = this.hooks.find((w) => w.id === selected) ?? null;
        // One removed (by anyone) is no longer chosen.
        if (!hook) this.selected = null;
        if (hook && page) this.drawMessages(hook, page.items, !!page.next_cursor);
        else this.drawMessages(null, []);
      }
      this.el.dataset.loaded = "true";
    } catch (e) {
      report(e);
    }
  }

  /** Shows `id`'s messages (none: the choice is cleared). */
  private select(id: number | null): void {
    if (id !== this.selected) this.shownMessages = PAGE;
    this.selected = id;
    this.drawList();
    this.refresh();
    // On a phone the messages are under the list: bring them into view.
    if (id !== null && window.matchMedia("(max-width: 700px)").matches) this.messages.scrollIntoView({ block: "start" });
  }

  private drawList(): void {
    const key = JSON.stringify([this.hooks, this.selected]);
    this.count.textContent = `${this.hooks.length} ${this.hooks.length === 1 ? "webhook" : "webhooks"}`;
    if (key === this.drawn.list) return;
    this.drawn.list = key;
    // The focus stays where it was (a card, or one of its buttons) across a redraw.
    const focused = document.activeElement as HTMLElement | null;
    const card = focused?.closest<HTMLElement>("li[data-id]");
    const where = card && this.list.contains(card) ? { id: card.dataset.id, action: focused?.dataset.action } : null;
    this.list.replaceChildren(
      ...(this.hooks.length
        ? this.hooks.map((w) => this.card(w))
        : [el("li", { class: "empty" }, "No webhooks yet. “Add webhook” tells another system of the city (an asset management system, a works planner) what happens to outages and work orders, as it happens.")]),
    );
    if (where) {
      const again = this.list.querySelector<HTMLElement>(`li[data-id="${where.id}"]`);
      // A button gone with the change (enabled again: no "Enable again") leaves it on the card.
      ((where.action && again?.querySelector<HTMLElement>(`[data-action="${where.action}"]`)) || again)?.focus();
    }
  }

  private card(w: Webhook): HTMLElement {
    const actions = el("div", { class: "actions" });
    const button = (label: string, action: string, run: () => Promise<unknown>) => {
      const b = el("button", { type: "button", "data-action": action }, label);
      b.addEventListener("click", async (e) => {
        e.stopPropagation();
        try {
          await run();
        } catch (err) {
          report(err);
        }
        await this.refresh();
      });
      actions.append(b);
    };
    if (w.status === "disabled") button("Enable again", "enable", () => post(`/webhooks/${w.id}/enable`));
    if (w.status === "retrying") button("Try again now", "retry", () => post(`/webhooks/${w.id}/enable`));
    button("Remove…", "remove", () => this.remove(w));
    const chosen = w.id === this.selected;
    const li = el(
      "li",
      { class: `card webhook status-${w.status}`, tabindex: 0, "data-id": w.id, "data-status": w.status, "aria-current": chosen ? "true" : undefined },
      el("div", { class: "title" }, w.url),
      w.description ? el("div", { class: "description" }, w.description) : null,
      el("div", { class: "filters" }, `${w.tenant} · ${filtersText(w)}`),
      statusLine(w),
      el("div", { class: "counts" }, `${w.pending} pending · ${w.delivered} delivered`),
      actions,
    );
    li.addEventListener("click", () => this.select(w.id));
    li.addEventListener("keydown", (e) => {
      if (e.target !== li || (e.key !== "Enter" && e.key !== " ")) return;
      e.preventDefault();
      this.select(w.id);
    });
    return li;
  }

  private async remove(w: Webhook): Promise<void> {
    const pending = w.pending ? `, and its ${w.pending} pending ${w.pending === 1 ? "message is" : "messages are"} not sent` : "";
    const ok = await ask(
      `Remove the webhook to ${w.url}?`,
      [],
      "Remove",
      `Nothing more is sent to it: no event is queued for it from now on${pending}. To send to it again, add a new webhook (it gets a new secret).`,
    );
    if (!ok) return;
    await del(`/webhooks/${w.id}`);
    if (this.selected === w.id) this.selected = null;
  }

  private drawMessages(hook: Webhook | null, messages: Message[], more = false): void {
    const key = JSON.stringify([hook?.id, messages, more]);
    if (key === this.drawn.messages) return;
    this.drawn.messages = key;
    if (!hook) {
      this.messages.replaceChildren(el("h2", {}, "Messages"), el("p", { class: "hint" }, "Choose a webhook to see its recent messages and every attempt at them."));
      return;
    }
    const older = el("button", { type: "button", "data-action": "older" }, "Older messages");
    older.addEventListener("click", () => {
      this.shownMessages = Math.min(1000, this.shownMessages + PAGE);
      this.refresh();
    });
    this.messages.replaceChildren(
      el("h2", {}, "Messages to ", el("span", { class: "url" }, hook.url)),
      messages.length
        ? el("ol", { class: "message-list" }, ...messages.map(messageItem))
        : el("p", { class: "hint" }, "No message yet: one is queued for each event its filters let through."),
      ...(more ? [older] : []),
    );
  }
}

/** The subscription's status in words with its icon, and what it means now. */
function statusLine(w: Webhook): HTMLElement {
  const line = el(
    "div",
    { class: "webhook-status" },
    el("span", { class: "state", "data-status": w.status }, el("span", { "aria-hidden": "true" }, STATUS_ICON[w.status] ?? ""), ` ${w.status}`),
  );
  if (w.status === "retrying") {
    line.append(
      ` ${w.failures} ${w.failures === 1 ? "attempt" : "attempts"} failed since `,
      timeEl(w.failing_since),
      "; next attempt at ",
      timeEl(w.next_attempt_at),
    );
  } else if (w.status === "disabled") {
    line.append(" since ", timeEl(w.disabled_at), ": ", el("span", { class: "reason" }, w.disabled_reason ?? "no reason given"));
  }
  return line;
}

function messageItem(m: Message): HTMLElement {
  return el(
    "li",
    { class: "message", "data-id": m.id, "data-delivered": String(!!m.delivered_at) },
    el("div", { class: "head" }, el("strong", {}, eventWords(m.event_type)), " ", el("span", { class: "subject" }, subject(m))),
    el(
      "div",
      { class: "times" },
      "queued ",
      timeEl(m.queued_at),
      " · ",
      m.delivered_at ? el("span", { class: "delivered" }, "delivered ", timeEl(m.delivered_at)) : el("span", { class: "pending" }, "pending"),
    ),
    m.attempts.length
      ? el(
          "ol",
          { class: "attempts", "aria-label": "Attempts, newest first" },
          ...m.attempts.map((a) =>
            el(
              "li",
              { class: "attempt", "data-status": a.status ?? "none", "data-ok": String(!a.error) },
              timeEl(a.at),
              el("span", { class: "answer" }, a.status === null ? "no answer" : `HTTP ${a.status}`),
              el("span", { class: "took" }, took(a.duration_ms)),
              a.error ? el("span", { class: "error-text" }, a.error) : null,
            ),
          ),
        )
      : el("p", { class: "hint" }, "Not tried yet."),
  );
}
