// Every asset of the caller's tenants in columns (typed arrays), so 100k+ of them load,
// update and draw without an object per asset.

import { all, get, has, type Device } from "./api";

export const KINDS = ["light", "cabinet", "meter", "vehicle"] as const;
export type Kind = (typeof KINDS)[number];

/**
 * What the map shows of an asset: its effective state as the hub judges it (docs/api.md,
 * "Device states"). The order is the drawing order: the normal states first, then the
 * abnormal ones by priority, the most urgent last (on top).
 */
export const enum State {
  Ok = 0,
  Off = 1,
  On = 2,
  Dimmed = 3,
  Override = 4,
  NeverHeard = 5,
  Fault = 6,
  Stale = 7,
  Offline = 8,
  Maintenance = 9,
  NoSupply = 10,
  OutageMinor = 11,
  OutageMajor = 12,
  OutageCritical = 13,
}
export const STATE_COUNT = 14;
/** The first abnormal state: these are drawn on top of the rest, larger, in colour. */
export const ALERT = State.NeverHeard;

/** The hub's names of the states. */
export const STATE_NAMES: Record<string, State> = {
  ok: State.Ok,
  off: State.Off,
  on: State.On,
  dimmed: State.Dimmed,
  override: State.Override,
  never_heard: State.NeverHeard,
  fault: State.Fault,
  stale: State.Stale,
  offline: State.Offline,
  maintenance: State.Maintenance,
  no_supply: State.NoSupply,
  outage_minor: State.OutageMinor,
  outage_major: State.OutageMajor,
  outage_critical: State.OutageCritical,
};

export const STATE_LABELS: Record<number, string> = {
  [State.Ok]: "ok",
  [State.Off]: "ok, off",
  [State.On]: "ok, burning",
  [State.Dimmed]: "ok, dimmed",
  [State.Override]: "held by an operator",
  [State.NeverHeard]: "never heard from",
  [State.Fault]: "reports a fault",
  [State.Stale]: "not heard from lately",
  [State.Offline]: "offline",
  [State.Maintenance]: "in maintenance",
  [State.NoSupply]: "no supply (cabinet)",
  [State.OutageMinor]: "outage, minor",
  [State.OutageMajor]: "outage, major",
  [State.OutageCritical]: "outage, critical",
};

/** States a reading can change on its own; the others are the hub's to lift. */
const FROM_READINGS = new Set<number>([State.Ok, State.Off, State.On, State.Dimmed, State.NeverHeard, State.Fault, State.Stale]);

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
  districts?: string[];
  district?: (number | null)[];
}

export class Assets {
  count = 0;
  ids: string[] = [];
  tenant: string[] = [];
  /** From the inventory; "" when it gives none. */
  district: string[] = [];
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
    this.district = new Array(n).fill("");
    this.kind = new Uint8Array(n);
    this.mx = new Float64Array(n);
    this.my = new Float64Array(n);
    this.lon = new Float64Array(n);
    this.lat = new Float64Array(n);
    this.state = new Uint8Array(n).fill(State.NeverHeard);
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

  /**
   * Recomputes what the map shows of asset `i` after a reading: from the hub's state, a
   * reading moves a device between its normal states, to a fault and back, and out of
   * silence. Outages, supply loss, maintenance, offline and overrides stay as the hub
   * said until its next state (a live outage event asks for it at once).
   */
  restate(i: number): void {
    const base = this.state[i];
    if (!FROM_READINGS.has(base) && !(base === State.Offline && this.online[i] === 1)) return;
    let s: State;
    if (this.online[i] === 0) s = State.Offline;
    else if (this.online[i] === 2) s = State.NeverHeard;
    else if (this.fault[i]) s = State.Fault;
    else if (this.kind[i] !== 0 || this.on[i] === 2) s = State.Ok;
    else if (this.on[i] === 0) s = State.Off;
    else if (this.dim[i] > 0 && this.dim[i] < 100) s = State.Dimmed;
    else s = State.On;
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
      const d = c.district?.[i];
      this.district[i] = d == null ? "" : (c.districts?.[d] ?? "");
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
      const seen = c.last_seen?.[i];
      this.lastSeen[i] = seen == null ? 0 : typeof seen === "number" ? seen * 1000 : Date.parse(seen);
      this.online[i] = stName === "offline" ? 0 : seen == null ? 2 : 1;
      this.fault[i] = stName === "fault" ? 1 : 0;
      if (typeof stName === "string" && stName.startsWith("outage_")) this.outage[i] = 1;
      this.state[i] = STATE_NAMES[stName ?? ""] ?? State.NeverHeard;
    }
    this.version++;
  }

  /** Fills the columns from the paged device list. */
  loadDevices(devices: Device[]): void {
    this.resize(devices.length);
    devices.forEach((d, i) => {
      this.ids[i] = d.ext_id;
      this.tenant[i] = d.tenant;
      this.district[i] = d.district ?? "";
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
      if (i !== undefined) {
        this.noteOutage(i, o.id, o.state);
        this.raise(i, o.severity);
      }
    }
    this.version++;
  }

  /**
   * Outage `id` of asset `i` is now in `state`. One that opens shows at once, by its
   * severity; what an asset is once its outages end is the hub's to say (its next state).
   */
  markOutage(i: number, id: number, state: string, severity?: string): void {
    this.noteOutage(i, id, state);
    if (state === "open" || state === "acknowledged") this.raise(i, severity);
    this.version++;
  }

  /** Shows an active outage of `severity` on asset `i` unless a worse state already shows. */
  private raise(i: number, severity?: string): void {
    const s = STATE_NAMES[`outage_${severity ?? "minor"}`] ?? State.OutageMinor;
    if (s > this.state[i]) this.state[i] = s;
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
  severity?: string;
}

/** Open and acknowledged outages (device and state), to mark the map. */
export async function loadOutageMarks(assets: Assets): Promise<void> {
  const [open, acked] = await Promise.all([
    all<OutageMark>("/outages", { state: "open" }, 20_000),
    all<OutageMark>("/outages", { state: "acknowledged" }, 20_000),
  ]);
  assets.setOutages([...open, ...acked]);
}

