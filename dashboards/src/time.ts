// Times as people read them on the hub's clock, and that clock.
//
// Times are written as timeFormat.ts does ("18:04", and "18:04, 22 Nov" when not today on
// the hub's clock). "Ago" and "due in" are counted on the hub's clock, not the browser's:
// the two can disagree (a PC whose clock drifts), and a hub running on the simulators'
// clock is hours or days away from the wall clock and faster than it.

import { has } from "./api";
import { DAY, TIME, whenOn, whenExactly, duration } from "./timeFormat";

export { whenExactly, duration };

const DAY_UTC = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", timeZone: "UTC" });

/** The hub's clock as this page knows it: samples of the hub's time against the browser's. */
class HubClock {
  private first: [number, number] | null = null;
  private last: [number, number] | null = null;
  private rate = 1;
  /** Whether this user may read the reports (whose answers carry the hub's time). */
  private reports = true;

  /** The hub said `hub` (ms) at browser time `wall`; `exact` when not rounded to the second. */
  sample(wall: number, hub: number, exact = true): void {
    this.last = [wall, hub];
    if (!exact) return; // an HTTP Date header: the wall clock, to the second
    if (!this.first) this.first = [wall, hub];
    else if (wall - this.first[0] > 3000) {
      const rate = (hub - this.first[1]) / (wall - this.first[0]);
      // The wall clock (within the requests' jitter), or a simulated pace.
      this.rate = Math.abs(rate - 1) < 0.05 ? 1 : Math.max(0.01, rate);
    }
  }

  /** Now on the hub's clock, in ms (the browser's until the hub has said its time). */
  now(): number {
    const l = this.last;
    return l ? l[1] + (Date.now() - l[0]) * this.rate : Date.now();
  }

  /**
   * Asks the hub its time: the `now` of `GET /api/v1/reports/sla-breaches` (the clock the
   * hub judges deadlines by), or of `GET /api/v1/me` for a role that may not read reports;
   * else the Date header of the answer (the hub's wall clock, to the second).
   */
  async sync(): Promise<void> {
    const asked = Date.now();
    const path = this.reports && has("/api/v1/reports/sla-breaches") ? "/api/v1/reports/sla-breaches?limit=1" : "/api/v1/me";
    const res = await fetch(path, { credentials: "same-origin" });
    const wall = (asked + Date.now()) / 2;
    if (res.ok) {
      // Both answer the hub's clock as `now` (the simulated one when the hub runs on it).
      const now = Date.parse((await res.json().catch(() => null))?.now);
      if (isFinite(now)) return this.sample(wall, now);
    }
    const date = Date.parse(res.headers.get("Date") ?? "");
    if (isFinite(date)) this.sample(wall, date + 500, false);
  }

  /** Keeps in step: now, again after 5 s (the pace), then every 30 s. */
  follow(mayReadReports: boolean): void {
    this.reports = mayReadReports;
    const sync = () => this.sync().catch(() => {});
    sync();
    setTimeout(sync, 5000);
    setInterval(sync, 30_000);
  }
}

export const hubClock = new HubClock();

/** "18:04" today (on the hub's clock), "18:04, 22 Nov" another day; "—" for none. */
export function when(t: string | number | null | undefined): string {
  return whenOn(t, hubClock.now());
}

/** "18:04" (hours and minutes only), for chart axes. */
export function clockTime(ms: number): string {
  return TIME.format(ms);
}

/** "22 Nov", for chart axes of days; `utc` for the dates the API gives (days in UTC). */
export function day(ms: number, utc = false): string {
  return (utc ? DAY_UTC : DAY).format(ms);
}

/** A `<time>` element: `when` as text, the exact time as its tooltip. */
export function timeEl(iso: string | null | undefined): HTMLTimeElement {
  const e = document.createElement("time");
  e.textContent = when(iso);
  if (iso) {
    e.dateTime = iso;
    e.title = whenExactly(iso);
  }
  return e;
}

/** Text with RFC 3339 times in it (an event's detail), those times written as `when` does. */
export function localizeTimes(text: string): string {
  return text.replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})/g, (iso) => when(iso));
}

/** "2 h 05 min ago" on the hub's clock ("just now" for a time it has not reached yet). */
export function ago(t: string | number): string {
  const ms = hubClock.now() - new Date(t).getTime();
  if (!isFinite(ms)) return "";
  return ms < 1000 ? "just now" : `${duration(ms)} ago`;
}
