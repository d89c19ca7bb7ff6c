// End to end in headless Chromium against a real hub, broker and database, with a
// simulated city suffering the faults of e2e-scenario.toml. The checks run in order on one
// stack; screenshots of every view go to test-output/ (01-10 as the checks go; 11- and 12-
// every view at 1440x900 and at 390x844, 13- and 14- the same in the dark scheme).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { connect } from "node:net";
import { crc32, deflateSync } from "node:zlib";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { apiClient, DASHBOARDS, eventually, PASSWORD, startStack } from "./stack.mjs";
import { DESKTOP } from "./layout.mjs";
import { screenTests } from "./screens.mjs";

const OUT = join(DASHBOARDS, "test-output");
const CHROMIUM = process.env.CITYHUB_CHROMIUM || "/usr/bin/chromium";

let stack, browser, operator, viewer, api, tiles;
/** Tiles asked of the city's (stand-in) tile server. */
const tileRequests = [];
/** A one-pixel PNG of a light grey: what the stand-in tile server answers, drawn stretched. */
function onePixelPng([r, g, b]) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([head, body, crc]);
  };
  const ihdr = Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]); // 1x1, 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.from([0, r, g, b]))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
const PNG = onePixelPng([228, 232, 226]);
/** Every request the pages made, and every console error, over the whole run. */
const requests = [];
const consoleErrors = [];

/** A page of its own browser context, its requests and console errors recorded. */
async function newPage(who, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  context.on("request", (r) => requests.push(r.url()));
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(`${who}: ${m.text()}`));
  page.on("pageerror", (e) => consoleErrors.push(`${who}: ${e.message}`));
  return page;
}

async function signedInPage(username) {
  const page = await newPage(username);
  await page.goto(stack.url);
  await page.getByLabel("User name").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForSelector("header nav");
  return page;
}

