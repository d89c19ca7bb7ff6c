// What every view is given: the signed-in user, the assets, and ways to open an asset,
// move to another view and show a failure. Views import this, never the app's entry.

import type { ActiveOutages } from "./activeOutages";
import type { Me } from "./api";
import type { Assets } from "./assets";
import { el } from "./dom";

/** A view: shown and hidden by the header's navigation. */
export interface Page {
  readonly el: HTMLElement;
  show(): void;
  hide(): void;
}

/** What the views share. */
export interface App {
  me: Me;
  assets: Assets;
  /** The open and acknowledged outages, kept current by the live events. */
  active: ActiveOutages;
  openAsset(tenant: string, device: string): void;
  navigate(path: string): void;
  /** The map, centred on the asset (its panel opened beside the map on a wide screen). */
  showOnMap(tenant: string, device: string): void;
}

/** Shows a failure in the status line (never silently). */
export function report(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  const box = document.getElementById("toast") ?? document.body.appendChild(el("div", { id: "toast", role: "alert" }));
  box.textContent = msg;
  box.classList.add("shown");
  setTimeout(() => box.classList.remove("shown"), 6000);
}
