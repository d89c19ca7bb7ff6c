// Commands to lamps: one device from its panel, or a group (a cabinet, a district, a drawn
// area) from the map, always previewed ("reaches N devices") and confirmed, then followed
// live per device (pending, sent, acked, rejected, failed, expired).

import { get, has, post } from "../api";
import { ask, el } from "../dom";
import { clockTime, hubClock } from "../time";
import * as live from "../live";
import type { App } from "../app";
import type { MapView } from "../map/view";

export type Target =
  | { device: string }
  | { cabinet: string }
  | { district: string }
  | { polygon: [number, number][] };

export interface LightAction {
  /** `resume_schedule`: back to the schedule now (each lamp told what it asks for). */
  action: "set_light" | "resume_schedule" | "reboot";
  on?: boolean;
  dim?: number;
  /** How long a setting holds before the lamps go back to their schedule. */
  expires_in_s?: number;
}

/** The choices of how long a setting holds (the API takes 10 s to 24 h). */
export const DURATIONS: [number, string][] = [
  [15 * 60, "15 min"],
  [3600, "1 hour"],
  [4 * 3600, "4 hours"],
  [12 * 3600, "12 hours"],
  [24 * 3600, "24 hours"],
];

/** A select of [`DURATIONS`], one hour chosen. */
export function durationBox(): HTMLSelectElement {
  const box = el("select", { name: "for", "aria-label": "For how long" });
  for (const [s, t] of DURATIONS) box.append(el("option", { value: s }, `for ${t}`));
  box.value = "3600";
  return box;
}

/** What a light action does, in words: "switch off", "dim to 40%". */
export function actionText(a: LightAction): string {
  if (a.action === "resume_schedule") return "back to schedule";
  return a.dim !== undefined ? `dim to ${a.dim}%` : a.on ? "switch on" : "switch off";
}

/** How long it holds and until when on the hub's clock, and what follows. */
export function holdText(a: LightAction): string {
  if (a.action === "resume_schedule") {
    return "Each lamp is told what its schedule asks for now, ending any setting held for it, and then follows its schedule. A lamp that cannot be reached within a minute or so keeps what it holds.";
  }
  const s = a.expires_in_s ?? 900;
  const label = DURATIONS.find(([d]) => d === s)?.[1] ?? `${Math.round(s / 60)} min`;
  return `For ${label}, until ${clockTime(hubClock.now() + s * 1000)} on the hub's clock; then they go back to their schedule. A lamp that cannot be reached before then never gets it.`;
}

/** The target in words: "cabinet C-12", "district Alfama", "the area drawn (5 corners)". */
export function targetText(t: Target): string {
  if ("device" in t) return t.device;
  if ("cabinet" in t) return `cabinet ${t.cabinet}`;
  if ("district" in t) return `district ${t.district}`;
  return `the area drawn (${t.polygon.length} corners)`;
}

/** A recorded command (`POST /api/v1/commands`): one per device reached. */
interface Batch {
  id: number;
  devices: number;
  statuses: Record<string, number>;
}

const FINAL = ["acked", "rejected", "failed", "expired"];

/** Asks the hub how many devices a target reaches. */
export async function preview(tenant: string | undefined, target: Target, action: LightAction): Promise<number> {
  const r = await post<{ devices: number }>("/commands/preview", { tenant, target, ...action });
  return r.devices;
}

/**
 * Sends a command and reports its devices' statuses (counts per status) as they change,
 * until every device has a final one. The live `command` events say when to look; a slow
 * poll covers a missed event.
 */
export async function send(
  tenant: string | undefined,
  target: Target,
  action: LightAction,
  confirm: number | undefined,
  onStatus: (counts: Record<string, number>, final: boolean) => void,
): Promise<number> {
  const batch = await post<Batch>("/commands", { tenant, target, ...action, confirm });
  let done = false;
  let queued = 0;
  const finish = () => {
    done = true;
    stop();
    clearInterval(poll);
    clearTimeout(giveUp);
  };
  const show = (b: Batch) => {
    const settled = FINAL.reduce((n, s) => n + (b.statuses[s] ?? 0), 0);
    const final = settled >= b.devices;
    onStatus(b.statuses, final);
    if (final) finish();
  };
  const update = async () => {
    if (done) return;
    try {
      show(await get<Batch>(`/commands/${batch.id}`));
    } catch {
      /* the next event or poll tries again */
    }
  };
  const stop = live.onEvent("command", () => {
    if (!queued) queued = window.setTimeout(() => ((queued = 0), update()), 150);
  });
  const poll = setInterval(update, 2000);
  const giveUp = setTimeout(finish, 30 * 60_000);
  show(batch);
  return batch.id;
}

export function statusText(counts: Record<string, number>): string {
  const order = ["pending", "sent", "acked", "rejected", "failed", "expired"];
  return order.filter((s) => counts[s]).map((s) => `${s} ${counts[s]}`).join(" · ") || "pending";
}

