// The residents' status page (public.html at /public/{tenant}/) in headless Chromium
// against a real hub, broker and database: the city of e2e-scenario.toml, published, whose
// cabinet loses its mains within a minute (its lamps' streets go dark), with planned works
// of its own; a published tenant where nothing is wrong; a published name that is no
// tenant; and a tenant with planned works that is not published. The page must show what
// the hub's rules open, as the feed says it, and nothing else.
// The hub mails through a real SMTP server (aiosmtpd, tests/python/smtp_sink.py): a
// resident who subscribes from the page is sent the confirmation and nothing else.
// Screenshots: test-output/public-desktop.png, public-phone.png (and -full, the whole
// page), public-phone-dark.png, public-subscribe-phone.png.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { apiClient, DASHBOARDS, eventually, startStack } from "./stack.mjs";
import { colorsOf, contrast, DESKTOP, PHONE, sideways, smallText, timesIn } from "./layout.mjs";

const OUT = join(DASHBOARDS, "test-output");
const CHROMIUM = process.env.CITYHUB_CHROMIUM || "/usr/bin/chromium";
/** Published: the city's tenant, and a name that is no tenant at all. */
const CITY = "simcity";
const NO_SUCH_CITY = "ghosttown";
/** Published: a tenant of the hub where nothing is wrong. */
const QUIET_CITY = "quietville";
/** A tenant of the hub with planned works, not published. */
const OTHER = "othertown";
const OTHER_PLACE = { district: "Harbour", street: "Quay Road" };

let stack, browser, api, smtp;
const MAILS = join(tmpdir(), `cityhub-e2e-mails-${process.pid}.jsonl`);

