// The asset panel: what the asset is and says, a live chart (power and dim for lamps,
// flow for meters, speed for buses, power for cabinets), its recent outages and events,
// and commands (on, off, dim) with a confirmation and their delivery status live.

import type uPlot from "uplot";
import { all, get, has, query, type Device, type Me, type Outage } from "../api";
import { Assets, STATE_LABELS } from "../assets";
import { axis, Chart, color, SERIES_COLORS, timeSeries, type Colors } from "../charts";
import { ask, el } from "../dom";
import * as live from "../live";
import { markerIcon } from "../map/markers";
import { localizeTimes, timeEl } from "../time";
import { send, statusText, type LightAction } from "./commands";

/** The chart's series per kind: telemetry field (live events, raw history), the history
 * bucket's field, label. */
const SERIES: Record<string, [string, string, string][]> = {
  light: [["power_w", "power_avg_w", "power (W)"], ["dim", "dim_avg", "dim (%)"]],
  cabinet: [["power_kw", "power_avg_kw", "power (kW)"]],
  meter: [["flow_m3h", "flow_avg_m3h", "flow (m³/h)"]],
  vehicle: [["speed_mps", "speed_avg_mps", "speed (m/s)"]],
};
const COLORS: Colors[] = [SERIES_COLORS.amber, SERIES_COLORS.blue, SERIES_COLORS.green];

interface History {
  ts: number[];
  values: Record<string, (number | null)[]>;
}

/** Reads a history answer: rows `{items: [{ts, field...}]}` or columns `{ts: [], field: []}`. */
function readHistory(r: unknown, series: [string, string, string][]): History {
  const fields = series.map(([f]) => f);
  const bucketed = Object.fromEntries(series.map(([f, b]) => [f, b]));
  const out: History = { ts: [], values: Object.fromEntries(fields.map((f) => [f, []])) };
  const obj = r as Record<string, unknown>;
  const rows = (Array.isArray(obj) ? obj : (obj.items ?? obj.rows ?? obj.points ?? obj.buckets)) as Record<string, unknown>[] | undefined;
  if (Array.isArray(rows)) {
    for (const row of rows) {
      const t = row.t ?? row.ts ?? row.bucket ?? row.time;
      out.ts.push(typeof t === "number" ? t / 1000 : Date.parse(String(t)) / 1000);
      for (const f of fields) {
        const v = row[bucketed[f]] ?? row[f];
        out.values[f].push(typeof v === "number" ? v : null);
      }
    }
  } else if (Array.isArray(obj.ts)) {
    out.ts = (obj.ts as (string | number)[]).map((t) => (typeof t === "number" ? t / 1000 : Date.parse(t) / 1000));
    for (const f of fields) out.values[f] = ((obj[f] as (number | null)[]) ?? []).slice();
  }
  return out;
}

export class Panel {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private current: { tenant: string; device: string; index: number } | null = null;
  private chart: Chart | null = null;
  private history: History | null = null;
  private events: HTMLElement | null = null;
  private refreshTimer = 0;

