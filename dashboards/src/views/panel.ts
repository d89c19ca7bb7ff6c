// The asset panel: what the asset is and says (friendly labels and units), a chart of any
// of its series over a chosen range that the live readings extend, its outages, work
// orders and commands, its cabinet or a cabinet's lamps, recent events, and commands (on,
// off, dim) with a confirmation and their delivery status live.

import type uPlot from "uplot";
import { all, get, has, query, type Device, type Me, type Outage, type WorkOrder } from "../api";
import { Assets, STATE_LABELS } from "../assets";
import { axis, Chart, color, SERIES_COLORS, timeSeries } from "../charts";
import { ask, el } from "../dom";
import * as live from "../live";
import { markerIcon } from "../map/markers";
import { RangePicker, spanQuery, type Span } from "../range";
import { hubClock, localizeTimes, timeEl, when } from "../time";
import { fact as shownFact, num, SERIES, seriesLabel, type Series } from "../units";
import { durationBox, holdText, send, statusText, type LightAction } from "./commands";

interface History {
  ts: number[];
  values: (number | null)[];
}

/** Reads a history answer's points `{t, field...}` for one series: the bucket's field, or
 * with raw readings (a range of an hour or less) the telemetry field. */
function readHistory(r: unknown, series: Series): History {
  const out: History = { ts: [], values: [] };
  const points = (r as { points?: Record<string, unknown>[] }).points ?? [];
  for (const p of points) {
    const t = typeof p.t === "number" ? p.t / 1000 : Date.parse(String(p.t)) / 1000;
    if (!isFinite(t)) continue;
    const v = p[series.field] ?? (series.live ? p[series.live] : undefined);
    out.ts.push(t);
    out.values.push(typeof v === "number" ? v * series.factor : null);
  }
  return out;
}

/** A scale that stays readable with one point, or many equal ones: a span around it. */
function padded(min: number | null, max: number | null, pad: number): uPlot.Range.MinMax {
  if (min === null || max === null) return [0, 1];
  return min === max ? [min - pad, max + pad] : [min, max];
}

interface BatchLine { id: number; action: string; body?: { resume_schedule?: boolean }; issued_at: string; issued_by: string; origin?: string; devices: number; statuses: Record<string, number> }

export class Panel {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private current: { tenant: string; device: string; index: number; kind: string } | null = null;
  private chart: Chart | null = null;
  private history: History | null = null;
  private series: Series | null = null;
  private range: RangePicker;
  private events: HTMLElement | null = null;
  private refreshTimer = 0;
  /** Answers to an older choice of series or range are dropped. */
  private asked = 0;
  /** Lists the asset's outages, work orders and commands again (a command has ended). */
  private refreshRelated: (() => void) | null = null;

  constructor(
    private assets: Assets,
    private me: Me,
  ) {
    const close = el("button", { type: "button", class: "close", "aria-label": "Close the panel" }, "×");
    close.addEventListener("click", () => this.close());
    this.body = el("div", { class: "panel-body" });
    this.el = el("aside", { class: "panel", id: "panel", hidden: true, "aria-label": "Asset", tabindex: -1 }, close, this.body);
    this.el.addEventListener("keydown", (e) => e.key === "Escape" && this.close());
    this.range = new RangePicker(() => this.loadHistory(), "24h");
    live.onEvent("device", (d) => this.onDevice(d));
    live.onEvent("outage", (d) => {
      const c = this.current;
      if (c && d.device === c.device && d.tenant === c.tenant) this.event(`${d.kind}: ${d.transition}${d.actor ? ` by ${d.actor}` : ""}${d.detail ? ` — ${d.detail}` : ""}`, String(d.at));
    });
  }

  close(): void {
    this.el.hidden = true;
    this.current = null;
    this.chart?.destroy();
    this.chart = null;
    clearInterval(this.refreshTimer);
  }

