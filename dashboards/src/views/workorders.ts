// The work-order board: a column per state, deadlines counting down, overdue orders
// marked (red edge, a ⚠ and the word "overdue"), the next steps as buttons. Live from the
// `work_order` events.

import { all, post, vocabulary, type WorkOrder } from "../api";
import { ask, el, keyboardRows } from "../dom";
import { duration, hubClock, when } from "../time";
import * as live from "../live";
import type { App, Page } from "../app";
import { report } from "../app";

const STEP_LABEL: Record<string, string> = {
  assigned: "Assign",
  in_progress: "Start",
  done: "Done",
  reopened: "Reopen",
  closed: "Close",
};

export class WorkOrdersPage implements Page {
  readonly el: HTMLElement;
  private orders: WorkOrder[] = [];
  private columns = new Map<string, HTMLElement>();
  private board: HTMLElement;
  private showClosed: HTMLInputElement;
  private timer = 0;
  private pending = 0;
  private visible = false;
  private stale = true;

  constructor(private app: App) {
    this.showClosed = el("input", { type: "checkbox" });
    this.showClosed.addEventListener("change", () => this.refresh());
    this.board = el("div", { class: "board" });
    for (const s of vocabulary("WorkOrderState")) {
      const list = el("ol", { class: "cards", "aria-label": s.replace("_", " ") });
      keyboardRows(list, "li[tabindex]");
      const col = el("section", { class: `column col-${s}`, "data-state": s }, el("h2", {}, s.replace("_", " "), el("span", { class: "n" })), list);
      this.columns.set(s, col);
      this.board.append(col);
    }
    this.el = el(
      "section",
      { class: "page workorders-page", "aria-label": "Work orders", hidden: true },
      el("div", { class: "toolbar" }, el("h1", {}, "Work orders"), el("label", {}, this.showClosed, " show closed")),
      this.board,
    );
    live.onEvent("work_order", () => this.soon());
    live.onResync((t) => t.includes("work_order") && this.soon());
  }

  show(): void {
    this.el.hidden = false;
    this.visible = true;
    if (this.stale) this.refresh();
    this.timer = window.setInterval(() => this.tick(), 1000);
  }

  hide(): void {
    this.el.hidden = true;
    this.visible = false;
    clearInterval(this.timer);
  }

  private soon(): void {
    this.stale = true;
    if (!this.visible || this.pending) return;
    this.pending = window.setTimeout(() => {
      this.pending = 0;
      this.refresh();
    }, 250);
  }

  async refresh(): Promise<void> {
    this.stale = false;
    try {
      const states = vocabulary("WorkOrderState").filter((s) => s !== "closed" || this.showClosed.checked);
      // The deadlines count down on the hub's clock, asked again with every refresh.
      const [lists] = await Promise.all([
        Promise.all(states.map((state) => all<WorkOrder>("/work-orders", { state }, 2000))),
        hubClock.sync().catch(() => {}),
      ]);
      this.orders = lists.flat();
    } catch (e) {
      report(e);
      return;
    }
    this.draw();
  }

  private draw(): void {
    for (const [state, col] of this.columns) {
      const list = col.querySelector("ol")!;
      const orders = this.orders.filter((o) => o.state === state).sort((a, b) => Date.parse(a.due_at) - Date.parse(b.due_at));
      list.replaceChildren(...orders.map((o) => this.card(o)));
      col.querySelector(".n")!.textContent = ` ${orders.length}`;
      col.hidden = state === "closed" && !this.showClosed.checked;
    }
    this.tick();
    this.el.dataset.loaded = "true";
  }

  /** Counts the deadlines down. */
  private tick(): void {
    const now = hubClock.now();
    for (const card of this.board.querySelectorAll<HTMLElement>("li[data-due]")) {
      const left = Date.parse(card.dataset.due!) - now;
      const finished = card.dataset.finished === "true";
      const over = left < 0 && !finished;
      card.classList.toggle("overdue", over);
      card.classList.toggle("due-soon", !over && !finished && left < 3600_000);
      const due = card.querySelector(".due")!;
      due.textContent = finished ? `deadline ${when(card.dataset.due)}` : over ? `⚠ overdue by ${duration(-left)}` : `due in ${duration(left)}`;
    }
  }

  private card(o: WorkOrder): HTMLElement {
    const finished = ["done", "verified", "closed"].includes(o.state);
    const steps = o.next_states ?? [];
    const buttons = steps.map((to) => {
      const b = el("button", { type: "button", "data-to": to }, STEP_LABEL[to] ?? to);
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        this.move(o, to);
      });
      return b;
    });
    const li = el(
      "li",
      { tabindex: 0, class: `card sev-${o.severity}`, "data-id": o.id, "data-state": o.state, "data-due": o.due_at, "data-finished": String(finished) },
      el("div", { class: "title" }, `#${o.id} ${o.kind.replaceAll("_", " ")}`),
      el("div", {}, `${o.device} · ${o.severity}`),
      el("div", {}, `${o.team}${o.assignee ? ` → ${o.assignee}` : ""}`),
      o.reopened ? el("div", { class: "badge" }, `reopened ${o.reopened}×`) : null,
      el("div", { class: "due" }),
      buttons.length ? el("div", { class: "actions" }, ...buttons) : null,
    );
    li.addEventListener("click", () => this.app.openAsset(o.tenant, o.device));
    li.addEventListener("keydown", (e) => {
      if (e.target === li && e.key === "Enter") this.app.openAsset(o.tenant, o.device);
    });
    return li;
  }

  private async move(o: WorkOrder, to: string): Promise<void> {
    let body: Record<string, string> = { to };
    if (to === "assigned" && !o.assignee) {
      const v = await ask(`Assign #${o.id} (${o.team})`, [{ name: "assignee", label: "Person", required: true }, { name: "note", label: "Note (optional)" }], "Assign");
      if (!v) return;
      body = { to, assignee: v.assignee, ...(v.note ? { note: v.note } : {}) };
    }
    try {
      await post(`/work-orders/${o.id}/transition`, body);
      await this.refresh();
    } catch (e) {
      report(e);
    }
  }
}
