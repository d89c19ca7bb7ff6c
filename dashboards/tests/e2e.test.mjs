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
/** Answers of 400 and above, which Chromium reports as console errors without the URL. */
const failedRequests = [];

/** A page of its own browser context, its requests and console errors recorded. */
async function newPage(who, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  context.on("request", (r) => requests.push(r.url()));
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(`${who}: ${m.text()}`));
  page.on("pageerror", (e) => consoleErrors.push(`${who}: ${e.message}`));
  page.on("response", (r) => r.status() >= 400 && failedRequests.push(`${who}: ${r.status()} ${r.request().method()} ${r.url()}`));
  return page;
}

async function signedInPage(username, viewport = DESKTOP) {
  const page = await newPage(username, viewport);
  await page.goto(stack.url);
  await page.getByLabel("User name").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  // On a phone the views are behind the menu's button: the header is what shows.
  await page.waitForSelector("header.top");
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
        ["carl", "crew", "field-crew"],
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
    // The operator wants a chime for new critical and major outages.
    await operator.getByRole("button", { name: "Sound: off" }).click();
    assert.equal(await operator.getAttribute("header .sound", "aria-pressed"), "true");
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
    // The card says where it is and how its outage stands, as the API does.
    assert.equal(await operator.textContent(`${sel} .where`), [done.device, done.district, done.cabinet && `cabinet ${done.cabinet}`].filter(Boolean).join(" · "));
    assert.equal(await operator.getAttribute(`${sel} .outage-state`, "data-outage-state"), done.outage_state);
    assert.ok(["open", "acknowledged", "resolved"].includes(done.outage_state), done.outage_state);
    // The filters narrow the board: its team keeps it, another district or state hides it.
    const board = operator.locator(".workorders-page");
    await board.getByLabel("Team").selectOption(done.team);
    await operator.waitForSelector(sel);
    const districts = await board.getByLabel("District").locator("option").evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
    const elsewhere = districts.find((d) => d !== done.district);
    if (elsewhere) {
      await board.getByLabel("District").selectOption(elsewhere);
      await operator.waitForSelector(sel, { state: "detached" });
      await board.getByLabel("District").selectOption("");
    }
    await board.getByLabel("State").selectOption("new");
    await operator.waitForSelector(".col-done", { state: "hidden" });
    await board.getByLabel("State").selectOption("");
    await board.getByLabel("Team").selectOption("");
    await operator.waitForSelector(sel);
    await shot(operator, "05-work-orders");
    // On a phone the board still shows every column's cards and their buttons.
    await operator.setViewportSize({ width: 390, height: 844 });
    await operator.waitForSelector(`${sel} button[data-to=reopened]`, { state: "visible" });
    await shot(operator, "05-work-orders-phone");
    await operator.setViewportSize({ width: 1440, height: 900 });
  });

  test("a flood of one kind is one line, acknowledged in one go, each outage by its operator", async () => {
    await operator.getByRole("link", { name: "Outages" }).click();
    await operator.waitForSelector(".outages-page[data-loaded]");
    // The scenario fails four lamps within minutes: one flood of lamp failures.
    const flood = '.flood[data-kind="lamp_failure"]';
    const chimes = () => operator.evaluate(() => window.cityhub.alarm.chimes);
    let ids = [];
    await eventually("the flood's line counts the active lamp failures", 90, async () => {
      const active = [...(await api.get("/outages?state=open")).items, ...(await api.get("/outages?state=acknowledged")).items].filter((o) => o.kind === "lamp_failure");
      const shown = await operator.getAttribute(flood, "data-count", { timeout: 1000 }).catch(() => null);
      ids = active.map((o) => String(o.id)).sort();
      return active.length >= 3 && Number(shown) === active.length;
    });
    assert.match(await operator.textContent(flood), /^\d+ × lamp_failure .* since \d{2}:\d{2}/);
    // The cabinet's supply loss (critical) and the voltage faults (major) chimed for the
    // operator who turned the sound on; the minor lamp failures did not, nor anything for
    // the viewer, whose sound is off.
    const loud = [...(await api.get("/outages?state=open")).items, ...(await api.get("/outages?state=acknowledged")).items].filter((o) => ["critical", "major"].includes(o.severity));
    const heard = await chimes();
    assert.ok(heard >= 1 && heard <= loud.length, `${heard} chimes for ${loud.length} critical or major outages`);
    assert.equal(await viewer.evaluate(() => window.cityhub.alarm.chimes), 0);
    await shot(operator, "17-outage-flood");
    // Narrowed to the flood: its outages and nothing else, each marked.
    await operator.click(`${flood} button[data-action=only]`);
    // (The scenario goes on: the flood is its active lamp failures at the time.)
    await eventually("the list narrowed to the flood", 5, async () => {
      const rows = await operator.$$eval("tr[data-outage-id]", (rs) => rs.map((r) => r.dataset.outageId).sort());
      const active = [...(await api.get("/outages?state=open")).items, ...(await api.get("/outages?state=acknowledged")).items].filter((o) => o.kind === "lamp_failure");
      ids = active.map((o) => String(o.id)).sort();
      return JSON.stringify(rows) === JSON.stringify(ids);
    });
    assert.ok((await operator.$$eval("tr[data-outage-id] .badge", (b) => b.map((x) => x.textContent))).every((t) => /^flood of \d+$/.test(t)));
    await operator.click(`${flood} button[data-action=ack-all]`);
    const acked = await eventually("every outage of the flood acknowledged", 10, async () => {
      const items = (await api.get("/outages?state=acknowledged")).items.filter((o) => ids.includes(String(o.id)));
      return items.length === ids.length ? items : null;
    });
    assert.ok(acked.every((o) => o.acknowledged_by === "olga"), JSON.stringify(acked.map((o) => o.acknowledged_by)));
    // Nothing of it is open: the line offers to acknowledge only lamps that failed since
    // (the scenario goes on), and none when none did.
    await eventually("no acknowledge left for the flood's outages", 5, async () => {
      const since = (await api.get("/outages?state=open")).items.filter((o) => o.kind === "lamp_failure" && !ids.includes(String(o.id))).length;
      const button = await operator.$(`${flood} button[data-action=ack-all]`);
      if (since === 0) return button === null;
      return button !== null && (await button.textContent()) === `Acknowledge ${since} open`;
    });
    for (const id of ids) await operator.waitForSelector(`tr[data-outage-id="${id}"][data-state="acknowledged"]`, { timeout: 5_000 });
    await operator.click(`${flood} button[data-action=only]`);
  });

  test("a crew member's phone: their work first, started and finished, each on the map", async () => {
    // A field-crew order given to Carl, of the crew.
    const order = await eventually("a new field-crew order", 30, async () => (await api.get("/work-orders?state=new&team=field-crew")).items[0]);
    await api.post(`/work-orders/${order.id}/transition`, { to: "assigned", assignee: "carl" });
    const crew = await signedInPage("carl", { width: 390, height: 844 });
    await crew.waitForSelector(".mywork-page[data-loaded]:not([hidden])");
    // Their views only, their work first.
    assert.deepEqual(await crew.$$eval("header nav a", (as) => as.map((a) => a.textContent)), ["My work", "Map", "Work orders"]);
    const card = `.mywork .mine li[data-id="${order.id}"]`;
    await crew.waitForSelector(card);
    assert.match(await crew.textContent(`${card} .where`), new RegExp(`^${order.device}`));
    // Counted down on the hub's clock (the simulated one here), as for the dispatchers.
    await eventually("the deadline on the hub's clock", 5, async () => /^due in \d+ d \d+ h$/.test(await crew.textContent(`${card} .due`)));
    assert.equal(await crew.locator(".group-command").isVisible(), false, "no group commands for a crew");
    assert.ok(await crew.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "no sideways scrolling");
    await shot(crew, "19-crew-my-work");
    await crew.click(`${card} button[data-to=in_progress]`);
    await crew.waitForSelector(`${card}[data-state="in_progress"]`);
    await crew.click(`${card} button[data-to=done]`);
    // Done: off their list, and done for everyone, by Carl.
    await crew.waitForSelector(card, { state: "detached" });
    const done = await api.get(`/work-orders/${order.id}`);
    assert.equal(done.state, "done");
    assert.equal(done.events.at(-1).actor, "carl");
    // "Map" shows the map centred on the order's asset, selected.
    const other = crew.locator(".mywork li[data-id]").first();
    const device = (await other.locator(".where").textContent()).split(" · ")[0];
    await other.locator("button[data-action=map]").click();
    await crew.waitForSelector(".map-page:not([hidden])");
    const selected = await crew.evaluate(() => {
      const { assets, pages } = window.cityhub;
      const i = pages["/map"].map.selected;
      return i >= 0 ? assets.ids[i] : null;
    });
    assert.equal(selected, device);
    await shot(crew, "20-crew-map");
    await crew.context().close();
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
    // Found by its id in any case; part of an id suggests the assets that hold it.
    const find = operator.getByLabel("Find an asset by id");
    const part = lamp.id.slice(0, -1).toLowerCase();
    await find.fill(part);
    const suggested = await operator.$$eval("#asset-choices option", (os) => os.map((o) => o.value));
    const holding = stack.devices.filter((d) => d.id.toLowerCase().includes(part)).length;
    assert.equal(suggested.length, Math.min(12, holding), suggested.join(" "));
    assert.ok(suggested.every((id) => id.toLowerCase().includes(part)), suggested.join(" "));
    if (holding > 1) {
      await find.press("Enter");
      assert.match(await find.evaluate((i) => i.validationMessage), /^Several assets match/);
    }
    await find.fill(lamp.id.toLowerCase());
    await find.press("Enter");
    await operator.waitForSelector(`#panel[data-device="${lamp.id}"] dl dt`);
    // Facts in words and units; the city's last days on the chart, any of its series.
    const facts = await operator.$$eval("#panel .facts dt", (dts) => dts.map((d) => [d.textContent, d.nextElementSibling.textContent]));
    const power = facts.find(([k]) => k === "power");
    assert.ok(power && / W$/.test(power[1]), JSON.stringify(facts));
    assert.ok(!facts.some(([k]) => k === "power_w"), "no field names as labels");
    await operator.waitForFunction(() => Number(document.querySelector("#panel").dataset.points) > 20, null, { timeout: 10_000 });
    const series = await operator.$$eval("#panel [data-series] option", (os) => os.map((o) => o.textContent));
    assert.deepEqual(series.slice(0, 3), ["power (W)", "power (highest) (W)", "dim level (%)"]);
    assert.equal(series.length, 10, series.join(", "));
    const asked = [];
    const onRequest = (r) => r.url().includes(`/devices/${lamp.id}/history`) && asked.push(new URL(r.url()));
    operator.on("request", onRequest);
    await operator.locator("#panel").getByLabel("Time range").selectOption("7d");
    await operator.locator("#panel").getByLabel("Series").selectOption({ label: "dim level (%)" });
    await operator.waitForFunction(() => document.querySelector("#panel .u-legend")?.textContent.includes("dim level (%)"));
    operator.off("request", onRequest);
    const week = asked.at(-1);
    const days = (Date.parse(week.searchParams.get("to")) - Date.parse(week.searchParams.get("from"))) / 86_400_000;
    assert.ok(Math.abs(days - 7) < 0.01, `${days} days asked`);
    // What the lamp is part of: its cabinet opens in the panel, with its lamps.
    await operator.waitForSelector('#panel [data-related="work-orders"]');
    await operator.locator('#panel [data-related="cabinet"]').getByRole("button", { name: lamp.cabinet }).click();
    await operator.waitForSelector(`#panel[data-device="${lamp.cabinet}"] [data-related="lamps"] li`);
    const lamps = stack.devices.filter((d) => d.kind === "light" && d.cabinet === lamp.cabinet).length;
    assert.equal(await operator.locator('#panel [data-related="lamps"] li').count(), Math.min(200, lamps));
    await operator.locator('#panel [data-related="lamps"]').getByRole("button", { name: lamp.id, exact: true }).click();
    await operator.waitForSelector(`#panel[data-device="${lamp.id}"] dl dt`);
    await operator.locator("#panel").getByLabel("Time range").selectOption("24h");
    await shot(operator, "06-asset-panel");
    // One district alone: the legend counts its assets, as the inventory has them.
    const toolbar = operator.locator(".map-page .toolbar");
    await toolbar.getByLabel("District").selectOption(lamp.district);
    const inDistrict = stack.devices.filter((d) => d.district === lamp.district).length;
    await operator.waitForSelector(`.legend-title:text("${inDistrict.toLocaleString("en-US")} assets")`);
    await toolbar.getByLabel("District").selectOption("");
    await operator.waitForSelector(`.legend-title:text("${stack.devices.length.toLocaleString("en-US")} assets")`);
  });

  test("a command to a lamp goes round to acked", async () => {
    // The panel of the lamp opened above.
    await operator.click('#panel button[data-command="dim"]');
    await operator.locator("dialog").getByRole("button", { name: /^Dim to/ }).click();
    await operator.waitForSelector('#panel .command-status[data-status="acked"][data-final="true"]', { timeout: 20_000 });
    assert.match(await operator.textContent("#panel .command-status"), /acked 1/);
    await shot(operator, "07-command-acked");
    // The lamp's commands list it, with its delivery, once it has gone round.
    await operator.waitForSelector('#panel [data-related="commands"] li');
    assert.match(await operator.textContent('#panel [data-related="commands"] li'), /^set light by olga, .* — acked 1/);
    // Back to its schedule: the confirmation says what that does, and it goes round too.
    await operator.click('#panel button[data-command="resume"]');
    const dialog = operator.locator("dialog");
    assert.match(await dialog.locator(".note").textContent(), /^Each lamp is told what its schedule asks for now/);
    await dialog.getByRole("button", { name: "Back to schedule" }).click();
    await operator.waitForSelector('#panel [data-related="commands"] li:has-text("back to schedule by olga")', { timeout: 20_000 });
    assert.match(await operator.textContent('#panel [data-related="commands"] li'), /^back to schedule by olga, .* — acked 1/);
  });

  test("a group command previews how many devices it reaches", async () => {
    const lamp = stack.devices.find((d) => d.kind === "light");
    const lamps = stack.devices.filter((d) => d.kind === "light" && d.cabinet === lamp.cabinet).length;
    const box = operator.locator(".group-command");
    await box.getByLabel("Target").selectOption("cabinet");
    // No cabinet named: it says so, and that goes once the choice changes.
    await box.getByLabel("Cabinet or district id").fill("");
    await box.getByRole("button", { name: "Preview…" }).click();
    await operator.waitForSelector(".group-status:text('Name the cabinet.')");
    await box.getByLabel("Cabinet or district id").fill(lamp.cabinet);
    await box.getByLabel("Cabinet or district id").dispatchEvent("change");
    assert.equal(await operator.textContent(".group-status"), "", "no stale error beside the new choice");
    await box.getByLabel("For how long").selectOption({ label: "for 4 hours" });
    await box.getByRole("button", { name: "Preview…" }).click();
    const dialog = operator.locator("dialog");
    // The confirmation names what, how many, which cabinet of which municipality, how long.
    assert.equal(await dialog.locator("h2").textContent(), `switch on: ${lamps} devices of cabinet ${lamp.cabinet} in ${stack.tenant}`);
    assert.match(await dialog.locator(".note").textContent(), /^For 4 hours, until \d{2}:\d{2} on the hub's clock; then they go back to their schedule\./);
    await shot(operator, "18-group-command-confirmation");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await operator.waitForSelector(".group-status:text('Not sent.')");
  });

  test("the KPIs loaded directly count the city's lamps at once", async () => {
    const direct = await signedInPage("olga");
    await direct.goto(`${stack.url}/kpis`);
    await direct.waitForSelector(".kpi-page[data-loaded]:not([hidden])", { timeout: 10_000 });
    const lamps = stack.devices.filter((d) => d.kind === "light").length;
    assert.match(await direct.textContent('[data-kpi="lamps"] p'), new RegExp(`^[\\d,]+ of ${lamps.toLocaleString("en-US")} lamps report in`));
    await direct.context().close();
  });

  test("the KPI, transport and reports views show the city", async () => {
    await operator.getByRole("link", { name: "KPIs" }).click();
    await operator.waitForSelector(".kpi-page[data-loaded]");
    const outagesKpi = await operator.textContent('[data-kpi="outages"] h2');
    const open = (await api.get("/outages?state=open&limit=1000")).items.length + (await api.get("/outages?state=acknowledged&limit=1000")).items.length;
    assert.equal(outagesKpi, `Open outages by kind (${open})`);
    // Trends over the range: the city's past days of energy, the outages of each day.
    await operator.waitForSelector('[data-kpi="energy-trend"] canvas', { timeout: 20_000 });
    await operator.waitForSelector('[data-kpi="outage-trend"] canvas');
    assert.match(await operator.textContent('[data-kpi="energy"] .value'), /^\d+\.\d %$/);
    await operator.locator(".kpi-page").getByLabel("Time range").selectOption("7d");
    await operator.waitForSelector('[data-kpi="sla"] h2:text("SLA compliance (last 7 days)")');
    await operator.waitForSelector('[data-kpi="energy-trend"] canvas');
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
    // The city's past is there: energy per day over the last 30 days.
    await operator.waitForSelector('[data-report="energy"] canvas', { timeout: 20_000 });
    await shot(operator, "10-reports");
    // Another range: every report says which, and the export links follow it.
    const page = operator.locator(".reports-page");
    await page.getByLabel("Time range").selectOption("7d");
    await operator.waitForSelector('[data-report="alarms"] h2:text("last 7 days")');
    assert.match(await operator.textContent('[data-report="teams"] h2'), /\(last 7 days\)$/);
    const csv = new URL(await page.locator('a[data-export="csv"]').getAttribute("href"), stack.url);
    assert.equal(csv.pathname, "/api/v1/exports/light");
    const week = (Date.parse(csv.searchParams.get("to")) - Date.parse(csv.searchParams.get("from"))) / 86_400_000;
    assert.ok(Math.abs(week - 7) < 0.01, `${week} days`);
    await page.getByLabel("Readings to export").selectOption("cabinet");
    assert.match(await page.locator('a[data-export="parquet"]').getAttribute("href"), /^\/api\/v1\/exports\/cabinet\?.*format=parquet/);
    // The file itself, with the page's own session.
    const file = await operator.request.get(csv.toString());
    assert.equal(file.status(), 200);
    assert.match(file.headers()["content-type"], /^text\/csv/);
    assert.match((await file.text()).split("\r\n")[0], /^tenant,device,ts,on,dim,power_w,/);
    // Days of one's own; a first day after the last is refused with a reason.
    await page.getByLabel("Time range").selectOption("custom");
    await page.getByLabel("First day").fill("2026-11-20");
    await page.getByLabel("Last day").fill("2026-11-19");
    await operator.waitForSelector('.reports-page .range-problem:text("Choose a first day no later than the last.")');
    await page.getByLabel("Last day").fill("2026-11-21");
    await operator.waitForSelector('[data-report="alarms"] h2:has-text("Nov 20")');
    // Printed: the reports without the controls or the header.
    await operator.emulateMedia({ media: "print" });
    assert.equal(await operator.locator("header.top").isVisible(), false);
    assert.equal(await page.getByLabel("Time range").isVisible(), false);
    assert.equal(await operator.locator('[data-report="alarms"]').isVisible(), true);
    await shot(operator, "21-reports-printed");
    await operator.emulateMedia({ media: "screen" });
    await page.getByLabel("Time range").selectOption("30d");
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
    assert.deepEqual(consoleErrors, [], failedRequests.join("\n"));
  });
});
