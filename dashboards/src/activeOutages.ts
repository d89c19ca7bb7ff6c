// The outages that still need someone (open or acknowledged), fetched for the whole app
// and again after their live events: the outage list shows them, and the browser tab's
// title counts them by severity, so a hidden tab still says that something is wrong.

import { all, ApiError, vocabulary, type Outage } from "./api";
import * as live from "./live";
import { hubClock } from "./time";

/** Each state's page limit: far more than a person reads, and bounded in a storm. */
const LIMIT = 5000;

export class ActiveOutages {
  rows: Outage[] = [];
  loaded = false;
  private listeners = new Set<() => void>();
  private pending = 0;
  private running: Promise<void> | null = null;
  private again = false;
  /** A role that may not read outages (a crew) is not asked again. */
  private refused = false;

  /** `readable`: whether the signed-in role reads outages at all (a crew does not). */
  constructor(readable = true) {
    this.refused = !readable;
    live.onEvent("outage", () => this.soon());
    // Assigning an outage makes a work order: its event says the outage changed hands.
    live.onEvent("work_order", () => this.soon());
    live.onResync((types) => types.includes("outage") && this.soon());
  }

  onChange(f: () => void): void {
    this.listeners.add(f);
  }

  /** Refetches shortly (events come in bursts). */
  soon(): void {
    if (this.pending || this.refused) return;
    this.pending = window.setTimeout(() => {
      this.pending = 0;
      this.refresh().catch(() => {});
    }, 250);
  }

  /** Fetches both lists; a call while one runs makes one more run after it. */
  refresh(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.fetch().finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.soon();
      }
    });
    return this.running;
  }

  private async fetch(): Promise<void> {
    try {
      const [open, acked] = await Promise.all([
        all<Outage>("/outages", { state: "open" }, LIMIT),
        all<Outage>("/outages", { state: "acknowledged" }, LIMIT),
      ]);
      this.rows = [...open, ...acked];
      this.loaded = true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) this.refused = true;
      throw e;
    }
    for (const f of this.listeners) f();
  }
}

/** Whether an outage is shelved at `now` (hidden from the list unless asked for). */
export function shelved(o: Outage, now: number): boolean {
  return !!o.shelved_until && Date.parse(o.shelved_until) > now;
}

/**
 * "3 critical, 12 major": the outages not shelved, by severity (most severe first, the
 * API's order), leaving out the severities with none; "" when there are none.
 */
export function severityCounts(rows: Outage[], now = hubClock.now()): string {
  const counts = new Map<string, number>();
  for (const o of rows) if (!shelved(o, now)) counts.set(o.severity, (counts.get(o.severity) ?? 0) + 1);
  const order = vocabulary("Severity");
  const known = order.length ? order : ["critical", "major", "minor"];
  const names = [...known, ...[...counts.keys()].filter((s) => !known.includes(s)).sort()];
  return names.filter((s) => counts.get(s)).map((s) => `${counts.get(s)} ${s}`).join(", ");
}
