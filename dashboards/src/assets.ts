// Every asset of the caller's tenants in columns (typed arrays), so 100k+ of them load,
// update and draw without an object per asset.

import { all, get, has, type Device } from "./api";

export const KINDS = ["light", "cabinet", "meter", "vehicle"] as const;
export type Kind = (typeof KINDS)[number];

/** What the map shows of an asset. The order is the drawing order: faults on top. */
export const enum State {
  Unknown = 0,
  /** A lamp (or a cabinet's contactor) off. */
  Dark = 1,
  /** A lamp burning (or a cabinet's contactor on). */
  Burning = 2,
  /** Reporting, nothing wrong (meters, buses, a lamp not yet read). */
  Ok = 3,
  Offline = 4,
  /** The device reports a fault; no outage (yet). */
  Fault = 5,
  /** An open outage. */
  Outage = 6,
  /** Its outages are all acknowledged. */
  Acknowledged = 7,
}
export const STATE_COUNT = 8;
/** States drawn on top of the rest, larger. */
export const ALERT = State.Fault;

export const STATE_LABELS: Record<number, string> = {
  [State.Unknown]: "not heard from",
  [State.Dark]: "ok, off",
  [State.Burning]: "ok, burning",
  [State.Ok]: "ok",
  [State.Offline]: "offline",
  [State.Fault]: "reports a fault",
  [State.Outage]: "open outage",
  [State.Acknowledged]: "outage acknowledged",
};

/** The compact columns of `GET /api/v1/state`. */
export interface StateColumns {
  tenant?: string | (string | number)[];
  tenants?: string[];
  ext_id: string[];
  kind: (string | number)[];
  lon: number[];
  lat: number[];
  state?: (number | string | null)[];
  on?: (boolean | null)[];
  dim?: (number | null)[];
  last_seen?: (string | number | null)[];
  kinds?: string[];
  states?: string[];
}

export class Assets {
  count = 0;
  ids: string[] = [];
  tenant: string[] = [];
  kind = new Uint8Array(0);
  /** Web Mercator, 0..1 across the world. */
  mx = new Float64Array(0);
  my = new Float64Array(0);
  lon = new Float64Array(0);
  lat = new Float64Array(0);
  state = new Uint8Array(0);
  /** Device's own online state (offline beats on/off; an outage beats both). */
  online = new Uint8Array(0);
  on = new Uint8Array(0);
  /** The device itself reports a fault. */
  fault = new Uint8Array(0);
  dim = new Uint8Array(0);
  lastSeen = new Float64Array(0);
  /** Open outages per asset: 0 none, 1 open, 2 all acknowledged. */
  outage = new Uint8Array(0);
  index = new Map<string, number>();
  private outageStates = new Map<number, Map<number, string>>();
  /** Bumped on every change; the map redraws when it moves. */
  version = 0;

  resize(n: number): void {
    this.count = n;
    this.ids = new Array(n);
    this.tenant = new Array(n);
    this.kind = new Uint8Array(n);
    this.mx = new Float64Array(n);
    this.my = new Float64Array(n);
    this.lon = new Float64Array(n);
    this.lat = new Float64Array(n);
    this.state = new Uint8Array(n);
    this.online = new Uint8Array(n).fill(2);
    this.on = new Uint8Array(n).fill(2);
    this.fault = new Uint8Array(n);
    this.dim = new Uint8Array(n);
    this.lastSeen = new Float64Array(n);
    this.outage = new Uint8Array(n);
    this.index = new Map();
  }

  setPosition(i: number, lon: number, lat: number): void {
    this.lon[i] = lon;
    this.lat[i] = lat;
    this.mx[i] = (lon + 180) / 360;
    const s = Math.sin((lat * Math.PI) / 180);
    this.my[i] = 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
  }

  /** Recomputes what the map shows of asset `i`. */
  restate(i: number): void {
    let s: State;
    if (this.outage[i] === 1) s = State.Outage;
    else if (this.outage[i] === 2) s = State.Acknowledged;
    else if (this.online[i] === 0) s = State.Offline;
    else if (this.fault[i]) s = State.Fault;
    else if (this.on[i] === 1) s = State.Burning;
    else if (this.on[i] === 0) s = State.Dark;
    else if (this.online[i] === 1) s = State.Ok;
    else s = State.Unknown;
    this.state[i] = s;
  }

