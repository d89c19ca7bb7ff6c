// The map page: every asset by state over the base map, kind filters, finding an asset
// by id, and group commands (a cabinet, a district or a drawn area).

import { get, has } from "../api";
import { KINDS, type Assets } from "../assets";
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
  private district: HTMLSelectElement;

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
    // Finding an asset: any part of its id, in any case; the list suggests the matches.
    const choices = el("datalist", { id: "asset-choices" });
    const search = el("input", { type: "search", placeholder: "Find an asset by id", "aria-label": "Find an asset by id", list: "asset-choices", autocomplete: "off" });
    const find = el("form", { class: "find" }, search, choices);
    search.addEventListener("input", () => {
      // What was said of the last try does not hold back this one.
      search.setCustomValidity("");
      const found = matches(app.assets, search.value, SUGGESTIONS);
      choices.replaceChildren(...found.map((i) => el("option", { value: app.assets.ids[i] }, describe(app.assets, i))));
    });
    find.addEventListener("submit", (e) => {
      e.preventDefault();
      const a = app.assets;
      const q = search.value.trim();
      // The id itself (in any case), or the only asset whose id holds what was typed.
      const exact = a.ids.findIndex((id) => id.toLowerCase() === q.toLowerCase());
      const found = exact >= 0 ? [exact] : matches(a, q, 2);
      const i = found.length === 1 ? found[0] : -1;
      if (i >= 0) {
        this.map.centerOn(i);
        app.openAsset(a.tenant[i], a.ids[i]);
        return;
      }
      search.setCustomValidity(found.length ? `Several assets match ${q}: pick one from the list` : `No asset matches ${q}`);
      search.reportValidity();
      setTimeout(() => search.setCustomValidity(""), 2000);
    });
    // One district alone on the map (and in the legend's counts).
    this.district = el("select", { "aria-label": "District" }, el("option", { value: "" }, "every district"));
    this.district.addEventListener("change", () => {
      this.map.setDistrict(this.district.value || null);
      this.map.fit();
    });
    const fit = el("button", { type: "button" }, "Whole city");
    fit.addEventListener("click", () => this.map.fit());
    this.group = new GroupCommand(app, this.map);
    const attribution = el("div", { class: "attribution" });
    this.el = el(
      "section",
      { class: "page map-page", "aria-label": "Map", hidden: true },
      el("div", { class: "toolbar" }, kinds, this.district, find, fit),
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
    this.districts();
    if (!this.el.hidden) {
      this.map.render();
      this.map.fit();
      this.fitted = true;
    }
  }

  /** The district filter's choices: every district the assets have, the choice kept. */
  private districts(): void {
    const chosen = this.district.value;
    const names = [...new Set(this.app.assets.district.filter(Boolean))].sort();
    this.district.replaceChildren(el("option", { value: "" }, "every district"), ...names.map((d) => el("option", { value: d }, d)));
    this.district.value = names.includes(chosen) ? chosen : "";
    this.map.setDistrict(this.district.value || null);
  }

  show(): void {
    this.el.hidden = false;
    this.map.start();
    if (!this.fitted && this.app.assets.count > 0) {
      requestAnimationFrame(() => {
        this.map.render();
        // Asked to show one asset meanwhile: that view stays.
        if (this.fitted) return;
        this.map.fit();
        this.fitted = true;
      });
    }
  }

  hide(): void {
    this.el.hidden = true;
    this.map.stop();
  }

  /** Centres the map on asset `i`, selected, instead of the whole city. */
  showAsset(i: number): void {
    this.fitted = true;
    this.map.centerOn(i);
  }
}

/** Suggestions shown while typing. */
const SUGGESTIONS = 12;

/** Assets whose id holds `q` (any case), those starting with it first; at most `max`. */
export function matches(a: Assets, q: string, max: number): number[] {
  const want = q.trim().toLowerCase();
  if (!want) return [];
  const starts: number[] = [];
  const holds: number[] = [];
  for (let i = 0; i < a.count && starts.length < max; i++) {
    const id = a.ids[i].toLowerCase();
    if (id.startsWith(want)) starts.push(i);
    else if (holds.length < max && id.includes(want)) holds.push(i);
  }
  return [...starts, ...holds].slice(0, max);
}

function describe(a: Assets, i: number): string {
  return [KINDS[a.kind[i]], a.district[i], a.tenant[i]].filter(Boolean).join(" · ");
}
