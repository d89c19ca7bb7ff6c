// The status page's map: the base map's district outlines and streets, one marker per
// item that has a place, in SVG. A few dozen items at most, so every marker is an element
// that can be clicked and restyled, and the drawing is redone whole when anything changes.
// The view fits the districts and the items; it does not pan or zoom (the list is the way
// to each item, on a phone as on a desktop).

import type { BaseMap, Kind, Work } from "./feed";
import { placeWords, TITLES } from "./words";

const NS = "http://www.w3.org/2000/svg";

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** One shape per kind, so that the colour is never the only sign: centred on 0,0. */
const SHAPES: Record<Kind, string> = {
  // A lamp, dark, its ring lit.
  dark_street: "M-8 0A8 8 0 1 0 8 0A8 8 0 1 0-8 0Z",
  // A drop.
  water_leak: "M0-11C4-6 8-2 8 3A8 8 0 0 1-8 3C-8-2-4-6 0-11Z",
  // A warning sign.
  planned_works: "M0-10L10 8H-10Z",
};

/** The kind's shape as a small icon, for the legend and the list. */
export function kindIcon(kind: Kind): SVGSVGElement {
  const icon = svg("svg", { class: `icon k-${kind}`, width: 22, height: 22, viewBox: "-12 -12 24 24", "aria-hidden": "true" });
  icon.append(svg("path", { d: SHAPES[kind] }));
  return icon;
}

/** Markers this close (px) are spread around their common place, so each can be picked. */
const SPREAD_PX = 10;
/** Room kept around the drawing (px): a marker at the edge is drawn whole. */
const MARGIN_PX = 20;

export class WorksMap {
  readonly element: HTMLElement;
  private readonly svg: SVGSVGElement;
  private base: BaseMap | null = null;
  private items: Work[] = [];
  private selected = -1;
  onSelect: (index: number) => void = () => {};

  constructor() {
    this.svg = svg("svg", { class: "map-drawing", role: "img" });
    this.element = document.createElement("div");
    this.element.className = "map";
    this.element.append(this.svg);
    new ResizeObserver(() => this.draw()).observe(this.element);
    this.svg.addEventListener("click", (e) => {
      const marker = (e.target as Element).closest<SVGGElement>(".marker");
      if (marker) this.onSelect(Number(marker.dataset.index));
    });
  }

  setBase(base: BaseMap | null): void {
    this.base = base;
    this.draw();
  }

  setItems(items: Work[], selected: number): void {
    this.items = items;
    this.selected = selected;
    this.draw();
  }

  select(index: number): void {
    this.selected = index;
    this.draw();
  }

  /** Whether there is anything to draw: a base map, or an item with a place. */
  hasContent(): boolean {
    return (this.base?.districts.length ?? 0) + (this.base?.streets.length ?? 0) > 0 || this.items.some((w) => w.at);
  }

  private draw(): void {
    const w = this.element.clientWidth;
    const h = this.element.clientHeight;
    this.svg.replaceChildren();
    this.svg.setAttribute("width", String(w));
    this.svg.setAttribute("height", String(h));
    this.svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const placed = this.items.map((item, index) => ({ item, index })).filter((p) => p.item.at);
    this.svg.dataset.drawn = String(placed.length);
    this.svg.setAttribute("aria-label", `Map of the city with ${placed.length} ${placed.length === 1 ? "place" : "places"} marked; the list has them all.`);
    if (!w || !h) return;

    // The extent: the districts (or, without them, the streets) and the items. Degrees of
    // longitude are shortened by the cosine of the latitude, which is near enough true
    // over a city.
    const districts = this.base?.districts ?? [];
    const streets = this.base?.streets ?? [];
    const extent: [number, number][] = [
      ...(districts.length ? districts.flatMap((d) => d.rings.flat()) : streets.flatMap((s) => s.lines.flat())),
      ...placed.map((p) => p.item.at!),
    ];
    if (!extent.length) return;
    let [west, south, east, north] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const [lon, lat] of extent) {
      west = Math.min(west, lon);
      east = Math.max(east, lon);
      south = Math.min(south, lat);
      north = Math.max(north, lat);
    }
    // A single place (one item, no map): a few hundred metres around it.
    const least = 0.004;
    if (east - west < least) [west, east] = [(west + east) / 2 - least / 2, (west + east) / 2 + least / 2];
    if (north - south < least) [south, north] = [(south + north) / 2 - least / 2, (south + north) / 2 + least / 2];
    const shrink = Math.cos((((north + south) / 2) * Math.PI) / 180);
    const scale = Math.min((w - 2 * MARGIN_PX) / ((east - west) * shrink), (h - 2 * MARGIN_PX) / (north - south));
    const x0 = (w - (east - west) * shrink * scale) / 2;
    const y0 = (h - (north - south) * scale) / 2;
    const at = ([lon, lat]: [number, number]): [number, number] => [x0 + (lon - west) * shrink * scale, y0 + (north - lat) * scale];
    const line = (points: [number, number][]) => points.map((p, i) => `${i ? "L" : "M"}${at(p).map((v) => v.toFixed(1)).join(" ")}`).join("");

