// KPIs: lamps burning as scheduled, open outages by kind (now); SLA compliance and energy
// against expected over a chosen range, with their trends per day. Refreshed by the live
// events and every minute.

import { all, get, has, query, type Outage } from "../api";
import { ALERT } from "../assets";
import { Chart, dayChart, SERIES_COLORS, utcDays } from "../charts";
import { el } from "../dom";
import * as live from "../live";
import { RangePicker, spanQuery } from "../range";
import type { App, Page } from "../app";

/** Horizontal bars with their numbers written out (never color alone). */
export function bars(rows: [string, number][], unit = ""): HTMLElement {
  const max = Math.max(1, ...rows.map(([, v]) => v));
  return el(
    "table",
    { class: "bars" },
    el("tbody", {}, ...rows.map(([label, v]) =>
      el("tr", {}, el("th", { scope: "row" }, ...breakable(label)),
        el("td", {}, el("div", { class: "bar-line" }, el("span", { class: "track" }, el("span", { class: "bar", style: `width:${(100 * v) / max}%` })), el("span", { class: "n" }, `${v.toLocaleString()}${unit}`)))),
    )),
  );
}

/** "voltage_out_of_range" may wrap after each "_" (a narrow tile, a phone), not inside a word. */
function breakable(label: string): (string | HTMLElement)[] {
  return label.split(/(?<=_)/).flatMap((part, k) => (k ? [el("wbr"), part] : [part]));
}

function tile(title: string, value: string, note: string, id: string): HTMLElement {
  return el("div", { class: "kpi", "data-kpi": id }, el("h2", {}, title), el("div", { class: "value" }, value), el("p", {}, note));
}

interface TeamLine { team: string; total: number; done_on_time: number; done_late: number; open_overdue: number; open_in_time: number }
export interface Energy { days: { day: string; district?: string | null; energy_kwh: number; rated_kwh?: number | null; burning_hours: number }[] }

export class KpiPage implements Page {
  readonly el: HTMLElement;
  private grid: HTMLElement;
  private timer = 0;
  private pending = 0;
  /** The assets are in: until then the lamps' tile says it is waiting for them. */
  private assetsIn = false;
  private range: RangePicker;
  private charts: Chart[] = [];
  private asked = 0;

  constructor(private app: App) {
    this.grid = el("div", { class: "kpis" });
    this.range = new RangePicker(() => this.refresh(), "30d");
    this.el = el("section", { class: "page kpi-page", "aria-label": "KPIs", hidden: true }, el("div", { class: "toolbar" }, el("h1", {}, "KPIs"), this.range.el), this.grid);
    const soon = () => {
      if (this.el.hidden || this.pending) return;
      this.pending = window.setTimeout(() => { this.pending = 0; this.refresh(); }, 1000);
    };
    live.onEvent("outage", soon);
    live.onEvent("work_order", soon);
  }

  show(): void {
    this.el.hidden = false;
    this.refresh();
    this.timer = window.setInterval(() => this.refresh(), 60_000);
  }

  hide(): void {
    this.el.hidden = true;
    clearInterval(this.timer);
  }

  /** The assets have loaded: a page opened first (`/kpis` loaded directly) counts them now. */
  loaded(): void {
    this.assetsIn = true;
    if (!this.el.hidden) this.refresh();
  }