/** The map's group command box. */
export class GroupCommand {
  readonly el: HTMLElement;
  private polygon: [number, number][] | null = null;

  constructor(
    private app: App,
    private map: MapView,
  ) {
    const by = el("select", { name: "by", "aria-label": "Target" });
    for (const [v, t] of [["cabinet", "a cabinet"], ["district", "a district"], ["polygon", "an area drawn on the map"]]) {
      by.append(el("option", { value: v }, t));
    }
    const name = el("input", { name: "name", placeholder: "cabinet or district id", "aria-label": "Cabinet or district id" });
    const draw = el("button", { type: "button", hidden: true }, "Draw the area");
    const action = el("select", { name: "action", "aria-label": "Action" });
    for (const [v, t] of [["on", "switch on"], ["off", "switch off"], ["dim", "dim to…"], ["resume", "back to schedule"]]) action.append(el("option", { value: v }, t));
    const dim = el("input", { type: "number", name: "dim", min: 0, max: 100, value: 50, "aria-label": "Dim level (%)", hidden: true });
    const hold = durationBox();
    const go = el("button", { type: "button", class: "primary" }, "Preview…");
    // A user of several municipalities names the one the target belongs to: none is
    // chosen for them, so a cabinet id is never looked for in the wrong one.
    const tenants = this.app.me.tenants;
    const tenantBox = el("select", { name: "tenant", "aria-label": "Municipality", hidden: tenants.length < 2 });
    if (tenants.length > 1) tenantBox.append(el("option", { value: "" }, "municipality…"));
    for (const t of tenants) tenantBox.append(el("option", { value: t }, t));
    const out = el("p", { class: "group-status", role: "status", "aria-live": "polite" });
    // What was said of another choice (an error, "not sent") does not stay beside this one.
    for (const input of [by, name, action, dim, hold, tenantBox]) {
      input.addEventListener("change", () => {
        if (out.dataset.final !== "false") out.textContent = "";
      });
    }
    by.addEventListener("change", () => {
      name.hidden = by.value === "polygon";
      draw.hidden = by.value !== "polygon";
    });
    action.addEventListener("change", () => {
      dim.hidden = action.value !== "dim";
      hold.hidden = action.value === "resume";
    });
    draw.addEventListener("click", () => {
      out.textContent = "Click the corners on the map; double-click or Enter to finish, Escape to cancel.";
      this.map.el.focus();
      this.map.drawPolygon((p) => {
        this.polygon = p;
        out.textContent = `An area of ${p.length} corners is drawn.`;
      });
    });
    go.addEventListener("click", async () => {
      out.textContent = "";
      delete out.dataset.final;
      if (tenants.length > 1 && !tenantBox.value) {
        out.textContent = "Choose the municipality the target belongs to.";
        return;
      }
      let target: Target;
      if (by.value === "polygon") {
        if (!this.polygon) {
          out.textContent = "Draw the area first.";
          return;
        }
        target = { polygon: this.polygon };
      } else if (!name.value.trim()) {
        out.textContent = `Name the ${by.value}.`;
        return;
      } else {
        target = by.value === "cabinet" ? { cabinet: name.value.trim() } : { district: name.value.trim() };
      }
      const expires_in_s = Number(hold.value);
      const act: LightAction =
        action.value === "resume"
          ? { action: "resume_schedule" }
          : action.value === "dim"
            ? { action: "set_light", on: true, dim: Number(dim.value), expires_in_s }
            : { action: "set_light", on: action.value === "on", expires_in_s };
      const tenant = tenantBox.value || undefined;
      try {
        const n = await preview(tenant, target, act);
        const municipality = tenant ?? this.app.me.tenants[0];
        const where = municipality ? `${targetText(target)} in ${municipality}` : targetText(target);
        const ok = await ask(`${actionText(act)}: ${n} devices of ${where}`, [], `Send to ${n} devices`, holdText(act));
        if (!ok) {
          out.textContent = "Not sent.";
          return;
        }
        await send(tenant, target, act, n, (counts, final) => {
          out.textContent = `${final ? "Done" : "Delivering"}: ${statusText(counts)}`;
          out.dataset.final = String(final);
        });
        this.map.cancelPolygon();
        this.polygon = null;
      } catch (e) {
        out.textContent = (e as Error).message;
      }
    });
    this.el = el(
      "section",
      { class: "group-command", "aria-label": "Group command" },
      el("h2", {}, "Group command"),
      el("div", { class: "row" }, tenantBox, by, name, draw),
      el("div", { class: "row" }, action, dim, hold, go),
      out,
    );
    // Operators and admins command lamps; the others do not see the box.
    if (!has("/api/v1/commands/preview") || !["operator", "admin"].includes(this.app.me.role)) this.el.hidden = true;
  }
}