  async open(tenant: string, device: string): Promise<void> {
    const index = this.assets.find(tenant, device) ?? -1;
    const kind = index >= 0 ? ["light", "cabinet", "meter", "vehicle"][this.assets.kind[index]] : "light";
    this.current = { tenant, device, index, kind };
    this.chart?.destroy();
    this.chart = null;
    clearInterval(this.refreshTimer);
    this.el.hidden = false;
    this.el.dataset.device = device;
    delete this.el.dataset.points;
    this.refreshRelated = null;
    const state = index >= 0 ? this.assets.state[index] : 0;
    const facts = el("dl", { class: "facts" });
    const header = el(
      "header",
      {},
      el("h2", {}, `${device}`),
      el("div", { class: "state-line", "data-state": state }, markerIcon(state, 16), ` ${STATE_LABELS[state]} · ${kind}`),
    );
    const chartBox = el("div", { class: "chart", "aria-label": "Chart" });
    const choose = el("select", { "aria-label": "Series", "data-series": "" }, ...(SERIES[kind] ?? []).map((x, k) => el("option", { value: String(k) }, seriesLabel(x))));
    choose.addEventListener("change", () => {
      this.series = SERIES[kind][Number(choose.value)];
      this.drawChart(chartBox);
    });
    this.series = SERIES[kind]?.[0] ?? null;
    const related = el("div", { class: "related" });
    this.events = el("ol", { class: "events", "aria-label": "Recent events" });
    const commands = this.commandBox(tenant, device, kind);
    this.body.replaceChildren(header, facts, el("div", { class: "chart-controls" }, choose, this.range.el), chartBox, related, el("h3", {}, "Recent events"), this.events, commands ?? "");
    this.el.focus();

    const d = await this.device(tenant, device, index).catch(() => null);
    if (this.current?.device !== device) return;
    const fact = (k: string, v: unknown) => v !== undefined && v !== null && v !== "" && facts.append(el("dt", {}, k), el("dd", {}, v instanceof Node ? v : String(v)));
    if (d) {
      fact("tenant", d.tenant);
      fact("district", d.district);
      fact("cabinet", d.cabinet);
      fact("rated power", d.rated_power_w ? `${num(d.rated_power_w)} W` : null);
      fact("medium", d.medium);
      fact("route", d.route);
      fact("online", d.latest?.online === undefined || d.latest?.online === null ? "unknown" : d.latest.online ? "yes" : "no");
      fact("last seen", timeEl(d.latest?.last_seen));
      const t = d.latest?.telemetry ?? {};
      for (const [k, v] of Object.entries(t)) if (k !== "ts" && (typeof v !== "object" || v === null)) fact(...shownFact(k, v));
    }
    this.drawChart(chartBox);
    this.refreshTimer = window.setInterval(() => this.range.span()?.live && this.loadHistory(), 30_000);
    const outages = await all<Outage>("/outages", { device, tenant }, 20).catch(() => [] as Outage[]);
    if (this.current?.device !== device) return;
    for (const o of outages.slice(0, 20).reverse()) this.event(`${o.kind} ${o.state}: ${o.reason}`, o.opened_at);
    this.refreshRelated = () => this.related(related, tenant, device, kind, d, outages);
    this.refreshRelated();
  }