    // Markers on one spot are spread around it.
    const spots = new Map<string, number>();
    const positions = placed.map(({ item }) => {
      const [x, y] = at(item.at!);
      const key = `${Math.round(x / SPREAD_PX)},${Math.round(y / SPREAD_PX)}`;
      const n = spots.get(key) ?? 0;
      spots.set(key, n + 1);
      if (n === 0) return [x, y];
      const angle = (n * 2 * Math.PI) / 6;
      return [x + Math.cos(angle) * SPREAD_PX * 1.4, y + Math.sin(angle) * SPREAD_PX * 1.4];
    });

    const selected = this.items[this.selected];
    const base = svg("g", { class: "base" });
    for (const d of districts) base.append(svg("path", { class: "district", d: d.rings.map((r) => `${line(r)}Z`).join("") }));
    // The selected item's street, drawn only inside its district: an item is the part of a
    // street in one district, and a street may cross the whole city.
    const within = selected?.district ? districts.find((d) => d.label === selected.district) : undefined;
    if (within) {
      const clip = svg("clipPath", { id: "selected-district" });
      clip.append(svg("path", { d: within.rings.map((r) => `${line(r)}Z`).join("") }));
      base.append(clip);
    }
    for (const s of streets) {
      base.append(svg("path", { class: "street", d: s.lines.map(line).join("") }));
      if (selected?.street && selected.street === s.label) {
        const mine = svg("path", { class: "street selected", d: s.lines.map(line).join("") });
        if (within) mine.setAttribute("clip-path", "url(#selected-district)");
        base.append(mine);
      }
    }
    // District names where there is room, at the middle of each outline's box, or just
    // above or below it when a marker is there.
    const free = (x: number, y: number, half: number) => positions.every(([mx, my]) => Math.abs(mx - x) > half + 12 || Math.abs(my - y) > 8 + 12);
    for (const d of districts) {
      if (!d.label) continue;
      const corners = d.rings[0].map((p) => at(p));
      const [minX, maxX] = [Math.min(...corners.map((p) => p[0])), Math.max(...corners.map((p) => p[0]))];
      const [minY, maxY] = [Math.min(...corners.map((p) => p[1])), Math.max(...corners.map((p) => p[1]))];
      const half = 4 * d.label.length + 4;
      if (maxX - minX < 2 * half || maxY - minY < 22) continue;
      const x = (minX + maxX) / 2;
      const room = (maxY - minY) / 2 - 10;
      const y = [0, 18, -18]
        .filter((dy) => Math.abs(dy) <= room)
        .map((dy) => (minY + maxY) / 2 + dy)
        .find((y) => free(x, y, half));
      if (y === undefined) continue;
      const label = svg("text", { class: "district-label", x, y, "text-anchor": "middle", "dominant-baseline": "central" });
      label.textContent = d.label;
      base.append(label);
    }
    this.svg.append(base);

    // The markers, the selected one last (on top).
    const markers = svg("g", { class: "markers" });
    let top: SVGGElement | null = null;
    placed.forEach(({ item, index }, k) => {
      const [x, y] = positions[k];
      const g = svg("g", {
        class: `marker k-${item.kind} s-${item.status}`,
        transform: `translate(${x.toFixed(1)} ${y.toFixed(1)})`,
        "data-index": index,
        "data-kind": item.kind,
      });
      const title = svg("title");
      title.textContent = `${TITLES[item.kind]}: ${placeWords(item)}`;
      // A finger's worth of target around a small marker.
      g.append(title, svg("circle", { class: "hit", r: 16 }));
      if (index === this.selected) {
        g.dataset.selected = "true";
        g.append(svg("circle", { class: "halo", r: 15 }));
        top = g;
      }
      g.append(svg("path", { d: SHAPES[item.kind] }));
      markers.append(g);
    });
    if (top) markers.append(top);
    this.svg.append(markers);
  }
}
