// The city map on two stacked 2D canvases: the base (tiles when the city has a tile
// server, district outlines, streets, bus routes; redrawn when the view moves) and the
// assets (every marker stamped into one ImageData; redrawn at most once per frame, when an
// asset or the view changed). No WebGL: with software rendering (no GPU in a control
// room's VM, or a headless browser) typed arrays and putImageData are what stays fluid.

import { ALERT, Assets, KINDS, State, STATE_COUNT, STATE_LABELS } from "../assets";
import { dark, onSchemeChange } from "../theme";
import { makeStamp, markerIcon, type Stamp } from "./markers";

export interface BaseMap {
  type: "FeatureCollection";
  features: {
    geometry: { type: string; coordinates: unknown };
    properties: { layer?: string; id?: string };
  }[];
}

export interface MapOptions {
  /** Called with an asset's index when it is clicked (or chosen with the keyboard). */
  onPick: (i: number) => void;
  /** Kinds shown at first. */
  kinds?: string[];
}

type Ring = Float64Array; // x0, y0, x1, y1, ... in Web Mercator units

const MAX_R = 7;
/**
 * Live state changes are drawn at most this often; panning and zooming at every frame. A
 * change shows within a tenth of a second, and a stream of them (a storm, a power restore)
 * costs a few redraws a second instead of one every frame.
 */
const DATA_REDRAW_MS = 100;

/** The base layer's colors per scheme; the dark one dims a city's (light) tiles. */
const PALETTES = {
  light: {
    background: "#eef1f4", tileShade: null, districtFill: "#f8f9fb", districtOverTiles: "rgba(255,255,255,0.15)",
    districtLine: "#5a6b7d", street: "#c9d0d8", route: "rgba(60,140,90,0.6)", label: "#33414f",
    drawnFill: "rgba(30,100,220,0.12)", drawnLine: "#1e64dc", selected: 0xffdc641e,
  },
  dark: {
    background: "#141a20", tileShade: "rgba(10,14,18,0.74)", districtFill: "#1b232c", districtOverTiles: "rgba(0,0,0,0.1)",
    districtLine: "#8797a9", street: "#36424f", route: "rgba(90,190,130,0.7)", label: "#d3dbe3",
    drawnFill: "rgba(100,160,255,0.18)", drawnLine: "#7aa7ff", selected: 0xffffb060,
  },
};

