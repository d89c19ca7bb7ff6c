// The feeds the status page reads, beside it under /public/{tenant}/ (docs/api.md, "Public
// works feeds"): the works now and to come, and the base map's districts and streets.
// Both are asked relative to the page's own address, so the page knows no tenant or host.

export type Kind = "dark_street" | "water_leak" | "planned_works";
export type Status = "reported" | "accepted" | "in_work" | "done";

/** One item of the works feed, as residents are told it. */
export interface Work {
  /** The hub's name for the item, the same from one answer to the next. */
  id: string | null;
  kind: Kind;
  status: Status;
  since: string;
  expected_end: string | null;
  cause: string | null;
  district: string | null;
  street: string | null;
  count: number;
  /** [lon, lat], or null for works over the whole city. */
  at: [number, number] | null;
}

export interface Works {
  tenant: string;
  /** The city's name for people; the slug when the hub gives none. */
  name: string;
  /** Its districts, as its inventory names them. */
  districts: string[];
  /** Where residents subscribe to planned works by e-mail; null when the hub sends none. */
  subscriptions: string | null;
  /** The hub's time when it built the answer (ms): "now" for what is today. */
  generatedAt: number;
  items: Work[];
}

export interface BaseMap {
  districts: { label: string; rings: [number, number][][] }[];
  streets: { label: string; lines: [number, number][][] }[];
}

/** Why a feed could not be read, in words a resident can act on. */
export class FeedError extends Error {
  constructor(
    /** The HTTP status, or 0 when nothing answered (or the answer was unreadable). */
    readonly status: number,
    /** Seconds the hub asks to wait (429), when it says. */
    readonly retryAfter: number | null,
    message: string,
  ) {
    super(message);
  }
}

async function getJson(path: string): Promise<unknown> {
  let res: Response;
  try {
    // Each refresh asks the hub, which shares one answer among everyone for 10 s anyway.
    // No cookie: an operator signed in to the control center on the same hub reads the
    // same page as anyone.
    res = await fetch(path, { cache: "no-cache", credentials: "omit" });
  } catch {
    throw new FeedError(0, null, "The city's server could not be reached.");
  }
  if (!res.ok) {
    const wait = Number(res.headers.get("Retry-After"));
    const retryAfter = Number.isFinite(wait) && wait > 0 ? wait : null;
    if (res.status === 404) throw new FeedError(404, null, "This city has no public status page.");
    if (res.status === 429) throw new FeedError(429, retryAfter, "The city's server is busy with too many requests.");
    throw new FeedError(res.status, retryAfter, `The city's server answered with an error (${res.status}).`);
  }
  try {
    return await res.json();
  } catch {
    throw new FeedError(0, null, "The city's server sent an answer this page cannot read.");
  }
}

const KINDS = new Set<string>(["dark_street", "water_leak", "planned_works"]);
const STATUSES = new Set<string>(["reported", "accepted", "in_work", "done"]);

function text(v: unknown): string | null {
  return typeof v === "string" && v.trim() !== "" ? v : null;
}

function point(geometry: unknown): [number, number] | null {
  const g = geometry as { type?: string; coordinates?: unknown } | null;
  if (g?.type !== "Point" || !Array.isArray(g.coordinates)) return null;
  const [lon, lat] = g.coordinates as unknown[];
  return typeof lon === "number" && typeof lat === "number" && isFinite(lon) && isFinite(lat) ? [lon, lat] : null;
}

/** The works feed; items of a kind or status this page does not know are left out. */
export async function loadWorks(): Promise<Works> {
  const fc = (await getJson("works.geojson")) as { tenant?: unknown; name?: unknown; districts?: unknown; subscriptions?: unknown; generated_at?: unknown; features?: unknown } | null;
  if (!fc || !Array.isArray(fc.features)) throw new FeedError(0, null, "The city's server sent an answer this page cannot read.");
  const items: Work[] = [];
  for (const f of fc.features as { id?: unknown; geometry?: unknown; properties?: Record<string, unknown> }[]) {
    const p = f?.properties ?? {};
    if (typeof p.kind !== "string" || !KINDS.has(p.kind) || typeof p.status !== "string" || !STATUSES.has(p.status)) continue;
    const since = text(p.since);
    if (!since) continue;
    items.push({
      id: text(f.id),
      kind: p.kind as Kind,
      status: p.status as Status,
      since,
      expected_end: text(p.expected_end),
      cause: text(p.cause),
      district: text(p.district),
      street: text(p.street),
      count: typeof p.count === "number" ? p.count : 0,
      at: point(f.geometry),
    });
  }
  const generated = Date.parse(String(fc.generated_at));
  const tenant = text(fc.tenant) ?? "";
  const districts = Array.isArray(fc.districts) ? fc.districts.filter((d): d is string => typeof d === "string") : [];
  // Only a path on this hub: the page posts addresses nowhere else.
  const path = text(fc.subscriptions);
  const subscriptions = path && path.startsWith("/public/") ? path : null;
  return { tenant, name: text(fc.name) ?? tenant, districts, subscriptions, generatedAt: isFinite(generated) ? generated : Date.now(), items };
}

type Position = [number, number];

function positions(v: unknown): Position[] {
  return Array.isArray(v) ? (v.filter((c) => Array.isArray(c) && typeof c[0] === "number" && typeof c[1] === "number") as Position[]) : [];
}

/** The base map; null when the hub has none (404). */
export async function loadBaseMap(): Promise<BaseMap | null> {
  let fc: { features?: unknown } | null;
  try {
    fc = (await getJson("map.geojson")) as { features?: unknown } | null;
  } catch (e) {
    if (e instanceof FeedError && e.status === 404) return null;
    throw e;
  }
  const map: BaseMap = { districts: [], streets: [] };
  for (const f of (Array.isArray(fc?.features) ? fc.features : []) as { geometry?: { type?: string; coordinates?: unknown }; properties?: Record<string, unknown> }[]) {
    const p = f?.properties ?? {};
    const label = text(p.name) ?? text(p.id) ?? "";
    const g = f?.geometry;
    const c = g?.coordinates as unknown[] | undefined;
    if (!g || !Array.isArray(c)) continue;
    if (p.layer === "district") {
      // A district is a Polygon or a MultiPolygon; its outer rings are drawn (holes too: a
      // ring is a line either way).
      const polygons = g.type === "Polygon" ? [c] : g.type === "MultiPolygon" ? c : [];
      const rings = (polygons as unknown[][]).flatMap((poly) => (Array.isArray(poly) ? poly.map(positions) : []));
      if (rings.length) map.districts.push({ label, rings });
    } else if (p.layer === "street") {
      const lines = g.type === "LineString" ? [positions(c)] : g.type === "MultiLineString" ? c.map(positions) : [];
      if (lines.length) map.streets.push({ label, lines });
    }
  }
  return map;
}

/**
 * What stays the same for an item from one answer to the next (the feed gives items no
 * id): faults are grouped by kind, cause, district and street; planned works also differ
 * by their start.
 */
export function workKey(w: Work): string {
  return w.id ?? [w.kind, w.cause, w.district, w.street, w.kind === "planned_works" ? w.since : ""].join("|");
}