  /** Fills the columns from the hub's columnar state. */
  loadColumns(c: StateColumns): void {
    const n = c.ext_id.length;
    this.resize(n);
    for (let i = 0; i < n; i++) {
      const id = c.ext_id[i];
      const t = Array.isArray(c.tenant) ? c.tenant[i] : (c.tenant ?? "");
      const tenant = typeof t === "number" ? (c.tenants?.[t] ?? "") : t;
      this.ids[i] = id;
      this.tenant[i] = tenant;
      this.index.set(`${tenant}/${id}`, i);
      const k = c.kind[i];
      const kindName = typeof k === "number" ? (c.kinds?.[k] ?? KINDS[k]) : k;
      this.kind[i] = Math.max(0, KINDS.indexOf(kindName as Kind));
      this.setPosition(i, c.lon[i], c.lat[i]);
      const on = c.on?.[i];
      this.on[i] = on === true ? 1 : on === false ? 0 : 2;
      this.dim[i] = c.dim?.[i] ?? 0;
      const st = c.state?.[i];
      const stName = typeof st === "number" && c.states ? c.states[st] : st;
      this.online[i] = stName === "offline" ? 0 : stName == null || stName === "unknown" ? 2 : 1;
      this.fault[i] = stName === "fault" ? 1 : 0;
      // An open outage, until the outage list says which (open or acknowledged).
      if (stName === "outage") this.outage[i] = 1;
      const seen = c.last_seen?.[i];
      this.lastSeen[i] = seen == null ? 0 : typeof seen === "number" ? seen * 1000 : Date.parse(seen);
      this.restate(i);
    }
    this.version++;
  }

  /** Fills the columns from the paged device list. */
  loadDevices(devices: Device[]): void {
    this.resize(devices.length);
    devices.forEach((d, i) => {
      this.ids[i] = d.ext_id;
      this.tenant[i] = d.tenant;
      this.index.set(`${d.tenant}/${d.ext_id}`, i);
      this.kind[i] = Math.max(0, KINDS.indexOf(d.kind as Kind));
      this.setPosition(i, d.lon, d.lat);
      const t = d.latest?.telemetry ?? null;
      this.applyReading(i, t, d.latest?.online ?? null, d.latest?.last_seen ?? null);
    });
    this.version++;
  }

  /** A device's newest reading (telemetry fields), as the list or a live event gives it. */
  applyReading(
    i: number,
    t: Record<string, unknown> | null,
    online: boolean | null,
    lastSeen: string | number | null,
  ): void {
    if (t) {
      if (typeof t.on === "boolean") this.on[i] = t.on ? 1 : 0;
      else if (typeof t.contactor_on === "boolean") this.on[i] = t.contactor_on ? 1 : 0;
      if (typeof t.dim === "number") this.dim[i] = t.dim;
      if ("fault" in t) this.fault[i] = t.fault ? 1 : 0;
      if (typeof t.lon === "number" && typeof t.lat === "number") this.setPosition(i, t.lon, t.lat);
      if (this.online[i] === 2) this.online[i] = 1;
    }
    if (online !== null) this.online[i] = online ? 1 : 0;
    if (lastSeen !== null) this.lastSeen[i] = typeof lastSeen === "number" ? lastSeen : Date.parse(lastSeen);
    this.restate(i);
  }

  /** Marks which assets have open (1) or only acknowledged (2) outages. */
  setOutages(open: OutageMark[]): void {
    this.outage.fill(0);
    this.outageStates.clear();
    for (const o of open) {
      const i = this.find(o.tenant, o.device);
      if (i !== undefined) this.noteOutage(i, o.id, o.state);
    }
    for (let i = 0; i < this.count; i++) this.restate(i);
    this.version++;
  }

  /** Outage `id` of asset `i` is now in `state`. */
  markOutage(i: number, id: number, state: string): void {
    this.noteOutage(i, id, state);
    this.restate(i);
    this.version++;
  }

  private noteOutage(i: number, id: number, state: string): void {
    let m = this.outageStates.get(i);
    if (!m) this.outageStates.set(i, (m = new Map()));
    if (state === "open" || state === "acknowledged") m.set(id, state);
    else m.delete(id);
    const states = [...m.values()];
    this.outage[i] = states.includes("open") ? 1 : states.length ? 2 : 0;
  }

  find(tenant: string, device: string): number | undefined {
    return this.index.get(`${tenant}/${device}`);
  }

  /** Counts per state, for the legend. */
  countByState(): number[] {
    const counts = new Array(STATE_COUNT).fill(0);
    for (let i = 0; i < this.count; i++) counts[this.state[i]]++;
    return counts;
  }
}

/** Loads every asset: the columnar state when the hub has it, else the device pages. */
export async function loadAssets(assets: Assets): Promise<void> {
  if (has("/api/v1/state")) {
    assets.loadColumns(await get<StateColumns>("/state"));
    return;
  }
  const devices = await all<Device>("/devices", {});
  assets.loadDevices(devices);
}

export interface OutageMark {
  id: number;
  tenant: string;
  device: string;
  state: string;
}

/** Open and acknowledged outages (device and state), to mark the map. */
export async function loadOutageMarks(assets: Assets): Promise<void> {
  const [open, acked] = await Promise.all([
    all<OutageMark>("/outages", { state: "open" }, 20_000),
    all<OutageMark>("/outages", { state: "acknowledged" }, 20_000),
  ]);
  assets.setOutages([...open, ...acked]);
}

