// The hub's HTTP API (docs/api.md): same origin, session cookie, JSON both ways.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the session has ended (401), so the app can show the sign-in form. */
let onSignedOut: () => void = () => {};
export function whenSignedOut(f: () => void): void {
  onSignedOut = f;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const res = await fetch(`/api/v1${path}`, init);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const message =
      (data as { error?: string } | null)?.error ?? `${method} ${path} answered ${res.status}`;
    if (res.status === 401 && path !== "/login") onSignedOut();
    throw new ApiError(res.status, message);
  }
  return data as T;
}

export const get = <T>(path: string) => call<T>("GET", path);
export const post = <T>(path: string, body: unknown = {}) => call<T>("POST", path, body);
export const del = <T>(path: string) => call<T>("DELETE", path);

/** `?a=1&b=2`, leaving out empty values. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

/** Every item of a paged list (at most `max`). */
export async function all<T>(path: string, params: Record<string, string | number | undefined>, max = 200_000): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  do {
    const page = await get<Page<T>>(path + query({ ...params, limit: 1000, cursor }));
    out.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor && out.length < max);
  return out;
}

export interface Me {
  username: string;
  role: string;
  team?: string | null;
  tenants: string[];
}

export interface Outage {
  id: number;
  tenant: string;
  device: string;
  device_id: number;
  kind: string;
  state: string;
  severity: string;
  reason: string;
  opened_at: string;
  resolved_at?: string | null;
  last_seen: string;
  occurrences: number;
  chattering: boolean;
  acknowledged_by?: string | null;
  acknowledged_at?: string | null;
  shelved_until?: string | null;
  shelved_by?: string | null;
  district?: string | null;
  cabinet?: string | null;
  /** Who handles it: the work order in hand for it. */
  work_order?: { id: number; state: string; team: string; assignee?: string | null } | null;
}

export interface WorkOrder {
  id: number;
  outage_id?: number | null;
  tenant: string;
  device: string;
  device_id: number;
  kind: string;
  severity: string;
  team: string;
  assignee?: string | null;
  state: string;
  /** The states the signed-in user may move it to now (the hub's life cycle and role). */
  next_states: string[];
  opened_at: string;
  due_at: string;
  done_at?: string | null;
  verified_at?: string | null;
  closed_at?: string | null;
  reopened: number;
  district?: string | null;
  cabinet?: string | null;
  /** Where its outage stands; null for an inspection no outage raised. */
  outage_state?: string | null;
}

let knownTeams: Promise<string[]> | null = null;
/** The teams the hub knows of (those with work orders in the last 30 days), asked once. */
export function teams(): Promise<string[]> {
  knownTeams ??= get<{ teams: { team: string }[] }>("/reports/teams")
    .then((r) => r.teams.map((t) => t.team).sort())
    .catch(() => ((knownTeams = null), []));
  return knownTeams;
}

export interface Device {
  id: number;
  tenant: string;
  ext_id: string;
  kind: string;
  district?: string | null;
  cabinet?: string | null;
  rated_power_w?: number | null;
  medium?: string | null;
  route?: string | null;
  lon: number;
  lat: number;
  latest?: {
    telemetry_ts?: string | null;
    telemetry?: Record<string, unknown> | null;
    online?: boolean | null;
    last_seen: string;
  } | null;
}

/** The routes this hub serves, from its OpenAPI document, with `{param}` written `{}`. */
let routes: Set<string> | null = null;
/** The document's vocabulary: each enum schema's names, in order (e.g. `WorkOrderState`). */
let names: Record<string, string[]> = {};
export async function loadRoutes(): Promise<void> {
  try {
    const doc = await (await fetch("/api/v1/openapi.json")).json();
    routes = new Set(Object.keys(doc.paths ?? {}).map((p) => p.replace(/\{[^}]*\}/g, "{}")));
    const schemas: Record<string, { enum?: string[] }> = doc.components?.schemas ?? {};
    names = Object.fromEntries(Object.entries(schemas).flatMap(([k, v]) => (Array.isArray(v.enum) ? [[k, v.enum]] : [])));
  } catch {
    routes = new Set();
  }
}
/** The names of one of the hub's vocabulary types, as its OpenAPI document lists them. */
export function vocabulary(schema: "WorkOrderState" | "OutageState" | "Severity" | "Role"): string[] {
  return names[schema] ?? [];
}
/** Whether the hub serves `path` (e.g. "/api/v1/devices/{}/history"). */
export function has(path: string): boolean {
  return routes?.has(path) ?? false;
}

/** A hint (not the session itself: its cookie is HttpOnly) that this browser signed in. */
export const SIGNED_IN_HINT = "cityhub.signedIn";
