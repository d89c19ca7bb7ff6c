// The map page: every asset by state over the base map, kind filters, finding an asset
// by id, and group commands (a cabinet, a district or a drawn area).

import { get, has } from "../api";
import { KINDS } from "../assets";
import { el } from "../dom";
import { MapView, type BaseMap } from "../map/view";
import type { App, Page } from "../app";
import { GroupCommand } from "./commands";

export interface MapSettings {
  tile_url?: string | null;
  tile_attribution?: string | null;
  base_map: boolean;
}

/** The base map and tile server, fetched once for every map of the app. */
let layers: Promise<{ map: BaseMap | null; settings: MapSettings | null }> | null = null;
export function mapLayers(): Promise<{ map: BaseMap | null; settings: MapSettings | null }> {
  layers ??= (async () => {
    if (!has("/api/v1/map")) return { map: null, settings: null };
    try {
      const settings = await get<MapSettings>("/map");
      const map = settings.base_map ? await get<BaseMap>("/map/base") : null;
      return { map, settings };
    } catch {
      return { map: null, settings: null };
    }
  })();
  return layers;
}

export class MapPage implements Page {
  readonly el: HTMLElement;
  readonly map: MapView;
  private fitted = false;
  private group: GroupCommand;

  constructor(private app: App) {
    this.map = new MapView(app.assets, {
      onPick: (i) => app.openAsset(app.assets.tenant[i], app.assets.ids[i]),
    });
    const kinds = el("fieldset", { class: "kinds" }, el("legend", {}, "Show"));
    for (const k of KINDS) {
      const box = el("input", { type: "checkbox", name: "kind", value: k, checked: true });
      box.addEventListener("change", () => {
        const shown = [...kinds.querySelectorAll<HTMLInputElement>("input:checked")].map((b) => b.value);
        this.map.setKinds(shown);
      });
      kinds.append(el("label", {}, box, ` ${k}s`));
    }
    const search = el("input", { type: "search", placeholder: "Find an asset by id", "aria-label": "Find an asset by id" });
    const find = el("form", { class: "find" }, search);
    find.addEventListener("submit", (e) => {
      e.preventDefault();
      const a = app.assets;
      const q = search.value.trim();
      const i = a.ids.findIndex((id) => id === q) ?? -1;
      if (i >= 0) {
        this.map.centerOn(i);
        app.openAsset(a.tenant[i], a.ids[i]);
      } else {
        search.setCustomValidity(`No asset ${q}`);
        search.reportValidity();
        setTimeout(() => search.setCustomValidity(""), 2000);
      }
    });
    const fit = el("button", { type: "button" }, "Whole city");
    fit.addEventListener("click", () => this.map.fit());
    this.group = new GroupCommand(app, this.map);
    const attribution = el("div", { class: "attribution" });
    this.el = el(
      "section",
      { class: "page map-page", "aria-label": "Map", hidden: true },
      el("div", { class: "toolbar" }, kinds, find, fit),
      el("div", { class: "map-wrap" }, this.map.el, attribution),
      this.group.el,
    );
    mapLayers().then(({ map, settings }) => {
      this.map.setBaseMap(map, settings?.tile_url ?? null);
      attribution.textContent = settings?.tile_attribution ?? "";
      if (this.fitted) this.map.fit();
    });
  }

  loaded(): void {
    if (!this.el.hidden) {
      this.map.render();
      this.map.fit();
      this.fitted = true;
    }
  }

  show(): void {
    this.el.hidden = false;
    this.map.start();
    if (!this.fitted && this.app.assets.count > 0) {
      requestAnimationFrame(() => {
        this.map.render();
        this.map.fit();
        this.fitted = true;
      });
    }
  }

  hide(): void {
    this.el.hidden = true;
    this.map.stop();
  }
}
