// The administrators' Webhooks view in headless Chromium against a real hub, broker and
// database (the city of e2e-scenario.toml, whose rules open outages within a minute), and a
// receiver of this test's own on 127.0.0.1 that records every POST and answers what the
// test tells it (503, then 204; later 410). The hub is told to reach private addresses and
// to wait only a moment between attempts. The receiver checks each message's signature
// with node's crypto as the Standard Webhooks specification says, with the secret the view
// showed once: an independent check of the hub and of what the view shows.
// Screenshots: test-output/23-webhooks-*.png.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { apiClient, DASHBOARDS, eventually, PASSWORD, startStack } from "./stack.mjs";
import { colorsOf, contrast, DESKTOP, goTo, luminance, PHONE, sideways, smallText, timesIn, VIEWS } from "./layout.mjs";

const OUT = join(DASHBOARDS, "test-output");
const CHROMIUM = process.env.CITYHUB_CHROMIUM || "/usr/bin/chromium";
const WEBHOOKS = VIEWS.find((v) => v.slug === "webhooks");

let stack, browser, admin, api, receiver;
/** The subscription added through the form, and its secret as the view showed it. */
let hook, secret;
/** The outages acknowledged by the test: each is one message to the receiver. */
const acknowledged = [];
const consoleErrors = [];
const failedRequests = [];

/** What the receiver answers each POST (its status, and a body for a failure). */
const ANSWERS = { 503: "busy, try again later", 410: "this receiver is gone", 204: "" };

/** An HTTP server on 127.0.0.1 that keeps every request and answers `status`. */
function startReceiver() {
  const r = { status: 503, received: [], url: "" };
  r.server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const status = r.status;
      r.received.push({ method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), status });
      res.writeHead(status, status === 204 ? {} : { "Content-Type": "text/plain" });
      res.end(ANSWERS[status] || undefined);
    });
  });
  return new Promise((ok) =>
    r.server.listen(0, "127.0.0.1", () => {
      r.url = `http://127.0.0.1:${r.server.address().port}/cityhub-events`;
      ok(r);
    }),
  );
}

/**
 * Whether a request is signed with `secret` as the Standard Webhooks specification says:
 * HMAC-SHA256, keyed with the base64 after `whsec_`, of `{id}.{timestamp}.{body}`, sent as
 * `v1,` and its base64 among the space-separated signatures, with a timestamp within five
 * minutes of now.
 */
