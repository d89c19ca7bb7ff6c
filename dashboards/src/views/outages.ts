// The outage list: filter, sort, acknowledge, shelve, assign, comment. Kept current by
// the live `outage` events (every watcher sees an acknowledgement at once). From the
// keyboard: arrows move between rows, Enter opens the asset, a/s/g/c act on the row.

import { all, has, hubNow, post, type Outage } from "../api";
import { ask, duration, el, keyboardRows, when } from "../dom";
import * as live from "../live";
import type { App, Page } from "../app";
import { report } from "../app";

const SEVERITY_ICON: Record<string, string> = { critical: "⛔", major: "▲", minor: "•" };
const STATE_ICON: Record<string, string> = { open: "●", acknowledged: "✓", resolved: "○", closed: "–" };
const SEVERITY_RANK: Record<string, number> = { critical: 0, major: 1, minor: 2 };

type SortKey = "severity" | "opened_at" | "kind" | "device" | "state" | "occurrences";

export class OutagesPage implements Page {
  readonly el: HTMLElement;
  private rows: Outage[] = [];
  private body: HTMLTableSectionElement;
  private count: HTMLElement;
  private stateFilter: HTMLSelectElement;
  private kindFilter: HTMLSelectElement;
  private text: HTMLInputElement;
  private shelved: HTMLInputElement;
  // Most severe first, then newest: what needs a person now (docs/rules.md, severities).
  private sort: { key: SortKey; desc: boolean } = { key: "severity", desc: false };
  private pending = 0;
  private visible = false;
  private stale = true;
  private canAct: boolean;
  private canComment: boolean;
  private canAssign: boolean;

  constructor(private app: App) {
    const role = app.me.role;
    this.canAct = role === "operator" || role === "admin";
    this.canComment = this.canAct || role === "dispatcher";
    this.canAssign = role === "operator" || role === "admin" || role === "dispatcher";
    this.stateFilter = el("select", { "aria-label": "State" });
    for (const [v, t] of [["active", "open and acknowledged"], ["open", "open"], ["acknowledged", "acknowledged"], ["resolved", "resolved"], ["closed", "closed"]]) {
      this.stateFilter.append(el("option", { value: v }, t));
    }
    this.kindFilter = el("select", { "aria-label": "Kind" }, el("option", { value: "" }, "every kind"));
    this.text = el("input", { type: "search", placeholder: "Device or reason", "aria-label": "Filter by device or reason" });
    this.shelved = el("input", { type: "checkbox" });
    this.count = el("span", { class: "count", role: "status" });
    this.stateFilter.addEventListener("change", () => this.refresh());
    this.kindFilter.addEventListener("change", () => this.draw());
    this.text.addEventListener("input", () => this.draw());
    this.shelved.addEventListener("change", () => this.draw());
    const head = el("tr", {});
    const cols: [SortKey | null, string][] = [
      ["severity", "Severity"],
      ["state", "State"],
      ["kind", "Kind"],
      ["device", "Asset"],
      ["opened_at", "Opened"],
      ["occurrences", "Seen"],
      [null, "Handled by"],
      [null, "Actions"],
    ];
    for (const [key, label] of cols) {
      if (!key) {
        head.append(el("th", { scope: "col" }, label));
        continue;
      }
      const b = el("button", { type: "button", class: "sort" }, label);
      b.addEventListener("click", () => {
        this.sort = { key, desc: this.sort.key === key ? !this.sort.desc : key === "opened_at" };
        this.draw();
      });
      head.append(el("th", { scope: "col", "data-key": key }, b));
    }
    this.body = el("tbody", {});
    const table = el("table", { class: "outages" }, el("thead", {}, head), this.body);
    keyboardRows(this.body, "tr[tabindex]");
    this.el = el(
      "section",
      { class: "page outages-page", "aria-label": "Outages", hidden: true },
      el("div", { class: "toolbar" }, el("h1", {}, "Outages"), this.stateFilter, this.kindFilter, this.text, el("label", {}, this.shelved, " show shelved"), this.count),
      el("div", { class: "scroll" }, table),
    );
    live.onEvent("outage", () => this.soon());
    live.onEvent("work_order", () => this.soon());
    live.onResync((types) => types.includes("outage") && this.soon());
  }

  show(): void {
    this.el.hidden = false;
    this.visible = true;
    if (this.stale) this.refresh();
  }

  hide(): void {
    this.el.hidden = true;
    this.visible = false;
  }

