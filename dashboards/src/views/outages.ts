// The outage list: filter, sort, acknowledge, shelve, assign, comment. Kept current by
// the live `outage` events (every watcher sees an acknowledgement at once). From the
// keyboard: arrows move between rows, Enter opens the asset, a/s/g/c act on the row. The
// open and acknowledged ones (the default) are the app's shared list (activeOutages.ts);
// other states are fetched here. On a phone each row is a card (style.css, `table.stack`).

import { all, has, post, teams, type Outage } from "../api";
import { shelved as isShelved } from "../activeOutages";
import { floods, type Flood } from "../floods";
import { ask, coalesce, el, keyboardRows } from "../dom";
import { ago, hubClock, timeEl, when } from "../time";
import * as live from "../live";
import type { App, Page } from "../app";
import { report } from "../app";

// Shapes every font has (an emoji's may be missing on a control room's Linux PC).
const SEVERITY_ICON: Record<string, string> = { critical: "⬢", major: "▲", minor: "•" };
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
  /** The floods among the rows, each a line with its bulk actions. */
  private floodBar: HTMLElement;
  /** The flood the list is narrowed to, if any. */
  private only: string | null = null;
  // Most severe first, then newest: what needs a person now (docs/rules.md, severities).
  private sort: { key: SortKey; desc: boolean } = { key: "severity", desc: false };
  private later = coalesce(() => this.refresh());
  private ticker = 0;
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
    this.floodBar = el("div", { class: "floods", role: "region", "aria-label": "Floods" });
    this.body = el("tbody", {});
    const table = el("table", { class: "outages stack" }, el("thead", {}, head), this.body);
    keyboardRows(this.body, "tr[tabindex]");
    this.el = el(
      "section",
      { class: "page outages-page", "aria-label": "Outages", hidden: true },
      el("div", { class: "toolbar" }, el("h1", {}, "Outages"), this.stateFilter, this.kindFilter, this.text, el("label", {}, this.shelved, " show shelved"), this.count),
      this.floodBar,
      el("div", { class: "scroll" }, table),
    );
    // The shared list follows its events itself; the other states are refetched here.
    app.active.onChange(() => {
      if (this.stateFilter.value !== "active") return;
      if (this.visible) this.take(app.active.rows);
      else this.stale = true;
    });
    live.onEvent("outage", () => this.soon());
    live.onEvent("work_order", () => this.soon());
    live.onResync((types) => types.includes("outage") && this.soon());
  }

  show(): void {
    this.el.hidden = false;
    this.visible = true;
    if (this.stale) {
      // The shared list is kept current while hidden: show it as it is.
      if (this.stateFilter.value === "active" && this.app.active.loaded) this.take(this.app.active.rows);
      else this.refresh();
    }
    this.ticker = window.setInterval(() => this.tick(), 1000);
  }

  hide(): void {
    this.el.hidden = true;
    this.visible = false;
    clearInterval(this.ticker);
  }

  /** Refetches shortly (events come in bursts), when the list is not the shared one. */
  private soon(): void {
    if (this.stateFilter.value === "active") return;
    this.stale = true;
    if (this.visible) this.later();
  }

  async refresh(): Promise<void> {
    this.stale = false;
    const s = this.stateFilter.value;
    let rows: Outage[];
    try {
      if (s === "active") {
        // Shown by the shared list's listener (above), as every change of it is.
        await this.app.active.refresh();
        return;
      } else {
        rows = await all<Outage>("/outages", { state: s }, 5000);
      }
    } catch (e) {
      report(e);
      return;
    }
    // A later choice of state has asked since: its answer is the one to show.
    if (s === this.stateFilter.value) this.take(rows);
  }

  private take(rows: Outage[]): void {
    this.stale = false;
    this.rows = rows;
    const kinds = [...new Set(this.rows.map((o) => o.kind))].sort();
    const chosen = this.kindFilter.value;
    this.kindFilter.replaceChildren(el("option", { value: "" }, "every kind"), ...kinds.map((k) => el("option", { value: k }, k)));
    this.kindFilter.value = kinds.includes(chosen) ? chosen : "";
    this.draw();
  }

  private draw(): void {
    const now = hubClock.now();
    const text = this.text.value.trim().toLowerCase();
    const kind = this.kindFilter.value;
    const showShelved = this.shelved.checked;
    const found = floods(this.rows.filter((o) => showShelved || !isShelved(o, now)));
    const narrowed = found.find((f) => f.key === this.only);
    if (!narrowed) this.only = null;
    const inFlood = new Map<number, Flood>();
    for (const f of found) for (const o of f.outages) inFlood.set(o.id, f);
    this.drawFloods(found);
    let rows = (narrowed ? narrowed.outages : this.rows).filter(
      (o) =>
        (!kind || o.kind === kind) &&
        (!text || o.device.toLowerCase().includes(text) || o.reason.toLowerCase().includes(text)) &&
        (showShelved || !isShelved(o, now)),
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
    this.body.replaceChildren(...rows.slice(0, 1000).map((o) => this.row(o, inFlood.get(o.id))));
    if (focused) this.body.querySelector<HTMLElement>(`tr[data-outage-id="${focused}"]`)?.focus();
    this.count.textContent = `${rows.length} of ${this.rows.length} outages`;
    this.el.dataset.loaded = "true";
  }

  /** Counts the ages up, on the hub's clock. */
  private tick(): void {
    for (const age of this.body.querySelectorAll<HTMLElement>(".age[data-since]")) {
      const text = ago(age.dataset.since!);
      if (age.textContent !== text) age.textContent = text;
    }
  }

  /** One line per flood: what it is, how many, since when, and its bulk actions. */
  private drawFloods(found: Flood[]): void {
    this.floodBar.replaceChildren(
      ...found.map((f) => {
        const open = f.outages.filter((o) => o.state === "open");
        const line = el(
          "div",
          { class: "flood", "data-flood": f.key, "data-kind": f.kind, "data-count": f.outages.length },
          el("strong", {}, `${f.outages.length} × ${f.kind}`),
          ` ${[f.place, f.tenant].filter(Boolean).join(" · ")} · since `,
          timeEl(f.since),
        );
        const button = (label: string, action: string, run: () => Promise<unknown>) => {
          const b = el("button", { type: "button", "data-action": action }, label);
          b.addEventListener("click", () => this.act(run));
          line.append(b);
        };
        const shown = this.only === f.key;
        const toggle = el("button", { type: "button", "data-action": "only", "aria-pressed": shown }, shown ? "Show all" : "Show these");
        toggle.addEventListener("click", () => {
          this.only = shown ? null : f.key;
          this.draw();
        });
        line.append(toggle);
        if (this.canAct && open.length) button(`Acknowledge ${open.length} open`, "ack-all", () => this.bulk(open, "acknowledge"));
        if (this.canAct) button(`Shelve ${f.outages.length}…`, "shelve-all", () => this.bulkShelve(f));
        return line;
      }),
    );
  }

  /** One request for many outages; each is done (and audited) as if alone. */
  private async bulk(outages: Outage[], action: "acknowledge" | "shelve", extra: Record<string, string> = {}): Promise<void> {
    const r = await post<{ done: Outage[]; skipped: { id: number; reason: string }[] }>("/outages/bulk", {
      ids: outages.map((o) => o.id),
      action,
      ...extra,
    });
    if (r.skipped.length) {
      report(new Error(`${r.done.length} done; ${r.skipped.length} left as they were: ${r.skipped.map((s) => `#${s.id} ${s.reason}`).join("; ")}`));
    }
  }

  private async bulkShelve(f: Flood): Promise<unknown> {
    const v = await ask(`Shelve ${f.outages.length} × ${f.kind}${f.place ? ` in ${f.place}` : ""}`, [
      { name: "hours", label: "For (hours)", type: "number", value: "8", required: true },
      { name: "reason", label: "Reason", required: true },
    ], `Shelve ${f.outages.length}`);
    if (!v) return;
    await hubClock.sync().catch(() => {});
    const until = new Date(hubClock.now() + Number(v.hours) * 3600_000).toISOString();
    return this.bulk(f.outages, "shelve", { until, reason: v.reason });
  }

  private row(o: Outage, flood?: Flood): HTMLTableRowElement {
    const shelved = isShelved(o, hubClock.now());
    const actions = el("td", { class: "actions wide" });
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
      el("td", { class: "severity" }, el("span", { class: `sev sev-${o.severity}`, "aria-hidden": "true" }, SEVERITY_ICON[o.severity] ?? "?"), ` ${o.severity}`),
      el("td", { class: "state" }, el("span", { "aria-hidden": "true" }, STATE_ICON[o.state] ?? ""), ` ${o.state}`, shelved ? el("span", { class: "badge" }, `shelved until ${when(o.shelved_until)}`) : null, o.chattering ? el("span", { class: "badge" }, "chattering") : null),
      el("td", { class: "wide" }, o.kind, flood ? el("span", { class: "badge" }, `flood of ${flood.outages.length}`) : null, el("div", { class: "reason" }, o.reason)),
      el("td", { "data-label": "Asset" }, o.device),
      el("td", { class: "opened", "data-label": "Opened" }, timeEl(o.opened_at), el("div", { class: "age", "data-since": o.opened_at }, ago(o.opened_at))),
      el("td", { "data-label": "Seen" }, `${o.occurrences}×`),
      el("td", { class: "wide handled" }, o.acknowledged_by ? `ack: ${o.acknowledged_by}` : "not acknowledged", handler(o)),
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
    await hubClock.sync().catch(() => {});
    const until = new Date(hubClock.now() + Number(v.hours) * 3600_000).toISOString();
    return post(`/outages/${o.id}/shelve`, { until, reason: v.reason });
  }

  private async assign(o: Outage): Promise<unknown> {
    const v = await ask(`Assign ${o.kind} at ${o.device}`, [
      { name: "team", label: "Team", value: o.work_order?.team ?? "", required: true, suggestions: await teams() },
      { name: "assignee", label: "Person (optional)", value: o.work_order?.assignee ?? "" },
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

/** Who handles an outage: its work order's state, team and person. */
function handler(o: Outage): HTMLElement | null {
  const w = o.work_order;
  if (!w) return null;
  const who = w.assignee ? `${w.assignee} (${w.team})` : w.team;
  return el("div", { class: "work-order", "data-work-order": w.id }, `order #${w.id} ${w.state.replace("_", " ")}: ${who}`);
}
