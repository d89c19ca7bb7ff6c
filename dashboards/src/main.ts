// The control-center app: sign-in, then the views (map, outages, work orders, KPIs,
// transport, reports) under one header, every one kept current by the live events.

import "./style.css";
import { get, has, loadRoutes, SIGNED_IN_HINT, whenSignedOut, type Me } from "./api";
import { Assets, loadAssets, loadOutageMarks } from "./assets";
import * as live from "./live";
import { el } from "./dom";
import { report, type App, type Page } from "./app";
import { showLogin } from "./views/login";
import { MapPage } from "./views/map";
import { OutagesPage } from "./views/outages";
import { WorkOrdersPage } from "./views/workorders";
import { Panel } from "./views/panel";
import { KpiPage } from "./views/kpis";
import { TransportPage } from "./views/transport";
import { ReportsPage } from "./views/reports";

const ROUTES: [string, string][] = [
  ["/map", "Map"],
  ["/outages", "Outages"],
  ["/work-orders", "Work orders"],
  ["/kpis", "KPIs"],
  ["/transport", "Transport"],
  ["/reports", "Reports"],
];

const root = document.getElementById("app")!;

async function boot(): Promise<void> {
  await loadRoutes();
  let me: Me;
  // Without the hint, ask for a sign-in straight away rather than earn a 401.
  if (localStorage.getItem(SIGNED_IN_HINT) !== "1") {
    showLogin(root, () => boot());
    return;
  }
  try {
    me = await get<Me>("/me");
  } catch {
    localStorage.removeItem(SIGNED_IN_HINT);
    showLogin(root, () => boot());
    return;
  }
  whenSignedOut(() => {
    localStorage.removeItem(SIGNED_IN_HINT);
    live.disconnect();
    location.assign("/");
  });
  start(me);
}

function start(me: Me): void {
  const assets = new Assets();
  const status = el("span", { class: "live-status", role: "status", "aria-live": "polite" }, "connecting…");
  const nav = el("nav", { "aria-label": "Views" });
  const main = el("main", { id: "main" });
  const signOut = el("button", { type: "button", class: "link" }, "Sign out");
  signOut.addEventListener("click", async () => {
    live.disconnect();
    localStorage.removeItem(SIGNED_IN_HINT);
    await fetch("/api/v1/logout", { method: "POST", credentials: "same-origin" });
    location.assign("/");
  });
  const header = el(
    "header",
    {},
    el("strong", { class: "brand" }, "cityhub"),
    nav,
    el("span", { class: "who" }, `${me.username} (${me.role}) · ${me.tenants.join(", ")}`),
    status,
    signOut,
  );
  const panel = new Panel(assets, me);
  root.replaceChildren(header, el("div", { class: "body" }, main, panel.el));

  const app: App = {
    me,
    assets,
    openAsset: (tenant, device) => panel.open(tenant, device),
    navigate,
  };
  const pages: Record<string, Page> = {
    "/map": new MapPage(app),
    "/outages": new OutagesPage(app),
    "/work-orders": new WorkOrdersPage(app),
    "/kpis": new KpiPage(app),
    "/transport": new TransportPage(app),
    "/reports": new ReportsPage(app),
  };
  for (const [path, label] of ROUTES) {
    const a = el("a", { href: path }, label);
    a.addEventListener("click", (e) => {
      e.preventDefault();
      navigate(path);
    });
    nav.append(a);
  }
  for (const p of Object.values(pages)) main.append(p.el);

  let current: Page | null = null;
  function route(): void {
    const path = pages[location.pathname] ? location.pathname : "/map";
    const page = pages[path];
    if (current && current !== page) current.hide();
    current = page;
    page.show();
    for (const a of nav.querySelectorAll("a")) {
      if (a.getAttribute("href") === path) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = `${ROUTES.find(([p]) => p === path)?.[1]} · cityhub`;
  }
  function navigate(path: string): void {
    if (location.pathname !== path) history.pushState(null, "", path);
    route();
  }
  window.addEventListener("popstate", route);

  live.onStatus((s) => {
    status.textContent = s === "live" ? "● live" : s === "reconnecting" ? "○ reconnecting…" : "○ offline";
    status.dataset.state = s;
  });
  live.onEvent("device", (d) => {
    const i = assets.find(String(d.tenant), String(d.device));
    if (i === undefined) return;
    assets.applyReading(i, d, typeof d.online === "boolean" ? d.online : null, (d.ts as string) ?? null);
    assets.version++;
  });
  live.onEvent("outage", (d) => {
    const i = assets.find(String(d.tenant), String(d.device));
    if (i !== undefined) assets.markOutage(i, Number(d.id), String(d.state));
  });
  live.onResync((types) => {
    if (types.includes("device")) loadAssets(assets).then(() => loadOutageMarks(assets)).catch(report);
    else if (types.includes("outage")) loadOutageMarks(assets).catch(report);
  });

  // The page's state, for people debugging in the console and for the end-to-end tests.
  (window as unknown as { cityhub: unknown }).cityhub = { app, assets, pages, live: live.received };

  route();
  if (has("/api/v1/events")) live.connect();
  else {
    // A hub without the live stream: look again every 5 seconds.
    status.textContent = "○ refreshing every 5 s";
    setInterval(() => live.resyncAll(), 5000);
  }
  loadAssets(assets)
    .then(() => {
      document.body.dataset.assetsLoaded = String(assets.count);
      (pages["/map"] as MapPage).loaded();
      (pages["/transport"] as TransportPage).loaded();
      return loadOutageMarks(assets);
    })
    .catch(report);
}

boot();
