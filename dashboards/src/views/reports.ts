// Reports: alarm load per kind and over time, the crews' record against their deadlines,
// deadline breaches, and energy when the hub reports it.

import { get, has, type WorkOrder } from "../api";
import { axis, Chart, color, SERIES_COLORS, timeSeries } from "../charts";
import { el } from "../dom";
import { day, when } from "../time";
import type { App, Page } from "../app";
import { bars, type Energy } from "./kpis";

interface AlarmLoad { per_kind: { kind: string; opened: number; occurrences: number; chattering: number; shelved: number }[]; peak_per_10min: number; floods: { start: string; opened: number }[]; bad_actors: { device: string; kind: string; outages: number }[] }
interface TeamLine { team: string; total: number; done_on_time: number; done_late: number; open_overdue: number; open_in_time: number; reopened: number }

export class ReportsPage implements Page {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private charts: Chart[] = [];

  constructor(_app: App) {
    this.body = el("div", { class: "reports" });
    this.el = el("section", { class: "page reports-page", "aria-label": "Reports", hidden: true }, el("div", { class: "toolbar" }, el("h1", {}, "Reports")), this.body);
  }

  show(): void {
    this.el.hidden = false;
    this.refresh();
  }

  hide(): void {
    this.el.hidden = true;
  }

  async refresh(): Promise<void> {
    const [alarms, teams, breaches, energy] = await Promise.all([
      get<AlarmLoad>("/reports/alarms?top=10").catch(() => null),
      get<{ teams: TeamLine[] }>("/reports/teams").catch(() => null),
      get<{ items: WorkOrder[]; now: string }>("/reports/sla-breaches?limit=50").catch(() => null),
      has("/api/v1/reports/energy") ? get<Energy>("/reports/energy").catch(() => null) : null,
    ]);
    for (const c of this.charts) c.destroy();
    this.charts = [];
    const floods = el("div", { class: "chart" });
    const sections: HTMLElement[] = [];
    sections.push(el("section", { "data-report": "alarms" }, el("h2", {}, "Outages opened per kind (24 h)"),
      alarms?.per_kind.length ? bars(alarms.per_kind.map((k) => [k.kind, k.opened])) : el("p", {}, "No outage opened."),
      el("p", {}, `Peak: ${alarms?.peak_per_10min ?? 0} outages in 10 minutes; ${alarms?.floods.length ?? 0} floods (over 10 in 10 minutes).`), floods));
    sections.push(el("section", { "data-report": "teams" }, el("h2", {}, "Crews against their deadlines (30 days)"),
      el("div", { class: "table-scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ...["Team", "Orders", "On time", "Late", "Overdue", "In time", "Reopened"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, ...(teams?.teams ?? []).map((t) => el("tr", {}, el("th", { scope: "row" }, t.team), ...[t.total, t.done_on_time, t.done_late, t.open_overdue, t.open_in_time, t.reopened].map((v) => el("td", {}, String(v))))))))));
    sections.push(el("section", { "data-report": "breaches" }, el("h2", {}, `Deadline breaches (${breaches?.items.length ?? 0})`),
      el("ol", { class: "breaches" }, ...(breaches?.items ?? []).map((w) => el("li", {}, `⚠ #${w.id} ${w.kind} at ${w.device} — ${w.team}, due ${when(w.due_at)}, ${w.state}`)))));
    sections.push(el("section", { "data-report": "bad-actors" }, el("h2", {}, "Assets raising most outages"),
      alarms?.bad_actors.length ? bars(alarms.bad_actors.map((b) => [`${b.device} (${b.kind})`, b.outages])) : el("p", {}, "None.")));
    const energyChart = el("div", { class: "chart" });
    const days = new Map<number, [number, number]>();
    for (const d of energy?.days ?? []) {
      const t = Date.parse(d.day) / 1000;
      const v = days.get(t) ?? [0, 0];
      v[0] += d.energy_kwh;
      v[1] += d.rated_kwh ?? 0;
      days.set(t, v);
    }
    sections.push(el("section", { "data-report": "energy" }, el("h2", {}, "Lamp energy per day: used and at rated power (kWh)"),
      days.size ? energyChart : el("p", {}, "No lamp energy rolled up yet.")));
    this.body.replaceChildren(...sections);
    if (days.size) {
      const xs = [...days.keys()].sort((a, b) => a - b);
      // The days of the data (UTC dates, as the API gives them) as the ticks, as many as fit.
      const dayTicks = {
        splits: (u: { width: number }) => xs.filter((_x, k) => k % Math.max(1, Math.ceil((xs.length * 64) / u.width)) === 0),
        values: (_u: unknown, splits: number[]) => splits.map((s) => day(s * 1000, true)),
      };
      this.charts.push(new Chart((width) => ({ width, height: 220, scales: { x: { range: (_u, min, max) => [min - 43200, max + 43200] } },
        series: [{ label: "Day", value: (_u, v) => (v === null ? "—" : day(v * 1000, true)) }, { label: "used", stroke: color(SERIES_COLORS.blue), width: 2, points: { show: true } }, { label: "at rated power", stroke: color(SERIES_COLORS.grey), width: 2, dash: [5, 4], points: { show: true } }],
        axes: [axis(dayTicks), axis()] }),
        [xs, xs.map((x) => days.get(x)![0]), xs.map((x) => days.get(x)![1])], energyChart, 520));
    }
    if (alarms && alarms.floods.length) {
      const xs = alarms.floods.map((f) => Date.parse(f.start) / 1000);
      const ys = alarms.floods.map((f) => f.opened);
      this.charts.push(new Chart((width) => ({ width, height: 200, series: [timeSeries, { label: "opened in 10 min", stroke: color(SERIES_COLORS.red), width: 2, points: { show: true } }], axes: [axis({}, true), axis()] }),
        [xs, ys], floods, 520));
    }
    this.el.dataset.loaded = "true";
  }
}
