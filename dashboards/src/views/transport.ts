// Transport: the buses on the map, moving as their positions arrive, and a list of them
// (route, speed, occupancy, last report) that works from the keyboard.

import { el, keyboardRows } from "../dom";
import { timeEl } from "../time";
import * as live from "../live";
import type { App, Page } from "../app";
import { MapView } from "../map/view";
import { mapLayers } from "./map";

interface Bus { route?: string; speed?: number; occupancy?: number; ts?: string }

export class TransportPage implements Page {
  readonly el: HTMLElement;
  private map: MapView;
  private buses = new Map<number, Bus>();
  private list: HTMLElement;
  private timer = 0;
  private fitted = false;

  constructor(private app: App) {
    this.map = new MapView(app.assets, { kinds: ["vehicle"], onPick: (i) => app.openAsset(app.assets.tenant[i], app.assets.ids[i]) });
    this.map.el.id = "transport-map";
    this.list = el("tbody", {});
    keyboardRows(this.list, "tr[tabindex]");
    this.el = el(
      "section",
      { class: "page transport-page", "aria-label": "Transport", hidden: true },
      el("div", { class: "map-wrap" }, this.map.el),
      el("div", { class: "side scroll" }, el("h1", {}, "Buses"),
        el("table", { class: "stack buses" }, el("thead", {}, el("tr", {}, ...["Bus", "Route", "Speed", "Occupancy", "Last report"].map((h) => el("th", { scope: "col" }, h)))), this.list)),
    );
    mapLayers().then(({ map, settings }) => this.map.setBaseMap(map, settings?.tile_url ?? null));
    live.onEvent("device", (d) => {
      if (d.kind !== "vehicle") return;
      const i = app.assets.find(String(d.tenant), String(d.device));
      if (i === undefined) return;
      this.buses.set(i, { route: d.route as string, speed: d.speed_mps as number, occupancy: d.occupancy_pct as number, ts: d.ts as string });
    });
  }

  loaded(): void {
    if (!this.el.hidden) this.show();
  }

  show(): void {
    this.el.hidden = false;
    this.map.start();
    if (!this.fitted && this.app.assets.count) {
      this.map.render();
      this.map.fit();
      this.fitted = true;
    }
    this.drawList();
    this.timer = window.setInterval(() => this.drawList(), 2000);
  }

  hide(): void {
    this.el.hidden = true;
    this.map.stop();
    clearInterval(this.timer);
  }

  private drawList(): void {
    const a = this.app.assets;
    const rows: HTMLElement[] = [];
    for (let i = 0; i < a.count; i++) {
      if (a.kind[i] !== 3) continue;
      const b = this.buses.get(i) ?? {};
      const tr = el("tr", { tabindex: 0, "data-device": a.ids[i] },
        el("td", { class: "wide bus" }, a.ids[i]), el("td", { "data-label": "Route" }, b.route ?? "—"),
        el("td", { "data-label": "Speed" }, b.speed === undefined ? "—" : `${(b.speed * 3.6).toFixed(0)} km/h`),
        el("td", { "data-label": "Occupancy" }, b.occupancy === undefined ? "—" : `${b.occupancy} %`),
        el("td", { "data-label": "Last report" }, b.ts ? timeEl(b.ts) : a.lastSeen[i] ? timeEl(new Date(a.lastSeen[i]).toISOString()) : "—"));
      const open = () => { this.map.centerOn(i, 16); this.app.openAsset(a.tenant[i], a.ids[i]); };
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (e) => e.key === "Enter" && open());
      rows.push(tr);
    }
    const focused = (document.activeElement as HTMLElement | null)?.dataset?.device;
    this.list.replaceChildren(...rows);
    if (focused) this.list.querySelector<HTMLElement>(`tr[data-device="${focused}"]`)?.focus();
  }
}
