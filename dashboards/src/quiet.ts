// The banner that says when no field data has arrived for a while: the map then shows
// what the devices said last, and the control room must know it is not live.

import type { Assets } from "./assets";
import { el } from "./dom";
import { clockTime, duration, hubClock } from "./time";

/** Silence, on the hub's clock, past which a tenant's field counts as quiet. */
export const QUIET_MS = 5 * 60_000;
/**
 * And on this page's clock: a hub on a sped-up clock (the simulators') covers minutes in
 * the seconds that messages spend in flight.
 */
export const QUIET_WALL_MS = 20_000;

export class QuietBanner {
  readonly el: HTMLElement;
  /** Per tenant, the newest message seen and when (this page's clock) it last moved. */
  private moved = new Map<string, [number, number]>();

  constructor(private assets: Assets) {
    this.el = el("div", { class: "quiet-banner", role: "alert", hidden: "" });
  }

  /** Looks at the newest message per tenant against the hub's clock. */
  check(): void {
    const a = this.assets;
    const newest = new Map<string, number>();
    for (let i = 0; i < a.count; i++) {
      const t = a.tenant[i];
      newest.set(t, Math.max(newest.get(t) ?? 0, a.lastSeen[i]));
    }
    const now = hubClock.now();
    const wall = Date.now();
    for (const [t, seen] of newest) {
      const m = this.moved.get(t);
      if (!m || seen > m[0]) this.moved.set(t, [seen, wall]);
    }
    const quiet = [...newest]
      // A tenant none of whose devices was ever heard from is new, not quiet.
      .filter(([t, seen]) => seen > 0 && now - seen > QUIET_MS && wall - (this.moved.get(t)?.[1] ?? wall) > QUIET_WALL_MS)
      .sort((x, y) => x[1] - y[1]);
    if (!quiet.length) {
      this.el.hidden = true;
      delete this.el.dataset.tenants;
      return;
    }
    this.el.dataset.tenants = quiet.map(([t]) => t).join(",");
    this.el.replaceChildren(
      el("strong", {}, "No field data "),
      quiet
        .map(([t, seen]) => `from ${t} for ${duration(now - seen)} (newest at ${clockTime(seen)})`)
        .join("; "),
      ". The map shows what the devices said last.",
    );
    this.el.hidden = false;
  }
}
