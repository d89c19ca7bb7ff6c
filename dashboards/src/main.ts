// The control-center app: sign-in, then the views (map, outages, work orders, KPIs,
// transport, reports; for an administrator, webhooks too; for a crew, their work, the map
// and work orders) under one header, every one kept current by the live events.

import "./style.css";
import { ActiveOutages, severityCounts } from "./activeOutages";
import { get, has, loadRoutes, SIGNED_IN_HINT, whenSignedOut, type Me } from "./api";
import { Assets, loadAssets, loadOutageMarks } from "./assets";
import * as live from "./live";
import { el } from "./dom";
import { report, type App, type Page } from "./app";
import { Header } from "./header";
import { Alarm } from "./alarm";
import { QuietBanner } from "./quiet";
import { hubClock } from "./time";
import { showLogin } from "./views/login";
import { MapPage } from "./views/map";
import { OutagesPage } from "./views/outages";
import { WorkOrdersPage } from "./views/workorders";
import { Panel } from "./views/panel";
import { KpiPage } from "./views/kpis";
import { MyWorkPage } from "./views/mywork";
import { TransportPage } from "./views/transport";
import { ReportsPage } from "./views/reports";
import { WebhooksPage } from "./views/webhooks";

const ROUTES: [string, string][] = [
  ["/map", "Map"],
  ["/outages", "Outages"],
  ["/work-orders", "Work orders"],
  ["/kpis", "KPIs"],
  ["/transport", "Transport"],
  ["/reports", "Reports"],
];
/** Views of administrators alone (the hub refuses the others their API). */
const ADMIN_ROUTES: [string, string][] = [["/webhooks", "Webhooks"]];
/** A crew member's views: their work first (they read no outages, KPIs or reports). */
const CREW_ROUTES: [string, string][] = [
  ["/my-work", "My work"],
  ["/map", "Map"],
  ["/work-orders", "Work orders"],
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
  const active = new ActiveOutages(me.role !== "crew");
  const main = el("main", { id: "main" });
  const routes =
    me.role === "crew" ? CREW_ROUTES : me.role === "admin" ? [...ROUTES, ...ADMIN_ROUTES.filter(([p]) => has(`/api/v1${p}`))] : ROUTES;
  const header = new Header(me, routes, (path) => navigate(path), async () => {
    live.disconnect();
    localStorage.removeItem(SIGNED_IN_HINT);
    await fetch("/api/v1/logout", { method: "POST", credentials: "same-origin" });
    location.assign("/");
  });
  const status = header.status;
  // Those who watch the alarms may have them chime (crews do not read the outage list).
  const alarm = me.role === "crew" ? null : new Alarm();
  if (alarm) header.el.querySelector(".sign-out")?.before(alarm.button);
  const panel = new Panel(assets, me);
  const quiet = new QuietBanner(assets);
  root.replaceChildren(header.el, quiet.el, el("div", { class: "body" }, main, panel.el));
  setInterval(() => quiet.check(), 5_000);

  const app: App = {
    me,
    assets,
    active,
    openAsset: (tenant, device) => panel.open(tenant, device),
    navigate,
    showOnMap,
  };
  const pages: Record<string, Page> = {
    "/map": new MapPage(app),
    "/outages": new OutagesPage(app),
    "/work-orders": new WorkOrdersPage(app),
    "/kpis": new KpiPage(app),
    "/transport": new TransportPage(app),
    "/reports": new ReportsPage(app),
    "/my-work": new MyWorkPage(app),
  };
  // Made only for those who may use them: nothing of theirs is asked for anyone else.
  if (routes.some(([p]) => p === "/webhooks")) pages["/webhooks"] = new WebhooksPage(app);
  for (const p of Object.values(pages)) main.append(p.el);

  let current: Page | null = null;
  function route(): void {
    const path = routes.some(([p]) => p === location.pathname) ? location.pathname : routes[0][0];
    const page = pages[path];
    if (current && current !== page) current.hide();
    current = page;
    page.show();
    header.setCurrent(path);
    title();
  }
  /** "(2 critical, 5 major) Outages · cityhub": what is wrong, seen from any tab. */
  function title(): void {
    const counts = severityCounts(active.rows);
    const view = routes.find(([p]) => p === location.pathname)?.[1] ?? routes[0][1];
    document.title = `${counts ? `(${counts}) ` : ""}${view} · cityhub`;
  }
  active.onChange(title);
  // A shelving ends on the hub's clock, with no event to say so.
  setInterval(title, 15_000);
  // On a phone the asset panel covers the view: choosing a view closes it.
  const phone = window.matchMedia("(max-width: 700px)");
  function navigate(path: string): void {
    if (location.pathname !== path) history.pushState(null, "", path);
    if (phone.matches && !panel.el.hidden) panel.close();
    route();
  }
  window.addEventListener("popstate", route);
  /** The map, centred on an asset and showing it selected; its panel too, beside the map. */
  function showOnMap(tenant: string, device: string): void {
    navigate("/map");
    const i = assets.find(tenant, device);
    if (i === undefined) return;
    (pages["/map"] as MapPage).showAsset(i);
    if (!phone.matches) panel.open(tenant, device);
  }

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
  // Crews do not read the outage list nor the reports (docs/api.md, roles): they are not
  // asked, and the map marks no outages for them.
  const crew = me.role === "crew";
  const outageMarks = (): Promise<void> => (crew ? Promise.resolve() : loadOutageMarks(assets));
  // The hub's state of every asset: again soon after an outage changes (which may end a
  // supply loss for a whole cabinet), and every 30 s, so that silence shows as it sets in.
  let restating: number | undefined;
  const restateSoon = (): void => {
    if (restating !== undefined) return;
    restating = window.setTimeout(() => {
      restating = undefined;
      loadAssets(assets)
        .then(outageMarks)
        .then(() => quiet.check())
        .catch(report);
    }, 2_000);
  };
  setInterval(restateSoon, 15_000);
  live.onEvent("outage", (d) => {
    const i = assets.find(String(d.tenant), String(d.device));
    if (i !== undefined) assets.markOutage(i, Number(d.id), String(d.state), typeof d.severity === "string" ? d.severity : undefined);
    restateSoon();
  });
  live.onResync((types) => {
    if (types.includes("device")) loadAssets(assets).then(outageMarks).catch(report);
    else if (types.includes("outage")) outageMarks().catch(report);
  });

  // The page's state, for people debugging in the console and for the end-to-end tests.
  (window as unknown as { cityhub: unknown }).cityhub = { app, assets, pages, alarm, live: live.received };

  // Before the first view asks the hub's time: a crew's clock comes from /me.
  hubClock.follow(!crew);
  route();
  if (!crew) active.refresh().catch(report);
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
      (pages["/kpis"] as KpiPage).loaded();
      return outageMarks();
    })
    .catch(report);
}

boot();