/** A GET with the path exactly as given, and the whole answer as text. */
function rawGet(url, path) {
  const { hostname, port } = new URL(url);
  return new Promise((ok, fail) => {
    const sock = connect(Number(port), hostname, () => sock.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`));
    let text = "";
    sock.on("data", (d) => (text += d));
    sock.on("end", () => ok(text));
    sock.on("error", fail);
  });
}

const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`) });

describe("the dashboard against a running hub", () => {
  before(async () => {
    mkdirSync(OUT, { recursive: true });
    tiles = createServer((req, res) => {
      tileRequests.push(req.url);
      res.writeHead(200, { "Content-Type": "image/png" });
      res.end(PNG);
    });
    await new Promise((ok) => tiles.listen(0, "127.0.0.1", ok));
    stack = await startStack({
      tileUrl: `http://127.0.0.1:${tiles.address().port}/{z}/{x}/{y}.png`,
      rulesFile: join(DASHBOARDS, "tests/e2e-rules.toml"),
      scenario: join(DASHBOARDS, "tests/e2e-scenario.toml"),
      users: [
        ["olga", "admin"],
        ["vera", "viewer"],
      ],
      out: OUT,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    api = await apiClient(stack.url, "olga");
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
    tiles?.close();
  });

  test("the hub serves the app for its own paths and JSON for the API's", async () => {
    const index = await fetch(`${stack.url}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type"), /^text\/html/);
    assert.match(index.headers.get("content-security-policy"), /^default-src 'self'; img-src 'self' data: blob: http:\/\/127\.0\.0\.1:\d+;/);
    const html = await index.text();
    // A page of the app (routed in the browser) is the same document.
    assert.equal(await (await fetch(`${stack.url}/work-orders`)).text(), html);
    const script = html.match(/src="(\/assets\/[^"]+\.js)"/)[1];
    const asset = await fetch(`${stack.url}${script}`);
    assert.match(asset.headers.get("content-type"), /^text\/javascript/);
    assert.match(asset.headers.get("cache-control"), /immutable/);
    for (const path of ["/api/v1/nothing", "/metrics/nothing", "/open311/nothing"]) {
      const r = await fetch(`${stack.url}${path}`);
      assert.equal(r.status, 404, path);
      assert.match((await r.json()).error, /^there is no GET/);
    }
    // Nothing outside the build: a path climbing out of it (sent as is; fetch would
    // resolve the dots) is just another page of the app.
    for (const path of ["/../package.json", "/assets/../../package.json", "/%2e%2e/package.json"]) {
      const raw = await rawGet(stack.url, path);
      assert.match(raw, /^HTTP\/1\.1 200/, path);
      assert.ok(raw.endsWith(html), `${path} answers the app's page`);
    }
  });

  test("sign in; the map shows every asset of the inventory", async () => {
    operator = await signedInPage("olga");
    await operator.waitForFunction((n) => document.querySelector("#map")?.dataset.assetCount === String(n), stack.devices.length, { timeout: 20_000 });
    const drawn = Number(await operator.getAttribute("#map", "data-drawn"));
    assert.ok(drawn > 0.9 * stack.devices.length, `${drawn} of ${stack.devices.length} assets drawn on the whole-city view`);
    const legend = await operator.textContent(".legend-title");
    assert.equal(legend, `${stack.devices.length.toLocaleString("en-US")} assets`);
    // The city's tile server is drawn under the base map: tiles of the map's zoom asked.
    await eventually("tiles asked of the configured tile server", 10, () => tileRequests.length > 0);
    assert.ok(tileRequests.every((u) => /^\/\d+\/\d+\/\d+\.png$/.test(u)), tileRequests.join(" "));
    await shot(operator, "01-map");
  });

  test("a detected fault appears in the outage list within seconds", async () => {
    viewer = await signedInPage("vera");
    for (const page of [operator, viewer]) {
      await page.getByRole("link", { name: "Outages" }).click();
      await page.waitForSelector(".outages-page[data-loaded]");
    }
    const shown = new Set(await operator.$$eval("tr[data-outage-id]", (rows) => rows.map((r) => r.dataset.outageId)));
    // The hub detects (the API lists it) ...
    const outage = await eventually("a new outage from the simulated faults", 90, async () => {
      const page = await api.get("/outages?state=open");
      return page.items.find((o) => !shown.has(String(o.id)));
    });
    const detected = Date.now();
    // ... and both watchers see it without reloading.
    for (const page of [operator, viewer]) {
      await page.waitForSelector(`tr[data-outage-id="${outage.id}"]`, { timeout: 10_000 });
    }
    const delay = Date.now() - detected;
    assert.ok(delay < 5_000, `shown ${delay} ms after the API listed it`);
    assert.equal(await operator.getAttribute(`tr[data-outage-id="${outage.id}"]`, "data-state"), "open");
    await shot(operator, "02-outages");
  });

  test("acknowledging changes the outage for everyone watching", async () => {
    // From the keyboard: the first row, the next one, back, then `a`.
    const row = operator.locator("tr[data-state=open]").first();
    const id = await row.getAttribute("data-outage-id");
    await row.focus();
    await operator.keyboard.press("ArrowDown");
    await operator.keyboard.press("ArrowUp");
    assert.equal(await operator.evaluate(() => document.activeElement.dataset.outageId), id);
    await operator.keyboard.press("a");
    for (const page of [operator, viewer]) {
      await page.waitForSelector(`tr[data-outage-id="${id}"][data-state="acknowledged"]`, { timeout: 5_000 });
    }
    const after = await api.get(`/outages?state=acknowledged`);
    const acked = after.items.find((o) => String(o.id) === id);
    assert.equal(acked?.acknowledged_by, "olga");
    assert.match(await viewer.textContent(`tr[data-outage-id="${id}"]`), /acknowledged/);
    await shot(viewer, "03-outage-acknowledged-as-seen-by-a-viewer");
  });

  test("a work order moves through its states", async () => {
    await operator.getByRole("link", { name: "Work orders" }).click();
    // A failed lamp's order (three days to go, e2e-rules.toml), new.
    const order = await eventually("a new lamp work order", 60, async () => {
      const page = await api.get("/work-orders?state=new");
      return page.items.find((w) => w.kind === "lamp_failure");
    });
    const sel = `li[data-id="${order.id}"]`;
    await operator.waitForSelector(`.col-new ${sel}`, { timeout: 5_000 });
    assert.match(await operator.textContent(`${sel} .due`), /^due in \d+ d \d+ h$/);
    assert.equal(await operator.getAttribute(sel, "class"), `card sev-${order.severity}`);
    await operator.click(`${sel} button[data-to=assigned]`);
    await operator.locator("dialog").getByLabel("Person").fill("ana");
    await operator.locator("dialog").getByRole("button", { name: "Assign" }).click();
    await operator.waitForSelector(`.col-assigned ${sel}`, { timeout: 5_000 });
    await operator.click(`${sel} button[data-to=in_progress]`);
    await operator.waitForSelector(`.col-in_progress ${sel}`, { timeout: 5_000 });
    await shot(operator, "04-work-order-in-progress");
    await operator.click(`${sel} button[data-to=done]`);
    await operator.waitForSelector(`.col-done ${sel}`, { timeout: 5_000 });
    // Overdue orders stand out: the voltage faults' (half an hour to go, e2e-rules.toml).
    // Those overdue by more than the page's clock can be off (it was refreshed just now)
    // must say so.
    const overdue = await eventually("an order overdue by 10 minutes", 60, async () => {
      const breaches = await api.get("/reports/sla-breaches");
      const late = breaches.items.filter(
        (w) => !["done", "verified", "closed"].includes(w.state) && Date.parse(breaches.now) - Date.parse(w.due_at) > 10 * 60_000,
      );
      return late.length ? late : null;
    });
    await operator.getByLabel("show closed").check(); // a refresh, as any watcher gets one
    await operator.waitForSelector(".col-closed:not([hidden])");
    for (const w of overdue) {
      const card = `li[data-id="${w.id}"]`;
      assert.match(await operator.getAttribute(card, "class"), /\boverdue\b/, `order ${w.id} is marked overdue`);
      assert.match(await operator.textContent(`${card} .due`), /^⚠ overdue by /);
    }
    const done = (await api.get(`/work-orders?state=done`)).items.find((w) => w.id === order.id);
    assert.equal(done?.assignee, "ana");
    // The card's buttons are the steps the API says this user may take now.
    assert.deepEqual(done.next_states, ["reopened"]);
    const buttons = await operator.$$eval(`${sel} button[data-to]`, (bs) => bs.map((b) => b.dataset.to));
    assert.deepEqual(buttons, done.next_states);
    await shot(operator, "05-work-orders");
    // On a phone the board still shows every column's cards and their buttons.
    await operator.setViewportSize({ width: 390, height: 844 });
    await operator.waitForSelector(`${sel} button[data-to=reopened]`, { state: "visible" });
    await shot(operator, "05-work-orders-phone");
    await operator.setViewportSize({ width: 1440, height: 900 });
  });

  test("the asset panel opens from the map", async () => {
    await operator.getByRole("link", { name: "Map" }).click();
    const lamp = stack.devices.find((d) => d.kind === "light");
    await operator.getByLabel("Find an asset by id").fill(lamp.id);
    await operator.getByLabel("Find an asset by id").press("Enter");
    await operator.waitForSelector(`#panel[data-device="${lamp.id}"]:not([hidden])`);
    await operator.waitForSelector("#panel dl dt");
    assert.match(await operator.textContent("#panel"), new RegExp(`cabinet${lamp.cabinet}`));
    // A click on another asset opens its panel.
    const other = await operator.evaluate((id) => {
      const { assets, pages } = window.cityhub;
      const map = pages["/map"].map;
      const box = document.querySelector("#map").getBoundingClientRect();
      for (let i = 0; i < assets.count; i++) {
        const [x, y] = map.screenOf(i);
        if (assets.ids[i] !== id && x > 40 && y > 40 && x < box.width - 260 && y < box.height - 40 && map.pick(x, y) === i) {
          return { id: assets.ids[i], x: box.left + x, y: box.top + y };
        }
      }
      return null;
    }, lamp.id);
    assert.ok(other, "another asset is in view");
    await operator.mouse.click(other.x, other.y);
    await operator.waitForSelector(`#panel[data-device="${other.id}"]`);
    await operator.fill('[aria-label="Find an asset by id"]', lamp.id);
    await operator.press('[aria-label="Find an asset by id"]', "Enter");
    await operator.waitForSelector(`#panel[data-device="${lamp.id}"] dl dt`);
    await shot(operator, "06-asset-panel");
  });

  test("a command to a lamp goes round to acked", async () => {
    // The panel of the lamp opened above.
    await operator.click('#panel button[data-command="dim"]');
    await operator.locator("dialog").getByRole("button", { name: /^Dim to/ }).click();
    await operator.waitForSelector('#panel .command-status[data-status="acked"][data-final="true"]', { timeout: 20_000 });
    assert.match(await operator.textContent("#panel .command-status"), /acked 1/);
    await shot(operator, "07-command-acked");
  });

  test("a group command previews how many devices it reaches", async () => {
    const lamp = stack.devices.find((d) => d.kind === "light");
    const lamps = stack.devices.filter((d) => d.kind === "light" && d.cabinet === lamp.cabinet).length;
    const box = operator.locator(".group-command");
    await box.getByLabel("Target").selectOption("cabinet");
    await box.getByLabel("Cabinet or district id").fill(lamp.cabinet);
    await box.getByRole("button", { name: "Preview…" }).click();
    const dialog = operator.locator("dialog");
    assert.equal(await dialog.locator("h2").textContent(), `switch on: ${lamps} devices`);
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await operator.waitForSelector(".group-status:text('Not sent.')");
  });

  test("the KPI, transport and reports views show the city", async () => {
    await operator.getByRole("link", { name: "KPIs" }).click();
    await operator.waitForSelector(".kpi-page[data-loaded]");
    const outagesKpi = await operator.textContent('[data-kpi="outages"] h2');
    const open = (await api.get("/outages?state=open&limit=1000")).items.length + (await api.get("/outages?state=acknowledged&limit=1000")).items.length;
    assert.equal(outagesKpi, `Open outages by kind (${open})`);
    await shot(operator, "08-kpis");
    await operator.getByRole("link", { name: "Transport" }).click();
    const buses = stack.devices.filter((d) => d.kind === "vehicle").length;
    await operator.waitForFunction((n) => document.querySelectorAll(".transport-page tbody tr").length === n, buses);
    // Their live reports reach the list: every bus shows a speed.
    await operator.waitForFunction(
      () => [...document.querySelectorAll(".transport-page tbody tr td:nth-child(3)")].every((td) => / km\/h$/.test(td.textContent)),
      null,
      { timeout: 10_000 },
    );
    await shot(operator, "09-transport");
    await operator.getByRole("link", { name: "Reports" }).click();
    await operator.waitForSelector(".reports-page[data-loaded]");
    await shot(operator, "10-reports");
  });

  // The screen as people see it: times, the tab's title, phones, the dark scheme.
  screenTests({ get stack() { return stack; }, get operator() { return operator; }, get api() { return api; }, newPage, shot });

  test("the map shows each asset as the hub judges it, and says when the field falls silent", async () => {
    await operator.getByRole("link", { name: "Map" }).click();
    const names = (s) => s.state.map((i) => s.states[i]);
    // The map's states are the hub's, asset by asset, and the legend counts them.
    const mapStates = async () =>
      operator.evaluate(() => {
        const a = window.cityhub.assets;
        return { ids: a.ids.slice(0, a.count), state: Array.from(a.state.slice(0, a.count)) };
      });
    const NAMES = ["ok", "off", "on", "dimmed", "override", "never_heard", "fault", "stale", "offline", "maintenance", "no_supply", "outage_minor", "outage_major", "outage_critical"];
    // The scenario cuts one cabinet's supply: its lamps are drawn as without supply.
    await eventually("a cabinet without supply and its lamps", 90, async () => {
      const s = await api.get("/state");
      const n = names(s);
      return n.includes("outage_critical") && n.includes("no_supply") ? s : null;
    });
    // The lamps without supply and the cabinet's critical outage, as the hub says now.
    let differ = [];
    await eventually("the map in step with the hub", 45, async () => {
      const [s, m] = [await api.get("/state"), await mapStates()];
      const want = new Map(s.ext_id.map((id, i) => [id, names(s)[i]]));
      differ = m.ids
        .map((id, i) => [id, NAMES[m.state[i]], want.get(id)])
        .filter(([, shown, hub]) => ["no_supply", "outage_critical"].includes(hub) && shown !== hub);
      return differ.length === 0;
    }).catch((e) => assert.fail(`${e.message}: ${JSON.stringify(differ.slice(0, 5))}`));
    const legend = await operator.$$eval(".legend-row span", (spans) => spans.map((s) => s.textContent));
    assert.ok(legend.some((t) => /^no supply \(cabinet\): \d+/.test(t)), legend.join(" | "));
    assert.ok(legend.some((t) => /^outage, critical: [1-9]/.test(t)), legend.join(" | "));
    // Normal states are grey, abnormal ones coloured: a lamp without supply is not drawn
    // in the colour of a burning one.
    await shot(operator, "15-map-no-supply");

    // While the field reports, no banner.
    assert.ok(await operator.isHidden(".quiet-banner"), await operator.textContent(".quiet-banner"));
    // The field falls silent: the banner names the tenant, and the lamps turn stale.
    await stack.silence();
    await operator.waitForSelector(".quiet-banner:not([hidden])", { timeout: 60_000 });
    assert.equal(await operator.getAttribute(".quiet-banner", "data-tenants"), stack.tenant);
    assert.match(await operator.textContent(".quiet-banner"), /No field data from .* for \d/);
    // Within one reporting interval (7.5 real seconds at the scenario's pace) no lamp is
    // burning any more as far as anyone can tell: the hub calls them stale.
    const stale = await eventually("the hub calls the silent lamps stale", 60, async () => {
      const s = await api.get("/state");
      return names(s).includes("on") || names(s).filter((n) => n === "stale").length < 100 ? null : s;
    });
    await eventually("the map shows no lamp burning and the silent ones stale", 30, async () => {
      const shown = (await mapStates()).state.map((i) => NAMES[i]);
      return !shown.includes("on") && shown.filter((n) => n === "stale").length >= names(stale).filter((n) => n === "stale").length * 0.9;
    });
    await shot(operator, "16-map-silent-field");
  });

  test("no request left this machine and no console error", () => {
    const outside = requests.filter((u) => {
      const { protocol, hostname } = new URL(u);
      return !(protocol === "data:" || hostname === "127.0.0.1" || hostname === "localhost");
    });
    assert.ok(requests.length > 10, `${requests.length} requests seen`);
    assert.deepEqual(outside, []);
    assert.deepEqual(consoleErrors, []);
  });
});
