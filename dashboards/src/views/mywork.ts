// My work: a crew member's page (the `crew` role's first view, made for a phone). Their
// team's work orders that are still to do, those given to them first, each with its
// deadline counting down, where it is, its outage's state, the steps they may take
// (start, done), and "Map": the map centred on the asset with its panel open. Live from
// the `work_order` events.

import { all, type WorkOrder } from "../api";
import { coalesce, el } from "../dom";
import { hubClock } from "../time";
import * as live from "../live";
import type { App, Page } from "../app";
import { report } from "../app";
import { step, tickCards, workOrderCard } from "./workorders";

/** The states in which an order is still the crew's to do. */
const TO_DO = ["assigned", "in_progress", "reopened", "new"];

export class MyWorkPage implements Page {
  readonly el: HTMLElement;
  private mine: HTMLOListElement;
  private team: HTMLOListElement;
  private count: HTMLElement;
  private timer = 0;
  private visible = false;
  private later = coalesce(() => this.refresh());

  constructor(private app: App) {
    this.mine = el("ol", { class: "cards mine", "aria-label": "Given to me" });
    this.team = el("ol", { class: "cards team", "aria-label": "My team's" });
    this.count = el("span", { class: "count", role: "status" });
    this.el = el(
      "section",
      { class: "page mywork-page", "aria-label": "My work", hidden: true },
      el("div", { class: "toolbar" }, el("h1", {}, "My work"), this.count),
      el("div", { class: "mywork" }, el("h2", {}, "Given to me"), this.mine, el("h2", {}, `Team ${app.me.team ?? ""}`), this.team),
    );
    live.onEvent("work_order", () => this.soon());
    live.onResync((t) => t.includes("work_order") && this.soon());
  }

  show(): void {
    this.el.hidden = false;
    this.visible = true;
    this.refresh();
    this.timer = window.setInterval(() => tickCards(this.el), 1000);
  }

  hide(): void {
    this.el.hidden = true;
    this.visible = false;
    clearInterval(this.timer);
  }

  private soon(): void {
    if (this.visible) this.later();
  }

  async refresh(): Promise<void> {
    let orders: WorkOrder[];
    try {
      const [lists] = await Promise.all([
        Promise.all(TO_DO.map((state) => all<WorkOrder>("/work-orders", { state }, 2000))),
        hubClock.sync().catch(() => {}),
      ]);
      orders = lists.flat().sort((a, b) => Date.parse(a.due_at) - Date.parse(b.due_at));
    } catch (e) {
      report(e);
      return;
    }
    const me = this.app.me.username;
    const card = (o: WorkOrder) => {
      const map = el("button", { type: "button", "data-action": "map" }, "Map");
      map.addEventListener("click", (e) => {
        e.stopPropagation();
        this.app.showOnMap(o.tenant, o.device);
      });
      return workOrderCard(o, async (to) => (await step(o, to)) && this.refresh(), () => this.app.openAsset(o.tenant, o.device), [map]);
    };
    const mine = orders.filter((o) => o.assignee === me);
    const rest = orders.filter((o) => o.assignee !== me);
    this.mine.replaceChildren(...(mine.length ? mine.map(card) : [el("li", { class: "empty" }, "Nothing given to you.")]));
    this.team.replaceChildren(...(rest.length ? rest.map(card) : [el("li", { class: "empty" }, "Nothing else for your team.")]));
    this.count.textContent = `${mine.length} given to you, ${rest.length} more for your team`;
    tickCards(this.el);
    this.el.dataset.loaded = "true";
  }
}