/** The SMTP server the hub mails through; its port. */
async function startSmtp() {
  const python = process.env.CITYHUB_TEST_PYTHON;
  if (!python) throw new Error("CITYHUB_TEST_PYTHON is not set: source scripts/python.sh (scripts/test.sh does) for the SMTP server");
  smtp = spawn(python, [join(DASHBOARDS, "../tests/python/smtp_sink.py"), MAILS], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = await Promise.race([
    (async () => {
      for await (const l of createInterface({ input: smtp.stdout })) return [l];
      return [""];
    })(),
    new Promise((_, fail) => setTimeout(() => fail(new Error("the SMTP server did not start")), 15_000)),
  ]);
  return Number(line.trim());
}

/** The mails to `to`, in the order taken. */
const mailsTo = (to) =>
  existsSync(MAILS)
    ? readFileSync(MAILS, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((m) => m.to.includes(to))
    : [];
/** Every request and console error of the pages that should meet no failure. */
const requests = [];
const consoleErrors = [];

/** A page of its own browser context; `record` false for pages meant to meet failures. */
async function newPage(who, { viewport = DESKTOP, colorScheme = "light", record = true } = {}) {
  const context = await browser.newContext({ viewport, colorScheme });
  const page = await context.newPage();
  page.on("request", (r) => requests.push(r.url()));
  if (record) {
    page.on("console", (m) => m.type() === "error" && consoleErrors.push(`${who}: ${m.text()}`));
    page.on("pageerror", (e) => consoleErrors.push(`${who}: ${e.message}`));
    page.on("response", (r) => r.status() >= 400 && consoleErrors.push(`${who}: ${r.status()} ${r.url()}`));
  }
  return page;
}

const pageUrl = (tenant = CITY) => `${stack.url}/public/${tenant}/`;
const feed = async (file, tenant = CITY) => fetch(`${stack.url}/public/${tenant}/${file}`);
/** As the page keys an item (src/public/feed.ts `workKey`): the feed's id for it. */
const keyOf = (f) => {
  assert.ok(typeof f.id === "string" && f.id.length > 0, JSON.stringify(f));
  return f.id;
};
const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`) });

/** The page's item for feed feature `f`, with what it shows. */
function shown(page, f) {
  return page.evaluate((key) => {
    const b = [...document.querySelectorAll("button.item")].find((x) => x.dataset.key === key);
    if (!b) return null;
    const text = (sel) => b.querySelector(sel)?.textContent ?? null;
    return {
      index: b.dataset.index,
      group: b.closest("section.group")?.dataset.group,
      title: text(".title"),
      status: text(".status"),
      dataStatus: b.dataset.status,
      where: text(".where"),
      detail: text(".detail"),
      since: b.querySelector(".since time")?.getAttribute("datetime"),
      sinceText: text(".since"),
      eta: text(".eta"),
      etaTime: b.querySelector(".eta time")?.getAttribute("datetime") ?? null,
      pressed: b.getAttribute("aria-pressed"),
    };
  }, keyOf(f));
}

/** Asks the page to refresh now, as coming back to its tab does. */
const nudge = (page) => page.evaluate(() => window.dispatchEvent(new Event("focus")));

/** Waits until `f(page)` holds, nudging the page to refresh meanwhile (the feed is shared for 10 s). */
function shownEventually(page, what, seconds, f) {
  return eventually(what, seconds, async () => {
    const v = await f();
    if (!v) await nudge(page);
    return v;
  }, 1500);
}

describe("the residents' status page against a running hub", () => {
  before(async () => {
    mkdirSync(OUT, { recursive: true });
    stack = await startStack({
      scenario: join(DASHBOARDS, "tests/e2e-scenario.toml"),
      rulesFile: join(DASHBOARDS, "tests/e2e-rules.toml"),
      users: [["olga", "admin"]],
      out: join(OUT, "public"),
      historyDays: 0,
      publicTenants: [CITY, QUIET_CITY, NO_SUCH_CITY],
      hubEnv: {
        CITYHUB_EMAIL_SMTP_HOST: "127.0.0.1",
        CITYHUB_EMAIL_SMTP_PORT: String(await startSmtp()),
        CITYHUB_EMAIL_TLS: "none",
        CITYHUB_EMAIL_FROM: "City works <works@city.example>",
        CITYHUB_EMAIL_PUBLIC_URL: "http://hub.test",
      },
    });
    assert.equal(stack.tenant, CITY, "the scenario's city is the tenant published");
    api = await apiClient(stack.url, "olga");
    // Planned works on the hub's clock (the simulators', 120 times the wall clock): far
    // enough ahead that none starts while the test runs. One in a district, one over the
    // whole city.
    const now = Date.parse((await api.get("/reports/sla-breaches?limit=1")).now);
    const at = (hours) => new Date(now + hours * 3_600_000).toISOString();
    const district = stack.devices.find((d) => d.kind === "light").district;
    stack.cli(["maintenance", "add", "--tenant", CITY, "--scope", "district", "--target", district, "--from", at(48), "--until", at(52), "--reason", "Resurfacing (a reason nobody outside reads)"]);
    stack.cli(["maintenance", "add", "--tenant", CITY, "--scope", "tenant", "--target", CITY, "--from", at(72), "--until", at(74), "--reason", "Network upgrade"]);
    // Another municipality of the same hub, with planned works, that publishes nothing.
    const lamp = (n, lon) => ({
      type: "Feature",
      geometry: { type: "Point", coordinates: [lon, 38.7] },
      properties: { id: `OT-L${n}`, kind: "light", tenant: OTHER, cabinet: "OT-C1", rated_power_w: 70, ...OTHER_PLACE },
    });
    const other = join(OUT, "public", "more-tenants.geojson");
    writeFileSync(
      other,
      JSON.stringify({
        type: "FeatureCollection",
        features: [
          { type: "Feature", geometry: { type: "Point", coordinates: [-9.1, 38.7] }, properties: { id: "OT-C1", kind: "cabinet", tenant: OTHER, district: OTHER_PLACE.district } },
          lamp(1, -9.1001),
          lamp(2, -9.1002),
          { type: "Feature", geometry: { type: "Point", coordinates: [-9.2, 38.8] }, properties: { id: "QV-C1", kind: "cabinet", tenant: QUIET_CITY, district: "Centre" } },
        ],
      }),
    );
    stack.cli(["devices", "import", other]);
    stack.cli(["maintenance", "add", "--tenant", OTHER, "--scope", "district", "--target", OTHER_PLACE.district, "--from", at(24), "--until", at(30), "--reason", "Quay works"]);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
    smtp?.kill();
    rmSync(MAILS, { force: true });
  });

  test("the hub serves the page for a published tenant, and nothing of one it does not publish", async () => {
    const moved = await fetch(`${stack.url}/public/${CITY}`, { redirect: "manual" });
    assert.equal(moved.status, 308);
    assert.equal(new URL(moved.headers.get("location"), stack.url).pathname, `/public/${CITY}/`);
    const page = await fetch(pageUrl());
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type"), /^text\/html/);
    assert.match(page.headers.get("content-security-policy"), /^default-src 'self';.* connect-src 'self'/);
    assert.match(await page.text(), /<script type="module" crossorigin src="\/assets\/public-[^"]+\.js">/);
    for (const file of ["works.geojson", "map.geojson", "works.ics"]) {
      const r = await feed(file);
      assert.equal(r.status, 200, file);
      assert.equal(r.headers.get("cache-control"), "public, max-age=10", file);
      await r.arrayBuffer();
    }
    // The other municipality is a tenant with planned works...
    assert.equal(stack.psql(`SELECT count(*) FROM maintenance_windows w JOIN tenants t ON t.id = w.tenant_id WHERE t.slug = '${OTHER}'`), "1");
    // ... but not published: its page and feeds are the same 404 as no tenant's.
    for (const path of ["", "works.geojson", "map.geojson", "works.ics"]) {
      const r = await fetch(`${pageUrl(OTHER)}${path}`);
      assert.equal(r.status, 404, `/public/${OTHER}/${path}`);
      assert.deepEqual(await r.json(), { error: "this tenant has no public page" });
    }
  });

  test("a street the hub finds dark shows on the map and in the list, with its status and expected repair", async () => {
    const page = await newPage("desktop");
    await page.goto(pageUrl());
    await page.waitForSelector("body[data-loaded]");
    // The scenario cuts a cabinet's mains 20 real seconds in; its rules open the outage and
    // a work order due in three days (e2e-rules.toml).
    const { outage, order } = await eventually("the cabinet's outage and its work order", 90, async () => {
      const outage = (await api.get("/outages?state=open")).items.find((o) => o.kind === "cabinet_supply_loss");
      const order = outage && (await api.get("/work-orders?state=new")).items.find((w) => w.kind === "cabinet_supply_loss" && w.device === outage.device);
      return order ? { outage, order } : null;
    });
    // The feed: the cabinet's lamps' streets are dark, counted lamp by lamp, due when the
    // cabinet's repair is.
    const dark = await eventually("the dark streets in the feed", 30, async () => {
      const items = (await (await feed("works.geojson")).json()).features.filter((f) => f.properties.cause === "power_supply");
      return items.length ? items : null;
    }, 1000);
    const lamps = stack.devices.filter((d) => d.kind === "light" && d.cabinet === outage.device);
    assert.equal(dark.reduce((n, f) => n + f.properties.count, 0), lamps.length, "every lamp of the cabinet counted once");
    for (const f of dark) {
      assert.equal(f.properties.kind, "dark_street");
      assert.equal(f.properties.status, "reported");
      assert.equal(Date.parse(f.properties.expected_end), Math.floor(Date.parse(order.due_at) / 1000) * 1000, "the work order's deadline");
      assert.ok(lamps.some((l) => l.district === f.properties.district && (l.street ?? null) === f.properties.street), JSON.stringify(f.properties));
    }

    // The page: each in the list, under "Now", in words, and each on the map.
    for (const f of dark) {
      const item = await shownEventually(page, "the dark street on the page", 20, () => shown(page, f));
      const p = f.properties;
      assert.equal(item.group, "now");
      assert.equal(item.title, "Street lights out");
      assert.equal(item.status, "Reported");
      assert.equal(item.where, [p.street, p.district].filter(Boolean).join(", "));
      assert.equal(item.detail, `${p.count} ${p.count === 1 ? "lamp" : "lamps"} out · Power cut to the street lights`);
      assert.equal(item.since, p.since);
      assert.match(item.eta, /^Expected fixed by \d{2}:\d{2}, \S/, "three days ahead: with its date");
      assert.equal(item.etaTime, p.expected_end);
      const marker = page.locator(`svg .marker[data-index="${item.index}"]`);
      assert.equal(await marker.getAttribute("data-kind"), "dark_street");
      const [m, map] = [await marker.boundingBox(), await page.locator("svg.map-drawing").boundingBox()];
      assert.ok(m.x >= map.x && m.y >= map.y && m.x + m.width <= map.x + map.width && m.y + m.height <= map.y + map.height, "the marker is inside the map");
    }
    // The base map is drawn under them, and the legend says what each shape is.
    assert.equal(await page.locator("svg .district").count(), 9);
    assert.ok((await page.locator("svg .street").count()) > 10);
    assert.match(await page.locator(".legend").textContent(), /Street lights out \(\d+\)Water leak \(0\)Planned works \(2\)1 across the whole city: in the list only/);

    // Planned works: this city's two, with their dates, and nothing of the other tenant's.
    const planned = (await (await feed("works.geojson")).json()).features.filter((f) => f.properties.kind === "planned_works");
    assert.equal(planned.length, 2);
    for (const f of planned) {
      const item = await shown(page, f);
      assert.equal(item.group, "planned");
      assert.equal(item.status, "Planned");
      assert.match(item.sinceText, /^Starts \d{2}:\d{2}, /);
      assert.match(item.eta, /^Ends \d{2}:\d{2}, /);
      assert.equal(item.where, f.geometry ? f.properties.district : "Across the city");
    }
    const text = await page.locator("main").innerText();
    for (const word of [OTHER, OTHER_PLACE.district, OTHER_PLACE.street]) assert.ok(!text.includes(word), `nothing of ${OTHER} (${word})`);
    assert.equal(await page.locator('section[data-group="planned"] button.item').count(), 2);
    // Times for people: to the minute, no stamps.
    assert.deepEqual((await timesIn(page, "main")).wrong, []);

    // When a crew is given the repair, residents read that it is accepted.
    await api.post(`/work-orders/${order.id}/transition`, { to: "assigned", assignee: "ana" });
    await shownEventually(page, "the repair accepted on the page", 30, async () => (await shown(page, dark[0]))?.status === "Accepted");
    assert.equal((await shown(page, dark[0])).dataStatus, "accepted");

    // Selecting an item in the list marks it on the map; a marker marks its item.
    const first = await shown(page, dark[0]);
    await page.locator(`button.item[data-index="${first.index}"]`).click();
    await page.waitForSelector(`svg .marker[data-index="${first.index}"][data-selected]`);
    const works = planned.find((f) => f.geometry);
    const other = await shown(page, works);
    await page.locator(`svg .marker[data-index="${other.index}"]`).click();
    await page.waitForSelector(`button.item[data-index="${other.index}"][aria-pressed="true"]`);
    assert.equal(await page.locator('button.item[aria-pressed="true"]').count(), 1);
    assert.equal(await page.locator("svg .marker[data-selected]").count(), 1);
    // From the keyboard: the next item down, chosen with Enter.
    await page.locator("button.item").first().focus();
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("Enter");
    const chosen = await page.evaluate(() => document.activeElement.dataset.index);
    assert.equal(await page.getAttribute(`button.item[data-index="${chosen}"]`, "aria-pressed"), "true");
    await page.waitForSelector(`svg .marker[data-index="${chosen}"][data-selected]`);

    // Residents can subscribe to the planned works, and take the data.
    const ics = new URL(await page.getByRole("link", { name: "Subscribe to planned works (calendar)" }).getAttribute("href"), page.url());
    assert.equal(ics.pathname, `/public/${CITY}/works.ics`);
    const calendar = await (await fetch(ics)).text();
    assert.equal(calendar.match(/BEGIN:VEVENT/g)?.length, 2);
    const data = new URL(await page.getByRole("link", { name: "Open data (GeoJSON)" }).getAttribute("href"), page.url());
    assert.equal(data.pathname, `/public/${CITY}/works.geojson`);

    assert.deepEqual(await sideways(page), [], "at 1440x900");
    assert.deepEqual(await smallText(page), [], "at 1440x900");
    await page.locator(`button.item[data-index="${first.index}"]`).click();
    await shot(page, "public-desktop");
    await page.context().close();
  });

  test("on a phone: one column, nothing sideways, readable in both schemes", async () => {
    for (const colorScheme of ["light", "dark"]) {
      const page = await newPage(`phone-${colorScheme}`, { viewport: PHONE, colorScheme });
      await page.goto(pageUrl());
      await page.waitForSelector("body[data-loaded] button.item");
      assert.deepEqual(await sideways(page), [], `at 390x844, ${colorScheme}`);
      assert.deepEqual(await smallText(page), [], `at 390x844, ${colorScheme}`);
      // The map first, the list below it.
      const [map, list] = [await page.locator(".map").boundingBox(), await page.locator(".lists").boundingBox()];
      assert.ok(map.width >= 380 && map.height >= 240 && list.y >= map.y + map.height, JSON.stringify({ map, list }));
      const colors = await colorsOf(page, [".item .title", ".item .where", ".item .times", ".item .status", ".updated", ".legend li", ".links a"]);
      for (const [sel, { color, background }] of Object.entries(colors)) {
        assert.ok(contrast(color, background) >= 4.5, `${sel} in the ${colorScheme} scheme: ${color} on ${background}`);
      }
      await page.locator("button.item").first().click();
      await shot(page, colorScheme === "light" ? "public-phone" : "public-phone-dark");
      // The whole list too, as a resident scrolls it.
      if (colorScheme === "light") await page.screenshot({ path: join(OUT, "public-phone-full.png"), fullPage: true });
      await page.context().close();
    }
  });

  test("a city where nothing is wrong says so", async () => {
    const page = await newPage("quiet-city", { viewport: PHONE });
    await page.goto(pageUrl(QUIET_CITY));
    await page.waitForSelector('body[data-state="current"]');
    assert.equal(await page.textContent(".all-clear"), "Nothing affects the city right now.");
    assert.equal(await page.locator("button.item").count(), 0);
    assert.equal(await page.locator("svg .marker").count(), 0);
    assert.equal(await page.textContent("#city"), QUIET_CITY);
    assert.deepEqual(await sideways(page), []);
    await page.context().close();
  });

  test("a resident subscribes from the page to a district's planned works and is sent the confirmation only", async () => {
    const page = await newPage("subscribe", { viewport: PHONE });
    await page.goto(pageUrl());
    await page.waitForSelector("section.subscribe:not([hidden])");
    const district = stack.devices.find((d) => d.kind === "light").district;
    const offered = await page.$$eval("#subscribe-district option", (o) => o.map((x) => x.textContent));
    assert.equal(offered[0], "The whole city");
    assert.ok(offered.includes(district), offered.join(", "));
    // A mistyped address is caught on the page; nothing is posted.
    await page.fill("#subscribe-email", "ana at example.org");
    await page.click("section.subscribe button[type=submit]");
    assert.match(await page.textContent("section.subscribe .said"), /^Write an e-mail address/);
    await page.fill("#subscribe-email", "ana@example.org");
    await page.selectOption("#subscribe-district", district);
    await page.click("section.subscribe button[type=submit]");
    await page.waitForFunction(() => /^Thank you\./.test(document.querySelector("section.subscribe .said")?.textContent ?? ""));
    await page.locator("section.subscribe").scrollIntoViewIfNeeded();
    await shot(page, "public-subscribe-phone");
    assert.deepEqual(await sideways(page), []);
    const [confirmation] = await eventually("the confirmation mail", 30, async () => {
      const mails = mailsTo("ana@example.org");
      return mails.length ? mails : null;
    });
    assert.equal(confirmation.headers.subject, `Confirm: planned works in ${district}, ${CITY}`);
    assert.match(confirmation.body, new RegExp(`http://hub\\.test/public/${CITY}/subscriptions/confirm\\?token=`));
    // Works planned there while the address is not confirmed are not mailed to it.
    const now = Date.parse((await api.get("/reports/sla-breaches?limit=1")).now);
    const at = (hours) => new Date(now + hours * 3_600_000).toISOString();
    stack.cli(["maintenance", "add", "--tenant", CITY, "--scope", "district", "--target", district, "--from", at(96), "--until", at(98), "--reason", "More resurfacing"]);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(mailsTo("ana@example.org").length, 1, "the confirmation only");
    await page.context().close();
  });

  test("no request left the hub's origin and no console error", () => {
    const origin = new URL(stack.url).origin;
    assert.ok(requests.length > 10, `${requests.length} requests seen`);
    assert.deepEqual(requests.filter((u) => new URL(u).origin !== origin && !u.startsWith("data:")), []);
    assert.deepEqual(consoleErrors, []);
  });

  test("a published name that is no tenant is refused; a feed that turns 404 says the city has no public page", async () => {
    // Published, but no tenant of the hub: the page is not served.
    const res = await fetch(pageUrl(NO_SUCH_CITY));
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error, "this tenant has no public page");
    // A tenant the hub stops publishing while a resident has the page open.
    const page = await newPage("no-such-city", { record: false });
    await page.route("**/works.geojson", (r) => r.fulfill({ status: 404, contentType: "application/json", body: '{"error":"this tenant has no public page"}' }));
    await page.goto(pageUrl());
    await page.waitForSelector('body[data-state="failed"]');
    assert.equal(await page.textContent("#problem"), "This city has no public status page.");
    assert.equal(await page.locator("button.item").count(), 0);
    assert.equal(await page.locator("svg .marker").count(), 0);
    await page.context().close();
  });

  test("without a base map the items are still drawn; a failed refresh keeps the last data, with its age", async () => {
    // A hub without a base map answers map.geojson 404 (this stack has one).
    const page = await newPage("failures", { record: false });
    await page.route("**/map.geojson", (r) => r.fulfill({ status: 404, contentType: "application/json", body: '{"error":"no base map is configured (dashboard.base_map)"}' }));
    await page.goto(pageUrl());
    await page.waitForSelector('body[data-state="current"] button.item');
    assert.equal(await page.locator("svg .district").count(), 0);
    // As many markers as the feed places items (asked again until the page's answer and
    // this one are the same: each is shared for 10 s, and planned works may be added).
    const placed = await eventually("a marker for every placed item", 30, async () => {
      const placed = (await (await feed("works.geojson")).json()).features.filter((f) => f.geometry).length;
      if ((await page.locator("svg .marker").count()) === placed) return placed;
      await nudge(page);
      return null;
    }, 1500);
    assert.ok(placed > 0);
    const items = await page.locator("button.item").count();

    // The hub refuses this address for a while (120 at once, then 2 a second): the page
    // says so and keeps what it had. Asked faster than the allowance refills, the hub
    // keeps refusing until the page has met a refusal.
    let refused = null;
    let draining = true;
    const drain = (async () => {
      while (draining) {
        const answers = await Promise.all(
          Array.from({ length: 10 }, async () => {
            const r = await feed("works.geojson");
            await r.arrayBuffer();
            return r;
          }),
        );
        refused ??= answers.find((r) => r.status === 429) ?? null;
      }
    })();
    try {
      await eventually("the page told 429", 20, async () => {
        if (!refused) return false;
        if (await page.isVisible('#problem[data-status="429"]')) return true;
        await nudge(page);
        return false;
      }, 1100);
    } finally {
      draining = false;
      await drain;
    }
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);
    assert.equal(await page.textContent("#problem"), "The city's server is busy with too many requests.");
    assert.match(await page.textContent("#updated"), /^Showing what was known less than a minute ago \(updated \d{2}:\d{2}\)\. Trying again in \d+ s\.$/);
    assert.equal(await page.locator("button.item").count(), items);
    assert.equal(await page.getAttribute("body", "data-state"), "stale");

    // The network gone: said as such.
    await page.route("**/works.geojson", (r) => r.abort("internetdisconnected"));
    await shownEventually(page, "the page told the network is gone", 10, () => page.isVisible('#problem[data-status="0"]'));
    assert.equal(await page.textContent("#problem"), "The city's server could not be reached.");
    assert.equal(await page.locator("button.item").count(), items);
    await page.context().close();
  });
});
