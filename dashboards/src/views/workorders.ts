// The work-order board: a column per state, deadlines counting down, overdue orders
// marked (red edge, a ⚠ and the word "overdue"), the next steps as buttons. Live from the
// `work_order` events.

import { all, post, vocabulary, type WorkOrder } from "../api";
import { ask, coalesce, el, keyboardRows } from "../dom";
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
  private teamFilter: HTMLSelectElement;
  private districtFilter: HTMLSelectElement;
  private stateFilter: HTMLSelectElement;
  private timer = 0;
  private later = coalesce(() => this.refresh());
  private visible = false;
  private stale = true;

  constructor(private app: App) {
    this.showClosed = el("input", { type: "checkbox" });
    this.showClosed.addEventListener("change", () => this.refresh());
    this.teamFilter = el("select", { "aria-label": "Team" });
    this.districtFilter = el("select", { "aria-label": "District" });
    this.stateFilter = el("select", { "aria-label": "State" }, el("option", { value: "" }, "every state"));
    for (const s of vocabulary("WorkOrderState")) this.stateFilter.append(el("option", { value: s }, s.replace("_", " ")));
    for (const f of [this.teamFilter, this.districtFilter, this.stateFilter]) f.addEventListener("change", () => this.draw());
    this.stateFilter.addEventListener("change", () => {
      // Closed orders are fetched on request: choosing them asks for them.
      if (this.stateFilter.value === "closed" && !this.showClosed.checked) {
        this.showClosed.checked = true;
        this.refresh();
      }
    });
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
      el("div", { class: "toolbar" }, el("h1", {}, "Work orders"), this.teamFilter, this.districtFilter, this.stateFilter, el("label", {}, this.showClosed, " show closed")),
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
    if (this.visible) this.later();
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

  /** A filter's options: every value the orders have, the choice kept while it has any. */
  private options(box: HTMLSelectElement, every: string, values: string[]): void {
    const chosen = box.value;
    const sorted = [...new Set(values)].sort();
    box.replaceChildren(el("option", { value: "" }, every), ...sorted.map((v) => el("option", { value: v }, v)));
    box.value = sorted.includes(chosen) ? chosen : "";
  }

  private draw(): void {
    this.options(this.teamFilter, "every team", this.orders.map((o) => o.team));
    this.options(this.districtFilter, "every district", this.orders.flatMap((o) => (o.district ? [o.district] : [])));
    const team = this.teamFilter.value;
    const district = this.districtFilter.value;
    const only = this.stateFilter.value;
    const shown = this.orders.filter((o) => (!team || o.team === team) && (!district || o.district === district));
    for (const [state, col] of this.columns) {
      const list = col.querySelector("ol")!;
      const orders = shown.filter((o) => o.state === state).sort((a, b) => Date.parse(a.due_at) - Date.parse(b.due_at));
      list.replaceChildren(...orders.map((o) => this.card(o)));
      col.querySelector(".n")!.textContent = ` ${orders.length}`;
      col.hidden = (state === "closed" && !this.showClosed.checked) || (!!only && state !== only);
    }
    this.tick();
    this.el.dataset.loaded = "true";
  }

  /** Counts the deadlines down. */
  private tick(): void {
    tickCards(this.board);
  }

  private card(o: WorkOrder): HTMLElement {
    return workOrderCard(o, (to) => this.move(o, to), () => this.app.openAsset(o.tenant, o.device));
  }

  private async move(o: WorkOrder, to: string): Promise<void> {
    if (await step(o, to)) await this.refresh();
  }
}

/** Moves `o` to `to` (asking for the person when it is assigned to nobody yet); whether it moved. */
export async function step(o: WorkOrder, to: string): Promise<boolean> {
  let body: Record<string, string> = { to };
  if (to === "assigned" && !o.assignee) {
    const v = await ask(`Assign #${o.id} (${o.team})`, [{ name: "assignee", label: "Person", required: true }, { name: "note", label: "Note (optional)" }], "Assign");
    if (!v) return false;
    body = { to, assignee: v.assignee, ...(v.note ? { note: v.note } : {}) };
  }
  try {
    await post(`/work-orders/${o.id}/transition`, body);
    return true;
  } catch (e) {
    report(e);
    return false;
  }
}

/** Counts a card's deadline down on the hub's clock: overdue, due soon, or when. */
export function tickCards(root: HTMLElement): void {
  const now = hubClock.now();
  for (const card of root.querySelectorAll<HTMLElement>("li[data-due]")) {
    const left = Date.parse(card.dataset.due!) - now;
    const finished = card.dataset.finished === "true";
    const over = left < 0 && !finished;
    card.classList.toggle("overdue", over);
    card.classList.toggle("due-soon", !over && !finished && left < 3600_000);
    const due = card.querySelector(".due")!;
    due.textContent = finished ? `deadline ${when(card.dataset.due)}` : over ? `⚠ overdue by ${duration(-left)}` : `due in ${duration(left)}`;
  }
}

/** A work order's card: what, where, how its outage stands, its team, its deadline, and
 * its next steps as buttons (`onStep`); a click or Enter opens the asset (`onOpen`). */
export function workOrderCard(o: WorkOrder, onStep: (to: string) => void, onOpen: () => void, extra: HTMLElement[] = []): HTMLElement {
  const finished = ["done", "verified", "closed"].includes(o.state);
  const buttons = (o.next_states ?? []).map((to) => {
    const b = el("button", { type: "button", "data-to": to }, STEP_LABEL[to] ?? to);
    b.addEventListener("click", (e) => {
      e.stopPropagation();
      onStep(to);
    });
    return b;
  });
  const li = el(
    "li",
    { tabindex: 0, class: `card sev-${o.severity}`, "data-id": o.id, "data-state": o.state, "data-due": o.due_at, "data-finished": String(finished) },
    el("div", { class: "title" }, `#${o.id} ${o.kind.replaceAll("_", " ")}`),
    el("div", { class: "where" }, [o.device, o.district, o.cabinet ? `cabinet ${o.cabinet}` : null].filter(Boolean).join(" · ")),
    el("div", { class: "outage-state", "data-outage-state": o.outage_state ?? "" }, `${o.severity} · ${o.outage_state ? `outage ${o.outage_state}` : "inspection"}`),
    el("div", {}, `${o.team}${o.assignee ? ` → ${o.assignee}` : ""}`),
    o.reopened ? el("div", { class: "badge" }, `reopened ${o.reopened}×`) : null,
    el("div", { class: "due" }),
    buttons.length || extra.length ? el("div", { class: "actions" }, ...buttons, ...extra) : null,
  );
  li.addEventListener("click", onOpen);
  li.addEventListener("keydown", (e) => {
    if (e.target === li && e.key === "Enter") onOpen();
  });
  return li;
}