function merc(lon: number, lat: number): [number, number] {
  const s = Math.sin((lat * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}

export class MapView {
  readonly el: HTMLElement;
  private base: HTMLCanvasElement;
  private points: HTMLCanvasElement;
  private bctx: CanvasRenderingContext2D;
  private pctx: CanvasRenderingContext2D;
  private image: ImageData | null = null;
  private pixels: Uint32Array | null = null;
  private stamps: Stamp[][] = [];
  private cx = 0.5;
  private cy = 0.5;
  private zoom = 2;
  private w = 0;
  private h = 0;
  private drawnVersion = -1;
  private drawnAt = 0;
  private baseDirty = true;
  private pointsDirty = true;
  private frame = 0;
  private running = false;
  private districts: { ring: Ring; id: string }[] = [];
  private streets: Ring[] = [];
  private routes: { ring: Ring; id: string }[] = [];
  private tileUrl: string | null = null;
  private tiles = new Map<string, HTMLImageElement>();
  private shownKinds: Set<number>;
  /** The district shown alone, if one is chosen. */
  private shownDistrict: string | null = null;
  private legend: HTMLElement;
  private polygon: [number, number][] | null = null;
  private polygonDone: ((p: [number, number][]) => void) | null = null;
  private selected = -1;
  private fitted = false;
  /** Frames drawn, markers drawn in the last frame: read by the tests and the benchmark. */
  stats = { renders: 0, drawn: 0, lastRenderMs: 0, firstFullRenderAt: 0 };

  constructor(
    readonly assets: Assets,
    private opts: MapOptions,
  ) {
    this.el = document.createElement("div");
    this.el.className = "map";
    this.el.id = "map";
    this.el.tabIndex = 0;
    this.el.setAttribute("role", "application");
    this.el.setAttribute("aria-label", "City map: arrow keys pan, + and - zoom, Enter opens the asset in the middle");
    this.base = document.createElement("canvas");
    this.points = document.createElement("canvas");
    this.base.className = "map-base";
    this.points.className = "map-points";
    this.el.append(this.base, this.points);
    this.bctx = this.base.getContext("2d")!;
    this.pctx = this.points.getContext("2d")!;
    this.legend = document.createElement("div");
    this.legend.className = "legend";
    this.el.append(this.legend);
    const kinds = opts.kinds ?? [...KINDS];
    this.shownKinds = new Set(kinds.map((k) => KINDS.indexOf(k as (typeof KINDS)[number])));
    this.makeStamps();
    onSchemeChange(() => {
      this.makeStamps();
      this.legend.dataset.key = "";
      this.baseDirty = this.pointsDirty = true;
    });
    this.listen();
  }

  private makeStamps(): void {
    const d = dark();
    for (let s = 0; s < STATE_COUNT; s++) {
      this.stamps[s] = [];
      for (let r = 1; r <= MAX_R; r++) this.stamps[s][r] = makeStamp(s, r, d);
    }
  }

  setBaseMap(map: BaseMap | null, tileUrl: string | null): void {
    this.tileUrl = tileUrl;
    this.districts = [];
    this.streets = [];
    this.routes = [];
    for (const f of map?.features ?? []) {
      const g = f.geometry;
      const layer = f.properties.layer;
      const line = (g.type === "Polygon" ? (g.coordinates as number[][][])[0] : (g.coordinates as number[][])) ?? [];
      const ring = new Float64Array(line.length * 2);
      line.forEach(([lon, lat], k) => {
        const [x, y] = merc(lon, lat);
        ring[2 * k] = x;
        ring[2 * k + 1] = y;
      });
      if (layer === "district") this.districts.push({ ring, id: f.properties.id ?? "" });
      else if (layer === "route") this.routes.push({ ring, id: f.properties.id ?? "" });
      else if (layer === "street") this.streets.push(ring);
    }
    this.baseDirty = true;
  }

  setKinds(kinds: string[]): void {
    this.shownKinds = new Set(kinds.map((k) => KINDS.indexOf(k as (typeof KINDS)[number])));
    this.pointsDirty = true;
  }

  /** Shows one district's assets alone (null: every district). */
  setDistrict(district: string | null): void {
    this.shownDistrict = district;
    this.pointsDirty = true;
  }

  /** Whether asset `i` is shown: its kind is, and its district when one is chosen. */
  private shows(i: number): boolean {
    const a = this.assets;
    return this.shownKinds.has(a.kind[i]) && (this.shownDistrict === null || a.district[i] === this.shownDistrict);
  }

  /** Centers the view on every asset shown. */
  fit(): void {
    const a = this.assets;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < a.count; i++) {
      if (!this.shows(i)) continue;
      const x = a.mx[i], y = a.my[i];
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
    for (const d of this.districts) {
      for (let k = 0; k < d.ring.length; k += 2) {
        x0 = Math.min(x0, d.ring[k]); x1 = Math.max(x1, d.ring[k]);
        y0 = Math.min(y0, d.ring[k + 1]); y1 = Math.max(y1, d.ring[k + 1]);
      }
    }
    if (!isFinite(x0)) return;
    this.cx = (x0 + x1) / 2;
    this.cy = (y0 + y1) / 2;
    const span = Math.max(x1 - x0, y1 - y0, 1e-7);
    const px = Math.max(200, Math.min(this.w || 800, this.h || 600) - 40);
    this.zoom = Math.min(19, Math.log2(px / (span * 256)));
    this.baseDirty = this.pointsDirty = true;
    this.fitted = true;
  }

  centerOn(i: number, zoom = 17): void {
    this.cx = this.assets.mx[i];
    this.cy = this.assets.my[i];
    this.zoom = Math.max(this.zoom, zoom);
    this.selected = i;
    this.baseDirty = this.pointsDirty = true;
  }

  select(i: number): void {
    this.selected = i;
    this.pointsDirty = true;
  }

  /** Lets the user draw a polygon (click the corners, double-click or Enter to finish). */
  drawPolygon(done: (p: [number, number][]) => void): void {
    this.polygon = [];
    this.polygonDone = done;
    this.el.classList.add("drawing");
    this.baseDirty = true;
  }

  cancelPolygon(): void {
    this.polygon = null;
    this.polygonDone = null;
    this.el.classList.remove("drawing");
    this.baseDirty = true;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const loop = () => {
      if (!this.running) return;
      this.render();
      this.frame = requestAnimationFrame(loop);
    };
    this.frame = requestAnimationFrame(loop);
  }

  stop(): void {
    this.running = false;
    cancelAnimationFrame(this.frame);
  }

  private get scale(): number {
    return 256 * Math.pow(2, this.zoom);
  }

  private toScreen(x: number, y: number): [number, number] {
    const s = this.scale;
    return [(x - this.cx) * s + this.w / 2, (y - this.cy) * s + this.h / 2];
  }

  private fromScreen(sx: number, sy: number): [number, number] {
    const s = this.scale;
    return [(sx - this.w / 2) / s + this.cx, (sy - this.h / 2) / s + this.cy];
  }

  private resize(): boolean {
    const w = Math.max(1, Math.floor(this.el.clientWidth));
    const h = Math.max(1, Math.floor(this.el.clientHeight));
    if (w === this.w && h === this.h) return false;
    this.w = w;
    this.h = h;
    for (const c of [this.base, this.points]) {
      c.width = w;
      c.height = h;
    }
    this.image = this.pctx.createImageData(w, h);
    this.pixels = new Uint32Array(this.image.data.buffer);
    return true;
  }

  /** Draws what changed; called once per animation frame. */
  render(): void {
    if (this.resize()) this.baseDirty = this.pointsDirty = true;
    if (this.baseDirty) {
      this.drawBase();
      this.baseDirty = false;
    }
    const changed = this.drawnVersion !== this.assets.version;
    const now = performance.now();
    if (this.pointsDirty || (changed && now - this.drawnAt >= DATA_REDRAW_MS)) {
      const t0 = now;
      this.drawnAt = now;
      this.drawPoints();
      this.stats.lastRenderMs = performance.now() - t0;
      this.drawnVersion = this.assets.version;
      this.pointsDirty = false;
      this.stats.renders++;
      this.updateLegend();
    }
  }

  private path(ctx: CanvasRenderingContext2D, ring: Ring, close: boolean): void {
    const s = this.scale, ox = this.w / 2 - this.cx * s, oy = this.h / 2 - this.cy * s;
    ctx.moveTo(ring[0] * s + ox, ring[1] * s + oy);
    for (let k = 2; k < ring.length; k += 2) ctx.lineTo(ring[k] * s + ox, ring[k + 1] * s + oy);
    if (close) ctx.closePath();
  }

  private drawBase(): void {
    const ctx = this.bctx;
    const p = dark() ? PALETTES.dark : PALETTES.light;
    ctx.fillStyle = p.background;
    ctx.fillRect(0, 0, this.w, this.h);
    if (this.tileUrl) {
      this.drawTiles(ctx);
      if (p.tileShade) {
        ctx.fillStyle = p.tileShade;
        ctx.fillRect(0, 0, this.w, this.h);
      }
    }
    ctx.lineJoin = "round";
    ctx.beginPath();
    for (const d of this.districts) this.path(ctx, d.ring, true);
    ctx.fillStyle = this.tileUrl ? p.districtOverTiles : p.districtFill;
    ctx.fill();
    ctx.strokeStyle = p.districtLine;
    ctx.lineWidth = 2;
    ctx.setLineDash([6, 4]);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.beginPath();
    for (const r of this.streets) this.path(ctx, r, false);
    ctx.strokeStyle = p.street;
    ctx.lineWidth = Math.max(1, Math.min(8, this.zoom - 12));
    ctx.stroke();
    ctx.beginPath();
    for (const r of this.routes) this.path(ctx, r.ring, false);
    ctx.strokeStyle = p.route;
    ctx.lineWidth = 2;
    ctx.stroke();
    if (this.zoom > 13) {
      ctx.font = "600 13px system-ui, sans-serif";
      ctx.fillStyle = p.label;
      ctx.textAlign = "center";
      for (const d of this.districts) {
        let x = 0, y = 0;
        const n = d.ring.length / 2;
        for (let k = 0; k < d.ring.length; k += 2) { x += d.ring[k]; y += d.ring[k + 1]; }
        const [sx, sy] = this.toScreen(x / n, y / n);
        ctx.fillText(d.id, sx, sy);
      }
    }
    if (this.polygon) {
      ctx.beginPath();
      this.polygon.forEach(([x, y], k) => {
        const [sx, sy] = this.toScreen(x, y);
        if (k === 0) ctx.moveTo(sx, sy);
        else ctx.lineTo(sx, sy);
      });
      ctx.closePath();
      ctx.fillStyle = p.drawnFill;
      ctx.fill();
      ctx.strokeStyle = p.drawnLine;
      ctx.lineWidth = 2;
      ctx.stroke();
    }
  }

  private drawTiles(ctx: CanvasRenderingContext2D): void {
    const z = Math.max(0, Math.min(19, Math.round(this.zoom)));
    const n = 1 << z;
    const size = this.scale / n;
    const [x0, y0] = this.fromScreen(0, 0);
    const [x1, y1] = this.fromScreen(this.w, this.h);
    for (let ty = Math.max(0, Math.floor(y0 * n)); ty <= Math.min(n - 1, Math.floor(y1 * n)); ty++) {
      for (let tx = Math.max(0, Math.floor(x0 * n)); tx <= Math.min(n - 1, Math.floor(x1 * n)); tx++) {
        const url = this.tileUrl!.replace("{z}", String(z)).replace("{x}", String(tx)).replace("{y}", String(ty));
        let img = this.tiles.get(url);
        if (!img) {
          img = new Image();
          img.onload = () => (this.baseDirty = true);
          img.src = url;
          this.tiles.set(url, img);
          if (this.tiles.size > 512) this.tiles.delete(this.tiles.keys().next().value!);
        }
        if (img.complete && img.naturalWidth) {
          const [sx, sy] = this.toScreen(tx / n, ty / n);
          ctx.drawImage(img, Math.floor(sx), Math.floor(sy), Math.ceil(size) + 1, Math.ceil(size) + 1);
        }
      }
    }
  }

  /** Marker half size by kind and state at this zoom. */
  private radius(kind: number, state: number): number {
    const z = this.zoom;
    let r = z < 14 ? 1 : z < 15.5 ? 2 : z < 17 ? 3 : 4;
    if (kind === 1) r += 1; // cabinet
    if (kind === 3) r += 2; // vehicle
    if (state >= ALERT) r = Math.max(r + 1, 3);
    if (state === State.OutageCritical) r += 1;
    return Math.min(MAX_R, r);
  }

  private drawPoints(): void {
    const px = this.pixels!;
    const a = this.assets;
    const w = this.w, h = this.h;
    px.fill(0);
    const s = this.scale, ox = w / 2 - this.cx * s, oy = h / 2 - this.cy * s;
    const radii: number[][] = [];
    for (let k = 0; k < 4; k++) {
      radii[k] = [];
      for (let st = 0; st < STATE_COUNT; st++) radii[k][st] = this.radius(k, st);
    }
    let drawn = 0;
    // Two passes: assets at fault last, on top of the rest.
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < a.count; i++) {
        const kind = a.kind[i];
        if (!this.shows(i)) continue;
        const st = a.state[i];
        if ((st >= ALERT ? 1 : 0) !== pass) continue;
        const x = (a.mx[i] * s + ox) | 0;
        const y = (a.my[i] * s + oy) | 0;
        const r = radii[kind][st];
        if (x < r + 1 || y < r + 1 || x >= w - r - 1 || y >= h - r - 1) continue;
        const stamp = this.stamps[st][r];
        const base = y * w + x;
        const dx = stamp.dx, dy = stamp.dy, col = stamp.color;
        for (let k = 0; k < dx.length; k++) px[base + dy[k] * w + dx[k]] = col[k];
        drawn++;
      }
    }
    if (this.selected >= 0 && this.selected < a.count) {
      const x = (a.mx[this.selected] * s + ox) | 0;
      const y = (a.my[this.selected] * s + oy) | 0;
      const ring = 10;
      const color = dark() ? PALETTES.dark.selected : PALETTES.light.selected;
      for (let t = 0; t < 64; t++) {
        const ang = (t / 64) * Math.PI * 2;
        const qx = x + Math.round(Math.cos(ang) * ring), qy = y + Math.round(Math.sin(ang) * ring);
        if (qx >= 0 && qy >= 0 && qx < w && qy < h) px[qy * w + qx] = color;
      }
    }
    this.pctx.putImageData(this.image!, 0, 0);
    this.stats.drawn = drawn;
    // The first frame with every asset loaded (performance.now(): since navigation).
    if (!this.stats.firstFullRenderAt && a.count > 0 && this.fitted) this.stats.firstFullRenderAt = performance.now();
    this.el.dataset.assetCount = String(a.count);
    this.el.dataset.drawn = String(drawn);
  }

  private updateLegend(): void {
    const counts = new Array(STATE_COUNT).fill(0);
    const a = this.assets;
    for (let i = 0; i < a.count; i++) if (this.shows(i)) counts[a.state[i]]++;
    const key = counts.join(",");
    if (this.legend.dataset.key === key) return;
    this.legend.dataset.key = key;
    this.legend.replaceChildren();
    const title = document.createElement("div");
    title.className = "legend-title";
    title.textContent = `${counts.reduce((x, y) => x + y, 0).toLocaleString()} assets`;
    this.legend.append(title);
    // Most urgent first; a state nothing is in is left out, save the outages (so the
    // legend says there are none).
    for (let st = STATE_COUNT - 1; st >= 0; st--) {
      if (!counts[st] && st < State.OutageMinor) continue;
      const row = document.createElement("div");
      row.className = "legend-row";
      row.dataset.state = String(st);
      const label = document.createElement("span");
      label.textContent = `${STATE_LABELS[st]}: ${counts[st].toLocaleString()}`;
      row.append(markerIcon(st), label);
      this.legend.append(row);
    }
  }

  /** The asset nearest to a screen point, within `max` pixels. */
  pick(sx: number, sy: number, max = 10): number {
    const a = this.assets;
    const s = this.scale, ox = this.w / 2 - this.cx * s, oy = this.h / 2 - this.cy * s;
    let best = -1, bestD = max * max;
    for (let i = 0; i < a.count; i++) {
      if (!this.shows(i)) continue;
      const dx = a.mx[i] * s + ox - sx, dy = a.my[i] * s + oy - sy;
      const d = dx * dx + dy * dy;
      if (d < bestD || (d === bestD && a.state[i] > a.state[best])) {
        bestD = d;
        best = i;
      }
    }
    return best;
  }

  /** The asset's position on screen (for tests and tooltips). */
  screenOf(i: number): [number, number] {
    return this.toScreen(this.assets.mx[i], this.assets.my[i]);
  }

  private zoomAt(sx: number, sy: number, dz: number): void {
    const [x, y] = this.fromScreen(sx, sy);
    this.zoom = Math.max(2, Math.min(20, this.zoom + dz));
    const [x2, y2] = this.fromScreen(sx, sy);
    this.cx += x - x2;
    this.cy += y - y2;
    this.baseDirty = this.pointsDirty = true;
  }

  private pan(dx: number, dy: number): void {
    const s = this.scale;
    this.cx -= dx / s;
    this.cy -= dy / s;
    this.baseDirty = this.pointsDirty = true;
  }

  private listen(): void {
    let drag: { x: number; y: number; moved: boolean } | null = null;
    this.el.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, moved: false };
      this.el.setPointerCapture(e.pointerId);
    });
    this.el.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true;
      this.pan(dx, dy);
      drag.x = e.clientX;
      drag.y = e.clientY;
    });
    this.el.addEventListener("pointerup", (e) => {
      const wasDrag = drag?.moved;
      drag = null;
      if (wasDrag) return;
      const r = this.el.getBoundingClientRect();
      const sx = e.clientX - r.left, sy = e.clientY - r.top;
      if (this.polygon) {
        this.polygon.push(this.fromScreen(sx, sy));
        this.baseDirty = true;
        return;
      }
      const i = this.pick(sx, sy);
      if (i >= 0) {
        this.select(i);
        this.opts.onPick(i);
      }
    });
    this.el.addEventListener("dblclick", (e) => {
      if (this.polygon) {
        this.finishPolygon();
        return;
      }
      const r = this.el.getBoundingClientRect();
      this.zoomAt(e.clientX - r.left, e.clientY - r.top, 1);
    });
    this.el.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        const r = this.el.getBoundingClientRect();
        this.zoomAt(e.clientX - r.left, e.clientY - r.top, -e.deltaY / 400);
      },
      { passive: false },
    );
    this.el.addEventListener("keydown", (e) => {
      const step = 80;
      const keys: Record<string, () => void> = {
        ArrowLeft: () => this.pan(step, 0),
        ArrowRight: () => this.pan(-step, 0),
        ArrowUp: () => this.pan(0, step),
        ArrowDown: () => this.pan(0, -step),
        "+": () => this.zoomAt(this.w / 2, this.h / 2, 0.5),
        "=": () => this.zoomAt(this.w / 2, this.h / 2, 0.5),
        "-": () => this.zoomAt(this.w / 2, this.h / 2, -0.5),
        Enter: () => {
          if (this.polygon) return this.finishPolygon();
          const i = this.pick(this.w / 2, this.h / 2, 40);
          if (i >= 0) {
            this.select(i);
            this.opts.onPick(i);
          }
        },
        Escape: () => this.cancelPolygon(),
      };
      const f = keys[e.key];
      if (f) {
        e.preventDefault();
        f();
      }
    });
  }

  private finishPolygon(): void {
    const p = this.polygon;
    const done = this.polygonDone;
    if (!p || p.length < 3 || !done) return;
    // Back to degrees for the API.
    const lonlat = p.map(([x, y]) => {
      const lon = x * 360 - 180;
      const lat = (Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180) / Math.PI;
      return [lon, lat] as [number, number];
    });
    this.polygonDone = null;
    this.el.classList.remove("drawing");
    done(lonlat);
  }

  /** The polygon being drawn or last drawn, in degrees. */
  hasPolygon(): boolean {
    return this.polygon !== null;
  }
}