  async refresh(): Promise<void> {
    const span = this.range.span();
    if (!span) return;
    const asked = ++this.asked;
    const a = this.app.assets;
    let lamps = 0, good = 0;
    for (let i = 0; i < a.count; i++) {
      if (a.kind[i] !== 0) continue;
      lamps++;
      const s = a.state[i];
      if (s < ALERT) good++;
    }
    const range = spanQuery(span);
    const [open, acked, teams, energy, alarms] = await Promise.all([
      all<Outage>("/outages", { state: "open" }, 20_000).catch(() => [] as Outage[]),
      all<Outage>("/outages", { state: "acknowledged" }, 20_000).catch(() => [] as Outage[]),
      get<{ teams: TeamLine[] }>(`/reports/teams${query(range)}`).catch(() => null),
      has("/api/v1/reports/energy") ? get<Energy>(`/reports/energy${query(range)}`).catch(() => null) : null,
      get<{ per_day?: { day: string; opened: number }[] }>(`/reports/alarms${query({ ...range, top: 1 })}`).catch(() => null),
    ]);
    if (asked !== this.asked) return;
    const byKind = new Map<string, number>();
    for (const o of [...open, ...acked]) byKind.set(o.kind, (byKind.get(o.kind) ?? 0) + 1);
    let onTime = 0, judged = 0;
    for (const t of teams?.teams ?? []) {
      onTime += t.done_on_time;
      judged += t.done_on_time + t.done_late + t.open_overdue;
    }
    const pct = (x: number, y: number) => (y ? `${((100 * x) / y).toFixed(1)} %` : "—");
    let actual = 0, expected = 0;
    // Per UTC day: energy used and at rated power, outages opened.
    const days = utcDays(span.from, span.to);
    const used = new Map<number, number>(), rated = new Map<number, number>(), opened = new Map<number, number>();
    for (const d of energy?.days ?? []) {
      if (d.rated_kwh == null) continue;
      actual += d.energy_kwh;
      expected += d.rated_kwh;
      const t = Date.parse(d.day) / 1000;
      used.set(t, (used.get(t) ?? 0) + d.energy_kwh);
      rated.set(t, (rated.get(t) ?? 0) + d.rated_kwh);
    }
    for (const d of alarms?.per_day ?? []) opened.set(Date.parse(d.day) / 1000, d.opened);
    for (const c of this.charts) c.destroy();
    this.charts = [];
    const energyTrend = el("div", { class: "chart" });
    const outageTrend = el("div", { class: "chart" });
    this.grid.replaceChildren(
      this.assetsIn
        ? tile("Lamps burning as scheduled", pct(good, lamps), `${good.toLocaleString()} of ${lamps.toLocaleString()} lamps report in and have no open outage`, "lamps")
        : tile("Lamps burning as scheduled", "…", "Counting the lamps…", "lamps"),
      el("div", { class: "kpi wide", "data-kpi": "outages" }, el("h2", {}, `Open outages by kind (${open.length + acked.length})`),
        byKind.size ? bars([...byKind.entries()].sort((x, y) => y[1] - x[1])) : el("p", {}, "None open.")),
      tile(`SLA compliance (${span.label})`, pct(onTime, judged), judged ? `${onTime} of ${judged} work orders done by their deadline (open overdue ones count as missed)` : "No work order judged in this range", "sla"),
      expected > 0
        ? tile(`Energy vs expected (${span.label})`, pct(actual, expected), `${actual.toFixed(1)} kWh used; ${expected.toFixed(1)} kWh at rated power for the hours burned`, "energy")
        : tile(`Energy vs expected (${span.label})`, "—", "No lamp energy rolled up in this range.", "energy"),
      el("div", { class: "kpi wide", "data-kpi": "energy-trend" }, el("h2", {}, `Lamp energy per day, kWh (${span.label})`), used.size ? energyTrend : el("p", {}, "No lamp energy rolled up in this range.")),
      el("div", { class: "kpi wide", "data-kpi": "outage-trend" }, el("h2", {}, `Outages opened per day (${span.label})`), alarms ? outageTrend : el("p", {}, "Not available.")),
    );
    if (used.size) {
      this.charts.push(dayChart(energyTrend, days, [
        { label: "used", values: days.map((d) => used.get(d) ?? null), colors: SERIES_COLORS.blue },
        { label: "at rated power", values: days.map((d) => rated.get(d) ?? null), colors: SERIES_COLORS.grey, dash: [5, 4] },
      ], 180));
    }
    if (alarms) this.charts.push(dayChart(outageTrend, days, [{ label: "opened", values: days.map((d) => opened.get(d) ?? 0), colors: SERIES_COLORS.red }], 180));
    if (this.assetsIn) this.el.dataset.loaded = "true";
  }
}