function verified(secret, { headers, body }) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !/^\d+$/.test(timestamp ?? "") || !signatures) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest();
  return signatures.split(" ").some((s) => {
    const [version, signature] = s.split(",");
    const given = Buffer.from(signature ?? "", "base64");
    return version === "v1" && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

async function newPage(who, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(`${who}: ${m.text()}`));
  page.on("pageerror", (e) => consoleErrors.push(`${who}: ${e.message}`));
  page.on("response", (r) => r.status() >= 400 && failedRequests.push(`${who}: ${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`));
  return page;
}

async function signedInPage(username, viewport = DESKTOP) {
  const page = await newPage(username, viewport);
  await page.goto(stack.url);
  await page.getByLabel("User name").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForSelector("header.top");
  return page;
}

const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`) });

/** Acknowledges an open outage the scenario's rules opened: one `outage.acknowledged`. */
async function acknowledgeOne() {
  const outage = await eventually("an open outage to acknowledge", 90, async () => (await api.get("/outages?state=open")).items.find((o) => !acknowledged.includes(o.id)));
  await api.post(`/outages/${outage.id}/ack`);
  acknowledged.push(outage.id);
  return outage;
}

const card = () => admin.locator(`.webhook-list li[data-id="${hook.id}"]`);

describe("webhooks: an administrator subscribes a receiver, which gets signed messages", () => {
  before(async () => {
    mkdirSync(OUT, { recursive: true });
    receiver = await startReceiver();
    stack = await startStack({
      scenario: join(DASHBOARDS, "tests/e2e-scenario.toml"),
      rulesFile: join(DASHBOARDS, "tests/e2e-rules.toml"),
      users: [
        ["olga", "admin"],
        ["otto", "operator"],
        ["vera", "viewer"],
      ],
      out: join(OUT, "webhooks"),
      // The receiver is on this machine, and a failed attempt is tried again within 2 s.
      hubEnv: {
        CITYHUB_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES: "true",
        CITYHUB_WEBHOOKS_RETRY_FIRST_S: "0.5",
        CITYHUB_WEBHOOKS_RETRY_MAX_S: "2",
      },
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
    receiver?.server.close();
  });

  test("only administrators see the view; the API refuses the others", async () => {
    for (const who of ["otto", "vera"]) {
      const page = await signedInPage(who);
      await page.waitForSelector(".map-page:not([hidden])");
      const links = await page.$$eval("header.top nav a", (as) => as.map((a) => a.textContent));
      assert.ok(links.includes("Map") && !links.includes("Webhooks"), `${who}: ${links.join(", ")}`);
      // Its address shows them their first view; nothing of the view is made for them.
      await page.goto(`${stack.url}/webhooks`);
      await page.waitForSelector(".map-page:not([hidden])");
      assert.equal(await page.locator(".webhooks-page").count(), 0);
      const client = await apiClient(stack.url, who);
      for (const [method, path, body] of [["GET", "/webhooks"], ["POST", "/webhooks", { url: receiver.url }]]) {
        const r = await client.answer(method, path, body);
        assert.equal(r.status, 403, `${who}: ${method} ${path}: ${r.text}`);
        assert.equal(typeof r.json?.error, "string");
      }
      await page.context().close();
    }
    admin = await signedInPage("olga");
    const links = await admin.$$eval("header.top nav a", (as) => as.map((a) => a.textContent));
    assert.deepEqual(links, VIEWS.map((v) => v.label));
    await goTo(admin, WEBHOOKS);
    assert.match(await admin.textContent(".webhook-list"), /^No webhooks yet\./);
    await admin.waitForSelector(".webhook-messages .hint");
  });

  test("the form shows the API's refusal in its words", async () => {
    await admin.getByRole("button", { name: "Add webhook" }).click();
    const form = admin.locator("form.webhook-form");
    await form.waitFor();
    // One municipality: none to choose.
    assert.equal(await form.getByLabel("Municipality").isVisible(), false);
    // The inventory's districts to choose from.
    const districts = await form.locator('input[name="districts"]').evaluateAll((is) => is.map((i) => i.value));
    const inventory = [...new Set(stack.devices.map((d) => d.district).filter(Boolean))].sort((a, b) => a.localeCompare(b));
    assert.deepEqual(districts, inventory);
    await form.getByLabel("URL").fill("ftp://example.org/events");
    await form.getByRole("button", { name: "Add webhook" }).click();
    await form.locator(".error").filter({ hasText: "Not added:" }).waitFor();
    assert.equal(await form.locator(".error").textContent(), "Not added: a webhook URL is http or https, not ftp");
    await shot(admin, "23-webhooks-form-1440x900");
    // The form on a phone: one column, nothing across, nothing small.
    await admin.setViewportSize(PHONE);
    await form.locator(".error").scrollIntoViewIfNeeded();
    await shot(admin, "23-webhooks-form-390x844");
    assert.deepEqual(await sideways(admin), [], "the form at 390x844");
    assert.deepEqual(await smallText(admin), [], "the form at 390x844");
    await admin.setViewportSize(DESKTOP);
    // Nothing was added.
    assert.deepEqual((await api.get("/webhooks")).items, []);
  });

  test("added through the form: the secret shown once verifies what the receiver gets", async () => {
    const form = admin.locator("form.webhook-form");
    await form.getByLabel("URL").fill(receiver.url);
    assert.equal(await form.locator(".error").textContent(), "", "the refusal goes once the form changes");
    await form.getByLabel("Description").fill("Asset management system");
    await form.locator('input[name="event_types"][value="outage.acknowledged"]').check();
    await admin.context().grantPermissions(["clipboard-read", "clipboard-write"]);
    await form.getByRole("button", { name: "Add webhook" }).click();
    const box = admin.locator(".secret-box");
    await box.waitFor();
    secret = await box.getByLabel("Secret").inputValue();
    assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
    assert.match(await box.textContent(), /only time the secret is shown: the hub will not show it again\. Give it to the receiver's Standard Webhooks library/);
    await box.getByRole("button", { name: "Copy" }).click();
    await box.locator(".copied").filter({ hasText: "Copied." }).waitFor();
    assert.equal(await admin.evaluate(() => navigator.clipboard.readText()), secret);
    assert.ok(await form.isHidden(), "the form closes");
    await shot(admin, "23-webhooks-secret-1440x900");

    // The hub lists it with its filters, and never the secret again.
    const list = await api.get("/webhooks");
    assert.equal(list.items.length, 1);
    hook = list.items[0];
    assert.ok(!JSON.stringify(list).includes(secret.slice(6)), "the list holds no secret");
    assert.ok(!JSON.stringify(await api.get(`/webhooks/${hook.id}`)).includes(secret.slice(6)));
    assert.equal(hook.url, receiver.url);
    assert.equal(hook.description, "Asset management system");
    assert.deepEqual(hook.event_types, ["outage.acknowledged"]);
    assert.equal(hook.kinds, null);
    // The view: its URL, description, municipality, filters in words, status, counts.
    await card().waitFor();
    assert.equal(await card().locator(".title").textContent(), receiver.url);
    assert.equal(await card().locator(".description").textContent(), "Asset management system");
    assert.equal(await card().locator(".filters").textContent(), `${stack.tenant} · Events: outage acknowledged`);
    assert.equal(await card().locator(".webhook-status").textContent(), "✓ active");
    assert.equal(await card().locator(".counts").textContent(), "0 pending · 0 delivered");
    // Stored: the secret is gone from the page, for good.
    await box.getByRole("button", { name: "Done: I have stored it" }).click();
    await box.waitFor({ state: "detached" });
    assert.ok(!(await admin.content()).includes(secret.slice(6)), "the secret is nowhere on the page");
  });

  test("while the receiver answers 503 the view shows the webhook retrying, with each failed attempt", async () => {
    const outage = await acknowledgeOne();
    await eventually("two failed attempts at the receiver", 30, () => receiver.received.length >= 2);
    await card().and(admin.locator('[data-status="retrying"]')).waitFor({ timeout: 15_000 });
    const status = await card().locator(".webhook-status").textContent();
    assert.match(status, /^↻ retrying \d+ attempts? failed since \d{2}:\d{2}(, .+)?; next attempt at \d{2}:\d{2}(, .+)?$/);
    assert.match(await card().locator(".counts").textContent(), /^1 pending · 0 delivered$/);
    // Chosen from the keyboard: its messages beside the list.
    await card().focus();
    await admin.keyboard.press("Enter");
    await admin.waitForSelector(`.webhook-list li[data-id="${hook.id}"][aria-current="true"]`);
    const message = admin.locator(".webhook-messages li.message").first();
    await message.locator("li.attempt").nth(1).waitFor({ timeout: 10_000 });
    assert.equal(await admin.locator(".webhook-messages h2").textContent(), `Messages to ${receiver.url}`);
    assert.equal(await message.getAttribute("data-delivered"), "false");
    assert.equal(await message.locator(".head strong").textContent(), "outage acknowledged");
    assert.match(await message.locator(".subject").textContent(), new RegExp(`^${outage.device} · ${outage.kind.replace(/_/g, " ")} · .*outage ${outage.id}$`));
    assert.match(await message.locator(".times").textContent(), /^queued \d{2}:\d{2}(, .+)? · pending$/);
    const attempts = await message.locator("li.attempt").evaluateAll((as) =>
      as.map((a) => ({ time: a.querySelector("time").textContent, answer: a.querySelector(".answer").textContent, error: a.querySelector(".error-text")?.textContent, took: a.querySelector(".took").textContent })),
    );
    for (const a of attempts) {
      assert.match(a.time, /^\d{2}:\d{2}(, .+)?$/);
      assert.equal(a.answer, "HTTP 503");
      assert.equal(a.error, `the receiver answered 503: ${ANSWERS[503]}`);
      assert.match(a.took, /^\d+ ms$|^[\d.]+ s$/);
    }
    assert.deepEqual((await timesIn(admin, ".webhooks-page")).wrong, []);
    await shot(admin, "23-webhooks-retrying-1440x900");
  });

  test("once the receiver answers 204 the view shows the messages delivered", async () => {
    receiver.status = 204;
    await card().and(admin.locator('[data-status="active"]')).waitFor({ timeout: 15_000 });
    assert.equal(await card().locator(".counts").textContent(), "0 pending · 1 delivered");
    const message = admin.locator(".webhook-messages li.message").first();
    await message.and(admin.locator('[data-delivered="true"]')).waitFor({ timeout: 10_000 });
    assert.match(await message.locator(".times").textContent(), /^queued \d{2}:\d{2}(, .+)? · delivered \d{2}:\d{2}(, .+)?$/);
    const newest = message.locator("li.attempt").first();
    assert.equal(await newest.locator(".answer").textContent(), "HTTP 204");
    assert.equal(await newest.locator(".error-text").count(), 0);
    assert.ok((await message.locator("li.attempt").count()) >= 3, "the failed attempts are kept");

    // What the receiver got: one message, sent at every attempt with the same id, signed
    // with the secret the view showed.
    const got = receiver.received;
    assert.ok(got.length >= 3 && got.at(-1).status === 204 && got.slice(0, -1).every((r) => r.status === 503), got.map((r) => r.status).join(" "));
    for (const r of got) {
      assert.equal(r.method, "POST");
      assert.equal(r.path, "/cityhub-events");
      assert.match(r.headers["content-type"], /^application\/json/);
      assert.ok(verified(secret, r), `${r.headers["webhook-id"]}: the signature does not verify with the secret shown`);
      // A check that can fail: the same signature does not verify another body or key.
      assert.ok(!verified(secret, { ...r, body: `${r.body} ` }));
      assert.ok(!verified(`whsec_${Buffer.alloc(24, 7).toString("base64")}`, r));
    }
    assert.equal(new Set(got.map((r) => r.headers["webhook-id"])).size, 1, "one message, the same id at every attempt");
    const body = JSON.parse(got.at(-1).body);
    assert.equal(body.type, "outage.acknowledged");
    assert.equal(body.data.id, acknowledged[0]);
    assert.equal(body.data.actor, "olga");
    assert.equal(got.at(-1).headers["webhook-id"], (await api.get(`/webhooks/${hook.id}/messages`)).items[0].webhook_id);

    await shot(admin, "23-webhooks-1440x900");
    assert.deepEqual(await sideways(admin), []);
    assert.deepEqual(await smallText(admin), []);
    assert.deepEqual((await timesIn(admin, ".webhooks-page")).wrong, []);
    // A phone: the list, then the chosen webhook's messages under it.
    await admin.setViewportSize(PHONE);
    await admin.locator(".webhooks").evaluate((e) => e.scrollTo(0, 0));
    await shot(admin, "23-webhooks-390x844");
    assert.deepEqual(await sideways(admin), [], "390x844");
    assert.deepEqual(await smallText(admin), [], "390x844");
    // The dark scheme: legible, its own colors.
    await admin.emulateMedia({ colorScheme: "dark" });
    await admin.locator(".webhooks").evaluate((e) => e.scrollTo(0, 0));
    await shot(admin, "23-webhooks-dark-390x844");
    const colors = await colorsOf(admin, [".webhooks-page .toolbar h1", ".webhooks-page .card .title", ".webhook-messages .message strong"]);
    assert.equal(Object.keys(colors).length, 3, JSON.stringify(colors));
    for (const [sel, { color, background }] of Object.entries(colors)) {
      assert.ok(luminance(background) < 0.05 && luminance(color) > 0.5 && contrast(color, background) >= 7, `${sel}: ${color} on ${background}`);
    }
    await admin.emulateMedia({ colorScheme: "light" });
    // A window just too wide to fold the header into its menu: the administrator's extra
    // view still fits beside the others.
    for (const width of [861, 1024]) {
      await admin.setViewportSize({ width, height: 800 });
      assert.deepEqual(await sideways(admin), [], `${width} px`);
    }
    await admin.setViewportSize(DESKTOP);
  });

  test("a receiver that answers 410 Gone disables it; enabled again, it gets what waited", async () => {
    receiver.status = 410;
    const before = receiver.received.length;
    await acknowledgeOne();
    await card().and(admin.locator('[data-status="disabled"]')).waitFor({ timeout: 15_000 });
    assert.match(await card().locator(".webhook-status").textContent(), /^✕ disabled since \d{2}:\d{2}(, .+)?: the receiver answered 410 Gone: it wants no more messages$/);
    assert.equal(receiver.received.length, before + 1, "no attempt after the 410");
    await shot(admin, "23-webhooks-disabled-1440x900");
    receiver.status = 204;
    await card().getByRole("button", { name: "Enable again" }).click();
    await card().and(admin.locator('[data-status="active"]')).waitFor({ timeout: 15_000 });
    await eventually("the waiting message delivered", 15, async () => {
      const text = await card().locator(".counts").textContent();
      return text === "0 pending · 2 delivered";
    });
    const last = receiver.received.at(-1);
    assert.equal(last.status, 204);
    assert.ok(verified(secret, last));
    assert.equal(JSON.parse(last.body).data.id, acknowledged[1]);
  });

  test("removed after a confirmation that says what it does: nothing more is sent", async () => {
    await card().getByRole("button", { name: "Remove…" }).click();
    const dialog = admin.locator("dialog");
    assert.equal(await dialog.locator("h2").textContent(), `Remove the webhook to ${receiver.url}?`);
    assert.match(await dialog.locator(".note").textContent(), /^Nothing more is sent to it/);
    await shot(admin, "23-webhooks-remove-1440x900");
    await dialog.getByRole("button", { name: "Remove" }).click();
    await card().waitFor({ state: "detached" });
    assert.match(await admin.textContent(".webhook-list"), /^No webhooks yet\./);
    assert.equal(await admin.locator(".webhook-messages li.message").count(), 0, "the removed one's messages are no longer shown");
    assert.equal((await api.get(`/webhooks/${hook.id}`)).status, "removed");
    // A message is queued by the transaction that records its event: none for this event
    // once the acknowledgement is answered, so none will ever be sent.
    const messages = (await api.get(`/webhooks/${hook.id}/messages`)).items.length;
    await acknowledgeOne();
    assert.equal((await api.get(`/webhooks/${hook.id}/messages`)).items.length, messages);
  });

  test("no console error but the refusal the form showed", () => {
    assert.deepEqual(failedRequests, ["olga: 400 POST /api/v1/webhooks"]);
    assert.equal(consoleErrors.length, 1, consoleErrors.join("\n"));
    assert.match(consoleErrors[0], /^olga: Failed to load resource: the server responded with a status of 400/);
  });
});