  /** The asset's outages, work orders and commands, and its cabinet or its lamps, each a
   * short list; another asset named opens in this panel. */
  private async related(box: HTMLElement, tenant: string, device: string, kind: string, d: Device | null, outages: Outage[]): Promise<void> {
    const section = (name: string, title: string, items: HTMLElement[], none: string) =>
      el("section", { class: "related-list", "data-related": name }, el("h3", {}, title), items.length ? el("ul", {}, ...items) : el("p", { class: "muted" }, none));
    const assetLink = (id: string, label = id) => {
      const b = el("button", { type: "button", class: "link-button", "data-asset": id }, label);
      b.addEventListener("click", () => this.open(tenant, id));
      return b;
    };
    const [orders, batches, lamps] = await Promise.all([
      has("/api/v1/work-orders") ? all<WorkOrder>("/work-orders", { device, tenant }, 10).catch(() => [] as WorkOrder[]) : [],
      has("/api/v1/commands") ? all<BatchLine>("/commands", { device, tenant }, 10).catch(() => [] as BatchLine[]) : [],
      kind === "cabinet" ? all<Device>("/devices", { cabinet: device, kind: "light", tenant }, 200).catch(() => [] as Device[]) : [],
    ]);
    if (this.current?.device !== device) return;
    const parts: HTMLElement[] = [];
    parts.push(section("outages", `Outages (${outages.length}${outages.length >= 20 ? "+" : ""})`,
      outages.slice(0, 10).map((o) => el("li", {}, `${o.kind} — ${o.state}, opened `, timeEl(o.opened_at))), "None."));
    parts.push(section("work-orders", "Work orders", orders.slice(0, 10).map((w) =>
      el("li", {}, `#${w.id} ${w.kind} — ${w.state.replace(/_/g, " ")}${w.team ? `, ${w.team}` : ""}${w.due_at ? `, due ${when(w.due_at)}` : ""}`)), "None."));
    parts.push(section("commands", "Commands", batches.slice(0, 10).map((b) =>
      el("li", {}, `${b.body?.resume_schedule ? "back to schedule" : b.action.replace(/_/g, " ")} by ${b.issued_by}${b.devices > 1 ? ` (with ${b.devices - 1} more)` : ""}, `, timeEl(b.issued_at), ` — ${statusText(b.statuses)}`)), "None."));
    if (kind === "light" && d?.cabinet) parts.push(section("cabinet", "Cabinet", [el("li", {}, assetLink(d.cabinet))], ""));
    if (kind === "cabinet") parts.push(section("lamps", `Its lamps (${lamps.length}${lamps.length >= 200 ? "+" : ""})`, lamps.map((l) => el("li", {}, assetLink(l.ext_id))), "None."));
    box.replaceChildren(...parts);
  }

  private async device(tenant: string, device: string, index: number): Promise<Device | null> {
    if (has("/api/v1/devices/{}")) return await get<Device>(`/devices/${encodeURIComponent(device)}${query({ tenant })}`);
    if (index < 0) return null;
    // A hub without the single-device route: a tiny box around the asset.
    const lon = this.assets.lon[index], lat = this.assets.lat[index], eps = 1e-6;
    const page = await get<{ items: Device[] }>(`/devices${query({ tenant, bbox: `${lon - eps},${lat - eps},${lon + eps},${lat + eps}` })}`);
    return page.items.find((x) => x.ext_id === device) ?? null;
  }

  private event(text: string, at: string): void {
    if (!this.events) return;
    this.events.prepend(el("li", {}, timeEl(at), ` ${localizeTimes(text)}`));
    while (this.events.children.length > 30) this.events.lastElementChild?.remove();
  }

  /** The chosen series over the chosen range (on the hub's clock, which may be the
   * simulators'). */
  private async loadHistory(): Promise<void> {
    const c = this.current, series = this.series, span: Span | null = this.range.span();
    if (!c || !series || !span || !has("/api/v1/devices/{}/history")) return;
    const asked = ++this.asked;
    try {
      const r = await get<unknown>(`/devices/${encodeURIComponent(c.device)}/history${query({ tenant: c.tenant, bucket: "auto", ...spanQuery(span) })}`);
      if (asked !== this.asked || this.current?.device !== c.device) return;
      this.history = readHistory(r, series);
      this.chart?.setData([this.history.ts, this.history.values] as uPlot.AlignedData);
      this.el.dataset.points = String(this.history.ts.length);
    } catch (e) {
      if (asked === this.asked) this.event(`No history: ${e instanceof Error ? e.message : String(e)}`, new Date(hubClock.now()).toISOString());
    }
  }

  private async drawChart(box: HTMLElement): Promise<void> {
    const series = this.series;
    if (!series) return;
    this.chart?.destroy();
    this.history = { ts: [], values: [] };
    const opts = (width: number): uPlot.Options => ({
      width,
      height: 180,
      scales: { x: { range: (_u, min, max) => padded(min, max, 1800) }, y: { range: (_u, min, max) => padded(min, max, Math.max(1, Math.abs(min ?? 0) * 0.1)) } },
      series: [timeSeries, { label: seriesLabel(series), stroke: color(SERIES_COLORS.amber), width: 2, points: { show: true, size: 4 }, value: (_u, v) => (v === null || v === undefined ? "—" : `${num(v)}${series.unit ? ` ${series.unit}` : ""}`) }],
      axes: [axis({}, true), axis()],
      legend: { show: true },
    });
    this.chart = new Chart(opts, [[], []] as unknown as uPlot.AlignedData, box, 520);
    await this.loadHistory();
  }