  constructor(
    private assets: Assets,
    private me: Me,
  ) {
    const close = el("button", { type: "button", class: "close", "aria-label": "Close the panel" }, "×");
    close.addEventListener("click", () => this.close());
    this.body = el("div", { class: "panel-body" });
    this.el = el("aside", { class: "panel", id: "panel", hidden: true, "aria-label": "Asset", tabindex: -1 }, close, this.body);
    this.el.addEventListener("keydown", (e) => e.key === "Escape" && this.close());
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
    this.current = { tenant, device, index };
    this.chart?.destroy();
    this.chart = null;
    clearInterval(this.refreshTimer);
    this.el.hidden = false;
    this.el.dataset.device = device;
    const kind = index >= 0 ? ["light", "cabinet", "meter", "vehicle"][this.assets.kind[index]] : "light";
    const state = index >= 0 ? this.assets.state[index] : 0;
    const facts = el("dl", { class: "facts" });
    const header = el(
      "header",
      {},
      el("h2", {}, `${device}`),
      el("div", { class: "state-line", "data-state": state }, markerIcon(state, 16), ` ${STATE_LABELS[state]} · ${kind}`),
    );
    const chartBox = el("div", { class: "chart", "aria-label": "Live chart" });
    this.events = el("ol", { class: "events", "aria-label": "Recent events" });
    const commands = this.commandBox(tenant, device, kind);
    this.body.replaceChildren(header, facts, chartBox, el("h3", {}, "Recent events"), this.events, commands ?? "");
    this.el.focus();

    const d = await this.device(tenant, device, index).catch(() => null);
    if (this.current?.device !== device) return;
    const fact = (k: string, v: unknown) => v !== undefined && v !== null && v !== "" && facts.append(el("dt", {}, k), el("dd", {}, v instanceof Node ? v : String(v)));
    if (d) {
      fact("tenant", d.tenant);
      fact("district", d.district);
      fact("cabinet", d.cabinet);
      fact("rated power", d.rated_power_w ? `${d.rated_power_w} W` : null);
      fact("medium", d.medium);
      fact("route", d.route);
      fact("online", d.latest?.online === undefined || d.latest?.online === null ? "unknown" : d.latest.online ? "yes" : "no");
      fact("last seen", timeEl(d.latest?.last_seen));
      const t = d.latest?.telemetry ?? {};
      for (const [k, v] of Object.entries(t)) if (k !== "ts" && (typeof v !== "object" || v === null)) fact(k, v ?? "none");
    }
    this.drawChart(chartBox, tenant, device, kind);
    this.refreshTimer = window.setInterval(() => this.loadHistory(tenant, device, kind), 30_000);
    const outages = await all<Outage>("/outages", { device, tenant }, 20).catch(() => [] as Outage[]);
    for (const o of outages.slice(0, 20).reverse()) this.event(`${o.kind} ${o.state}: ${o.reason}`, o.opened_at);
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

  private async loadHistory(tenant: string, device: string, kind: string): Promise<void> {
    const fields = SERIES[kind].map(([f]) => f);
    if (!has("/api/v1/devices/{}/history")) return;
    const series = SERIES[kind];
    try {
      // The last 24 hours on the hub's clock (which may be the simulators').
      const r = await get<unknown>(`/devices/${encodeURIComponent(device)}/history${query({ tenant, bucket: "auto" })}`);
      if (this.current?.device !== device) return;
      this.history = readHistory(r, series);
      this.chart?.setData([this.history.ts, ...fields.map((f) => this.history!.values[f])] as uPlot.AlignedData);
    } catch {
      /* no history yet: the chart fills from live events */
    }
  }

  private async drawChart(box: HTMLElement, tenant: string, device: string, kind: string): Promise<void> {
    const series = SERIES[kind];
    this.history = { ts: [], values: Object.fromEntries(series.map(([f]) => [f, []])) };
    const opts = (width: number): uPlot.Options => ({
      width,
      height: 180,
      series: [timeSeries, ...series.map(([, , label], k) => ({ label, stroke: color(COLORS[k]), width: 2, scale: k === 0 ? "a" : "b", dash: k ? [4, 3] : undefined }))],
      axes: [axis({}, true), axis({ scale: "a" }), ...(series.length > 1 ? [axis({ scale: "b", side: 1, grid: { show: false } })] : [])],
      legend: { show: true },
    });
    this.chart = new Chart(opts, [[], ...series.map(() => [])] as unknown as uPlot.AlignedData, box, 520);
    await this.loadHistory(tenant, device, kind);
  }

  private onDevice(d: Record<string, unknown>): void {
    const c = this.current;
    if (!c || d.device !== c.device || d.tenant !== c.tenant || !this.history || !this.chart) return;
    const kind = String(d.kind);
    const fields = (SERIES[kind] ?? []).map(([f]) => f);
    const t = Date.parse(String(d.ts)) / 1000;
    if (!isFinite(t)) return;
    this.history.ts.push(t);
    for (const f of fields) this.history.values[f].push(typeof d[f] === "number" ? (d[f] as number) : null);
    this.chart.setData([this.history.ts, ...fields.map((f) => this.history!.values[f])] as uPlot.AlignedData);
    const line = this.el.querySelector(".state-line");
    if (line && c.index >= 0) {
      const st = this.assets.state[c.index];
      line.replaceChildren(markerIcon(st, 16), ` ${STATE_LABELS[st]} · ${kind}`);
      (line as HTMLElement).dataset.state = String(st);
    }
  }

  private commandBox(tenant: string, device: string, kind: string): HTMLElement | null {
    if (kind !== "light" || !["operator", "admin"].includes(this.me.role) || !has("/api/v1/commands")) return null;
    const status = el("p", { class: "command-status", role: "status", "aria-live": "polite" });
    const dim = el("input", { type: "range", min: 0, max: 100, value: 60, "aria-label": "Dim level" });
    const dimLabel = el("span", {}, "60%");
    dim.addEventListener("input", () => (dimLabel.textContent = `${dim.value}%`));
    const sendOne = async (action: LightAction, what: string) => {
      const ok = await ask(`${what} ${device}?`, [], what);
      if (!ok) return;
      status.textContent = "sending…";
      status.dataset.status = "pending";
      try {
        let last = "";
        await send(tenant, { device }, action, undefined, (counts, final) => {
          status.textContent = `${what}: ${statusText(counts)}`;
          const text = `${what}: ${statusText(counts)}`;
          if (text !== last && this.current?.device === device) this.event(`command ${text}`, new Date().toISOString());
          last = text;
          const s = Object.keys(counts).find((k) => counts[k]) ?? "pending";
          status.dataset.status = s;
          status.dataset.final = String(final);
        });
      } catch (e) {
        status.textContent = (e as Error).message;
        status.dataset.status = "error";
      }
    };
    const on = el("button", { type: "button", "data-command": "on" }, "Switch on");
    const off = el("button", { type: "button", "data-command": "off" }, "Switch off");
    const dimGo = el("button", { type: "button", "data-command": "dim" }, "Dim");
    on.addEventListener("click", () => sendOne({ action: "set_light", on: true }, "Switch on"));
    off.addEventListener("click", () => sendOne({ action: "set_light", on: false }, "Switch off"));
    dimGo.addEventListener("click", () => sendOne({ action: "set_light", on: true, dim: Number(dim.value) }, `Dim to ${dim.value}%`));
    return el("section", { class: "commands", "aria-label": "Commands" }, el("h3", {}, "Commands"), el("div", { class: "row" }, on, off), el("div", { class: "row" }, dim, dimLabel, dimGo), status);
  }
}
