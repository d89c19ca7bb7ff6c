// Floods: many outages with one cause, which an operator handles as one. A flood is at
// least FLOOD_MIN active outages of one kind in one tenant, each opened within
// FLOOD_GAP_MS of the one before (a storm takes lamps out one after another, a network
// fault silences controllers within minutes). Its label names what they have in common:
// one cabinet, one district, or only the kind.

import type { Outage } from "./api";

/** The fewest outages that make a flood. */
export const FLOOD_MIN = 3;
/** The longest quiet, in ms, between two outages of one flood. */
export const FLOOD_GAP_MS = 10 * 60_000;

export interface Flood {
  /** Stable while the flood lasts: tenant, kind and its first outage. */
  key: string;
  tenant: string;
  kind: string;
  /** Oldest first. */
  outages: Outage[];
  /** What they share beyond the kind: "cabinet C-12", "district Alfama", or "". */
  place: string;
  since: string;
}

const active = (o: Outage) => o.state === "open" || o.state === "acknowledged";

/** The floods among `rows`, the largest first. */
export function floods(rows: Outage[]): Flood[] {
  const byKind = new Map<string, Outage[]>();
  for (const o of rows) {
    if (!active(o)) continue;
    const k = `${o.tenant}\u0000${o.kind}`;
    const list = byKind.get(k);
    if (list) list.push(o);
    else byKind.set(k, [o]);
  }
  const out: Flood[] = [];
  for (const list of byKind.values()) {
    list.sort((a, b) => Date.parse(a.opened_at) - Date.parse(b.opened_at) || a.id - b.id);
    let run: Outage[] = [];
    const close = () => {
      if (run.length >= FLOOD_MIN) out.push(flood(run));
      run = [];
    };
    for (const o of list) {
      const last = run[run.length - 1];
      if (last && Date.parse(o.opened_at) - Date.parse(last.opened_at) > FLOOD_GAP_MS) close();
      run.push(o);
    }
    close();
  }
  return out.sort((a, b) => b.outages.length - a.outages.length || a.since.localeCompare(b.since));
}

function flood(outages: Outage[]): Flood {
  const first = outages[0];
  const same = (f: (o: Outage) => string | null | undefined) => {
    const v = f(first);
    return v && outages.every((o) => f(o) === v) ? v : null;
  };
  const cabinet = same((o) => o.cabinet);
  const district = same((o) => o.district);
  return {
    key: `${first.tenant}/${first.kind}/${first.id}`,
    tenant: first.tenant,
    kind: first.kind,
    outages,
    place: cabinet ? `cabinet ${cabinet}` : district ? `district ${district}` : "",
    since: first.opened_at,
  };
}