  private onDevice(d: Record<string, unknown>): void {
    const c = this.current;
    if (!c || d.device !== c.device || d.tenant !== c.tenant) return;
    const line = this.el.querySelector(".state-line");
    if (line && c.index >= 0) {
      const st = this.assets.state[c.index];
      line.replaceChildren(markerIcon(st, 16), ` ${STATE_LABELS[st]} · ${c.kind}`);
      (line as HTMLElement).dataset.state = String(st);
    }
    // A live reading extends a chart that ends now, for a series a reading has.
    const s = this.series, h = this.history;
    if (!s?.live || !h || !this.chart || !this.range.span()?.live) return;
    const t = Date.parse(String(d.ts)) / 1000;
    const v = d[s.live];
    if (!isFinite(t) || typeof v !== "number") return;
    h.ts.push(t);
    h.values.push(v * s.factor);
    this.chart.setData([h.ts, h.values] as uPlot.AlignedData);
  }

  private commandBox(tenant: string, device: string, kind: string): HTMLElement | null {
    if (kind !== "light" || !["operator", "admin"].includes(this.me.role) || !has("/api/v1/commands")) return null;
    const status = el("p", { class: "command-status", role: "status", "aria-live": "polite" });
    const dim = el("input", { type: "range", min: 0, max: 100, value: 60, "aria-label": "Dim level" });
    const dimLabel = el("span", {}, "60%");
    dim.addEventListener("input", () => (dimLabel.textContent = `${dim.value}%`));
    const hold = durationBox();
    const sendOne = async (command: LightAction, what: string) => {
      const action = command.action === "resume_schedule" ? command : { ...command, expires_in_s: Number(hold.value) };
      const ok = await ask(`${what} ${device} in ${tenant}?`, [], what, holdText(action));
      if (!ok) return;
      status.textContent = "sending…";
      status.dataset.status = "pending";
      try {
        let last = "";
        await send(tenant, { device }, action, undefined, (counts, final) => {
          status.textContent = `${what}: ${statusText(counts)}`;
          const text = `${what}: ${statusText(counts)}`;
          if (text !== last && this.current?.device === device) this.event(`command ${text}`, new Date(hubClock.now()).toISOString());
          last = text;
          const s = Object.keys(counts).find((k) => counts[k]) ?? "pending";
          status.dataset.status = s;
          status.dataset.final = String(final);
          if (final && this.current?.device === device) this.refreshRelated?.();
        });
      } catch (e) {
        status.textContent = (e as Error).message;
        status.dataset.status = "error";
      }
    };
    const on = el("button", { type: "button", "data-command": "on" }, "Switch on");
    const off = el("button", { type: "button", "data-command": "off" }, "Switch off");
    const dimGo = el("button", { type: "button", "data-command": "dim" }, "Dim");
    const resume = el("button", { type: "button", "data-command": "resume" }, "Back to schedule");
    resume.addEventListener("click", () => sendOne({ action: "resume_schedule" }, "Back to schedule"));
    on.addEventListener("click", () => sendOne({ action: "set_light", on: true }, "Switch on"));
    off.addEventListener("click", () => sendOne({ action: "set_light", on: false }, "Switch off"));
    dimGo.addEventListener("click", () => sendOne({ action: "set_light", on: true, dim: Number(dim.value) }, `Dim to ${dim.value}%`));
    return el("section", { class: "commands", "aria-label": "Commands" }, el("h3", {}, "Commands"), el("div", { class: "row" }, on, off), el("div", { class: "row" }, dim, dimLabel, dimGo), el("div", { class: "row" }, hold), el("div", { class: "row" }, resume), status);
  }
}
