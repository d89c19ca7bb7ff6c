// Reports over a chosen range: alarm load per kind and over time, the crews' record
// against their deadlines, deadline breaches, and energy when the hub reports it; the
// range's readings exported through the export API, and a printable page.

import { get, has, query, type WorkOrder } from "../api";
import { axis, Chart, color, dayChart, SERIES_COLORS, timeSeries } from "../charts";
import { el } from "../dom";
import { RangePicker, spanQuery, type Span } from "../range";
import { when } from "../time";
import type { App, Page } from "../app";
import { bars, type Energy } from "./kpis";

interface AlarmLoad { per_kind: { kind: string; opened: number; occurrences: number; chattering: number; shelved: number }[]; peak_per_10min: number; floods: { start: string; opened: number }[]; bad_actors: { device: string; kind: string; outages: number }[] }
interface TeamLine { team: string; total: number; done_on_time: number; done_late: number; open_overdue: number; open_in_time: number; reopened: number }

/** An answer, or why there is none (said on the page, never an empty report instead). */
type Answer<T> = { ok: T } | { error: string };

async function answer<T>(path: string): Promise<Answer<T>> {
  try {
    return { ok: await get<T>(path) };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

function failed(a: Answer<unknown>): HTMLElement | null {
  return "error" in a ? el("p", { class: "report-error", role: "alert" }, `Could not load this report: ${a.error}`) : null;
}

export class ReportsPage implements Page {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private charts: Chart[] = [];
  private range: RangePicker;
  private exports: HTMLElement;
  private asked = 0;

  constructor(_app: App) {
    this.body = el("div", { class: "reports" });
    this.range = new RangePicker(() => this.refresh(), "30d");
    this.exports = el("span", { class: "exports" });
    const print = el("button", { type: "button", "data-print": "" }, "Print");
    print.addEventListener("click", () => window.print());
    this.el = el("section", { class: "page reports-page", "aria-label": "Reports", hidden: true },
      el("div", { class: "toolbar" }, el("h1", {}, "Reports"), this.range.el, this.exports, print), this.body);
  }

  show(): void {
    this.el.hidden = false;
    this.refresh();
  }

  hide(): void {
    this.el.hidden = true;
  }

  /** Links that download the range's readings of each kind (the export API, as a file). */
  private exportLinks(span: Span): void {
    if (!has("/api/v1/exports/{}")) {
      this.exports.replaceChildren();
      return;
    }
    const kind = el("select", { "aria-label": "Readings to export" },
      ...[["light", "lamp"], ["cabinet", "cabinet"], ["meter", "meter"], ["vehicle", "bus"]].map(([k, label]) => el("option", { value: k }, `${label} readings`)));
    const link = (format: string, label: string) => {
      const a = el("a", { class: "button", "data-export": format, download: "" }, label);
      const point = () => (a.href = `/api/v1/exports/${kind.value}${query({ ...spanQuery(span), format })}`);
      point();
      kind.addEventListener("change", point);
      return a;
    };
    this.exports.replaceChildren(kind, link("csv", "CSV"), link("parquet", "Parquet"));
  }

  async refresh(): Promise<void> {
    const span = this.range.span();
    if (!span) return;
    const asked = ++this.asked;
    this.exportLinks(span);
    const range = spanQuery(span);
    const [alarms, teams, breaches, energy] = await Promise.all([
      answer<AlarmLoad>(`/reports/alarms${query({ ...range, top: 10 })}`),
      answer<{ teams: TeamLine[] }>(`/reports/teams${query(range)}`),
      answer<{ items: WorkOrder[]; now: string }>("/reports/sla-breaches?limit=50"),
      has("/api/v1/reports/energy") ? answer<Energy>(`/reports/energy${query(range)}`) : null,
    ]);
    // A later range was asked for meanwhile: its answer draws the page.
    if (asked !== this.asked) return;
    for (const c of this.charts) c.destroy();
    this.charts = [];
    const a = "ok" in alarms ? alarms.ok : null;
    const t = "ok" in teams ? teams.ok : null;
    const b = "ok" in breaches ? breaches.ok : null;
    const e = energy && "ok" in energy ? energy.ok : null;
    const floods = el("div", { class: "chart" });
    const sections: HTMLElement[] = [];
    sections.push(el("section", { "data-report": "alarms" }, el("h2", {}, `Outages opened per kind (${span.label})`),
      failed(alarms) ?? (a?.per_kind.length ? bars(a.per_kind.map((k) => [k.kind, k.opened])) : el("p", {}, "No outage opened.")),
      el("p", {}, `Peak: ${a?.peak_per_10min ?? 0} outages in 10 minutes; ${a?.floods.length ?? 0} floods (over 10 in 10 minutes).`), floods));
    sections.push(el("section", { "data-report": "teams" }, el("h2", {}, `Crews against their deadlines (${span.label})`),
      failed(teams) ?? (!t?.teams.length ? el("p", {}, "No work order in this range.") : el("div", { class: "table-scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ...["Team", "Orders", "On time", "Late", "Overdue", "In time", "Reopened"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, ...(t?.teams ?? []).map((t) => el("tr", {}, el("th", { scope: "row" }, t.team), ...[t.total, t.done_on_time, t.done_late, t.open_overdue, t.open_in_time, t.reopened].map((v) => el("td", {}, String(v)))))))))));
    sections.push(el("section", { "data-report": "breaches" }, el("h2", {}, `Deadline breaches now (${b?.items.length ?? 0})`),
      failed(breaches) ?? el("ol", { class: "breaches" }, ...(b?.items ?? []).map((w) => el("li", {}, `⚠ #${w.id} ${w.kind} at ${w.device} — ${w.team}, due ${when(w.due_at)}, ${w.state}`)))));
    sections.push(el("section", { "data-report": "bad-actors" }, el("h2", {}, `Assets raising most outages (${span.label})`),
      failed(alarms) ?? (a?.bad_actors.length ? bars(a.bad_actors.map((b) => [`${b.device} (${b.kind})`, b.outages])) : el("p", {}, "None."))));
    const energyChart = el("div", { class: "chart" });
    const days = new Map<number, [number, number]>();
    for (const d of e?.days ?? []) {
      const t = Date.parse(d.day) / 1000;
      const v = days.get(t) ?? [0, 0];
      v[0] += d.energy_kwh;
      v[1] += d.rated_kwh ?? 0;
      days.set(t, v);
    }
    if (energy) sections.push(el("section", { "data-report": "energy" }, el("h2", {}, `Lamp energy per day: used and at rated power (kWh, ${span.label})`),
      failed(energy) ?? (days.size ? energyChart : el("p", {}, "No lamp energy rolled up in this range."))));
    this.body.replaceChildren(...sections);
    if (days.size) {
      const xs = [...days.keys()].sort((a, b) => a - b);
      this.charts.push(dayChart(energyChart, xs, [
        { label: "used", values: xs.map((x) => days.get(x)![0]), colors: SERIES_COLORS.blue },
        { label: "at rated power", values: xs.map((x) => days.get(x)![1]), colors: SERIES_COLORS.grey, dash: [5, 4] },
      ]));
    }
    if (a && a.floods.length) {
      const xs = a.floods.map((f) => Date.parse(f.start) / 1000);
      const ys = a.floods.map((f) => f.opened);
      this.charts.push(new Chart((width) => ({ width, height: 200, series: [timeSeries, { label: "opened in 10 min", stroke: color(SERIES_COLORS.red), width: 2, points: { show: true } }], axes: [axis({}, true), axis()] }),
        [xs, ys], floods, 520));
    }
    this.el.dataset.loaded = "true";
  }
}