  /** Refetches shortly (events come in bursts). */
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
    const s = this.stateFilter.value;
    try {
      if (s === "active") {
        const [open, acked] = await Promise.all([
          all<Outage>("/outages", { state: "open" }, 5000),
          all<Outage>("/outages", { state: "acknowledged" }, 5000),
        ]);
        this.rows = [...open, ...acked];
      } else {
        this.rows = await all<Outage>("/outages", { state: s }, 5000);
      }
    } catch (e) {
      report(e);
      return;
    }
    const kinds = [...new Set(this.rows.map((o) => o.kind))].sort();
    const chosen = this.kindFilter.value;
    this.kindFilter.replaceChildren(el("option", { value: "" }, "every kind"), ...kinds.map((k) => el("option", { value: k }, k)));
    this.kindFilter.value = kinds.includes(chosen) ? chosen : "";
    this.draw();
  }

  private draw(): void {
    const now = Date.now();
    const text = this.text.value.trim().toLowerCase();
    const kind = this.kindFilter.value;
    const showShelved = this.shelved.checked;
    let rows = this.rows.filter(
      (o) =>
        (!kind || o.kind === kind) &&
        (!text || o.device.toLowerCase().includes(text) || o.reason.toLowerCase().includes(text)) &&
        (showShelved || !o.shelved_until || Date.parse(o.shelved_until) < now),
    );
    const { key, desc } = this.sort;
    const val = (o: Outage): number | string =>
      key === "severity" ? (SEVERITY_RANK[o.severity] ?? 9) : key === "opened_at" ? Date.parse(o.opened_at) : (o[key] as number | string);
    const newest = (a: Outage, b: Outage) => Date.parse(b.opened_at) - Date.parse(a.opened_at) || b.id - a.id;
    rows = rows.sort((a, b) => {
      const x = val(a), y = val(b);
      const c = x < y ? -1 : x > y ? 1 : 0;
      // Ties: newest first, whichever way the column is sorted.
      return (desc ? -c : c) || newest(a, b);
    });
    for (const th of this.el.querySelectorAll<HTMLElement>("th[data-key]")) {
      th.setAttribute("aria-sort", th.dataset.key === key ? (desc ? "descending" : "ascending") : "none");
    }
    const focused = (document.activeElement as HTMLElement | null)?.dataset?.outageId;
    this.body.replaceChildren(...rows.slice(0, 1000).map((o) => this.row(o)));
    if (focused) this.body.querySelector<HTMLElement>(`tr[data-outage-id="${focused}"]`)?.focus();
    this.count.textContent = `${rows.length} of ${this.rows.length} outages`;
    this.el.dataset.loaded = "true";
  }

  private row(o: Outage): HTMLTableRowElement {
    const shelved = o.shelved_until && Date.parse(o.shelved_until) > Date.now();
    const actions = el("td", { class: "actions" });
    const button = (label: string, key: string, f: () => Promise<unknown>) => {
      const b = el("button", { type: "button", "aria-keyshortcuts": key, "data-action": label.toLowerCase() }, label);
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        this.act(f);
      });
      actions.append(b);
    };
    if (this.canAct && o.state === "open") button("Ack", "a", () => post(`/outages/${o.id}/ack`));
    if (this.canAct && (o.state === "open" || o.state === "acknowledged")) {
      if (shelved) button("Unshelve", "s", () => post(`/outages/${o.id}/unshelve`));
      else button("Shelve", "s", () => this.shelve(o));
    }
    if (this.canAssign && has("/api/v1/outages/{}/assign") && (o.state === "open" || o.state === "acknowledged")) button("Assign", "g", () => this.assign(o));
    if (this.canComment) button("Comment", "c", () => this.comment(o));
    const tr = el(
      "tr",
      { tabindex: 0, "data-outage-id": o.id, "data-state": o.state, "data-device": o.device, class: `sev-${o.severity} state-${o.state}` },
      el("td", {}, el("span", { class: `sev sev-${o.severity}`, "aria-hidden": "true" }, SEVERITY_ICON[o.severity] ?? "?"), ` ${o.severity}`),
      el("td", { class: "state" }, el("span", { "aria-hidden": "true" }, STATE_ICON[o.state] ?? ""), ` ${o.state}`, shelved ? el("span", { class: "badge" }, `shelved until ${when(o.shelved_until)}`) : null, o.chattering ? el("span", { class: "badge" }, "chattering") : null),
      el("td", {}, o.kind, el("div", { class: "reason" }, o.reason)),
      el("td", {}, o.device),
      el("td", { title: o.opened_at }, when(o.opened_at), el("div", { class: "age" }, `${duration(Date.now() - Date.parse(o.opened_at))} ago`)),
      el("td", {}, `${o.occurrences}×`),
      el("td", {}, o.acknowledged_by ? `ack: ${o.acknowledged_by}` : "", o.assignee || o.team ? el("div", {}, `to: ${o.assignee ?? o.team}`) : null),
      actions,
    );
    tr.addEventListener("click", () => this.app.openAsset(o.tenant, o.device));
    tr.addEventListener("keydown", (e) => {
      if (e.target !== tr) return;
      const map: Record<string, string> = { a: "ack", s: shelved ? "unshelve" : "shelve", g: "assign", c: "comment" };
      if (e.key === "Enter") this.app.openAsset(o.tenant, o.device);
      else if (map[e.key]) actions.querySelector<HTMLButtonElement>(`button[data-action="${map[e.key]}"]`)?.click();
      else return;
      e.preventDefault();
    });
    return tr;
  }

  private async act(f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
      await this.refresh();
    } catch (e) {
      report(e);
    }
  }

  private async shelve(o: Outage): Promise<unknown> {
    const v = await ask(`Shelve ${o.kind} at ${o.device}`, [
      { name: "hours", label: "For (hours)", type: "number", value: "8", required: true },
      { name: "reason", label: "Reason", required: true },
    ], "Shelve");
    if (!v) return;
    // On the hub's clock, which judges "at most 30 days ahead".
    const now = await hubNow().catch(() => new Date());
    const until = new Date(now.getTime() + Number(v.hours) * 3600_000).toISOString();
    return post(`/outages/${o.id}/shelve`, { until, reason: v.reason });
  }

  private async assign(o: Outage): Promise<unknown> {
    const v = await ask(`Assign ${o.kind} at ${o.device}`, [
      { name: "team", label: "Team", value: o.team ?? "", required: true },
      { name: "assignee", label: "Person (optional)", value: o.assignee ?? "" },
      { name: "note", label: "Note (optional)" },
    ], "Assign");
    if (!v) return;
    return post(`/outages/${o.id}/assign`, { team: v.team, assignee: v.assignee || undefined, note: v.note || undefined });
  }

  private async comment(o: Outage): Promise<unknown> {
    const v = await ask(`Comment on ${o.kind} at ${o.device}`, [{ name: "text", label: "Comment", required: true }], "Add comment");
    if (!v) return;
    return post(`/outages/${o.id}/comment`, { text: v.text });
  }
}
