// The screen as people see it, checked on the suite's stack (registered by e2e.test.mjs
// inside its suite, after the views have data): times on a 24-hour clock to the minute and
// ages on the hub's clock; the tab's title counting the open outages; every view at
// 1440x900 and at 390x844 without sideways scrolling or text under 13 px, each reachable
// from the header; both color schemes, the map and the charts included. Screenshots:
// 11- (1440x900) and 12- (390x844), 13- and 14- the same in the dark scheme.

import { test } from "node:test";
import assert from "node:assert/strict";
import { eventually } from "./stack.mjs";
import { chartInk, colorsOf, contrast, DESKTOP, goTo, luminance, PHONE, pixel, sideways, smallText, timesIn, VIEWS } from "./layout.mjs";

/** `ctx`: the suite's `stack`, `operator` (an admin's page), `api` (an admin's client), `newPage(who, viewport)`, `shot(page, name)`. */
export function screenTests(ctx) {
  test("times are on a 24-hour clock to the minute, and ages count on the hub's clock", async () => {
    await ctx.operator.setViewportSize(DESKTOP);
    await goTo(ctx.operator, VIEWS[1]);
    const list = await timesIn(ctx.operator, ".outages-page");
    assert.ok(list.count > 0, "the outage list shows times");
    assert.deepEqual(list.wrong, []);
    // To the second in the tooltip, never a fraction.
    for (const title of await ctx.operator.$$eval(".outages-page time", (ts) => ts.map((t) => t.title))) {
      assert.match(title, /\d{2}:\d{2}:\d{2}$/);
    }
    // The hub runs on the simulators' clock, weeks from the browser's: counted on the
    // browser's, every outage would be days old (or not yet open).
    const ages = await ctx.operator.$$eval(".outages-page .age", (as) => as.map((a) => a.textContent));
    assert.ok(ages.length > 0);
    for (const age of ages) assert.match(age, /^(just now|(\d+ h \d{2} min|\d+ min \d{2} s|\d+ s) ago)$/);
    // The asset panel: the last report and its outages' times.
    const row = ctx.operator.locator("tr[data-outage-id]").first();
    const device = await row.getAttribute("data-device");
    await row.locator("td").first().click();
    await ctx.operator.waitForSelector(`#panel[data-device="${device}"] .events time`);
    const panel = await timesIn(ctx.operator, "#panel");
    assert.ok(panel.count >= 2, `${panel.count} times in the panel`);
    assert.deepEqual(panel.wrong, []);
  });

  test("the tab's title counts the open outages by severity, live", async () => {
    const open = async () => {
      const [o, a, clock] = await Promise.all(["open", "acknowledged"].map((state) => ctx.api.get(`/outages?state=${state}&limit=1000`)).concat(ctx.api.get("/reports/sla-breaches?limit=1")));
      const now = Date.parse(clock.now);
      return { now, items: [...o.items, ...a.items].filter((x) => !(x.shelved_until && Date.parse(x.shelved_until) > now)) };
    };
    // The title says what the API says (both asked again until they agree).
    const agrees = async () => {
      const { items } = await open();
      const counts = ["critical", "major", "minor"].map((s) => [s, items.filter((x) => x.severity === s).length]).filter(([, n]) => n);
      const want = counts.length ? `(${counts.map(([s, n]) => `${n} ${s}`).join(", ")}) ` : "";
      const title = await ctx.operator.title();
      return title.startsWith(want) && (want || !title.startsWith("(")) ? title : null;
    };
    const title = await eventually("the title counts the open outages", 10, agrees);
    assert.match(title, /^\(\d+ (critical|major|minor)(, \d+ (critical|major|minor))*\) \S.* · cityhub$/);
    // Shelving one takes it out of the count, unshelving puts it back: each within 5 s.
    const { now, items } = await open();
    const target = items[0];
    await ctx.api.post(`/outages/${target.id}/shelve`, { until: new Date(now + 8 * 3600_000).toISOString(), reason: "the title's count" });
    await eventually("the title after a shelving", 5, agrees);
    await ctx.api.post(`/outages/${target.id}/unshelve`);
    await eventually("the title after an unshelving", 5, agrees);
  });

  test("every view fits a desktop and a phone, every view is reachable, no text under 13 px", async () => {
    // The sign-in page, before anyone signs in.
    for (const size of [DESKTOP, PHONE]) {
      const page = await ctx.newPage("sign-in", size);
      await page.goto(ctx.stack.url);
      await page.waitForSelector("form.login");
      await ctx.shot(page, `${size === DESKTOP ? 11 : 12}-${size.width}x${size.height}-sign-in`);
      assert.deepEqual(await sideways(page), [], `sign-in at ${size.width}x${size.height}`);
      assert.deepEqual(await smallText(page), [], `sign-in at ${size.width}x${size.height}`);
      await page.context().close();
    }
    if (await ctx.operator.isVisible("#panel")) await ctx.operator.click("#panel .close");
    for (const size of [DESKTOP, PHONE]) {
      const tag = `${size.width}x${size.height}`;
      await ctx.operator.setViewportSize(size);
      for (const view of VIEWS) {
        await goTo(ctx.operator, view);
        if (view.slug === "map") {
          // The whole city in this window (the view was left on one asset).
          await ctx.operator.getByRole("button", { name: "Whole city" }).click();
          await ctx.operator.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))));
        }
        await ctx.shot(ctx.operator, `${size === DESKTOP ? 11 : 12}-${tag}-${view.slug}`);
        assert.equal(await ctx.operator.getAttribute(`header.top nav a[href="${view.path}"]`, "aria-current"), "page");
        assert.equal(await ctx.operator.getAttribute("header.top .menu-toggle", "aria-expanded"), "false", "a choice closes the menu");
        assert.deepEqual(await sideways(ctx.operator), [], `${view.label} at ${tag}`);
        assert.deepEqual(await smallText(ctx.operator), [], `${view.label} at ${tag}`);
        assert.deepEqual((await timesIn(ctx.operator, "main")).wrong, [], `${view.label} at ${tag}`);
      }
    }
    // On the phone: the menu, open.
    assert.ok(!(await ctx.operator.isVisible("header.top nav")), "on a phone the views are behind the menu");
    await ctx.operator.click("header.top .menu-toggle");
    await ctx.operator.waitForSelector("header.top nav a", { state: "visible" });
    await ctx.shot(ctx.operator, "12-390x844-menu");
    assert.deepEqual(await sideways(ctx.operator), []);
    assert.deepEqual(await smallText(ctx.operator), []);
    await ctx.operator.keyboard.press("Escape");
    assert.equal(await ctx.operator.getAttribute("header.top .menu-toggle", "aria-expanded"), "false");
    // An asset's panel: over the view, as wide as the screen.
    await goTo(ctx.operator, VIEWS[1]);
    const row = ctx.operator.locator("tr[data-outage-id]").first();
    const device = await row.getAttribute("data-device");
    await row.locator("td").first().click();
    await ctx.operator.waitForSelector(`#panel[data-device="${device}"] dl dt`);
    await ctx.operator.waitForSelector("#panel .uplot");
    await ctx.shot(ctx.operator, "12-390x844-asset-panel");
    assert.equal(Math.round((await ctx.operator.locator("#panel").boundingBox()).width), PHONE.width);
    assert.deepEqual(await sideways(ctx.operator), []);
    assert.deepEqual(await smallText(ctx.operator), []);
    // Choosing a view closes it.
    await goTo(ctx.operator, VIEWS[0]);
    assert.ok(!(await ctx.operator.isVisible("#panel")), "the panel closes when a view is chosen");
  });

  test("the colors follow the browser's scheme, the map and the charts too", async () => {
    const page = ctx.operator;
    /** Text and background of what each view shows, legible and of the scheme. */
    const check = async (scheme, where) => {
      const colors = await colorsOf(page, ["body", ".page:not([hidden]) .toolbar h1", ".page:not([hidden]) .legend-title", "tr[data-outage-id] td", ".page:not([hidden]) .card .title", ".page:not([hidden]) .kpi .value", "#panel:not([hidden]) dd"]);
      assert.ok(Object.keys(colors).length >= 2, `${where}: ${JSON.stringify(colors)}`);
      for (const [sel, { color, background }] of Object.entries(colors)) {
        const what = `${where}, ${sel}: ${color} on ${background}`;
        if (scheme === "dark") assert.ok(luminance(background) < 0.05 && luminance(color) > 0.5, `${what}: not light on dark`);
        else assert.ok(luminance(background) > 0.8 && luminance(color) < 0.05, `${what}: not dark on light`);
        assert.ok(contrast(color, background) >= 7, `${what}: contrast ${contrast(color, background).toFixed(1)}`);
      }
      if (!(await page.isVisible(".map-page:not([hidden]) #map"))) return;
      // The map's base (the city's tiles, dimmed in the dark) in its top left corner.
      const box = await page.locator(".map-page #map").boundingBox();
      const base = luminance(await pixel(page, box.x + 4, box.y + 4));
      assert.ok(scheme === "dark" ? base < 0.1 : base > 0.5, `${where}: the map's base has luminance ${base.toFixed(2)}`);
    };
    /** The asset panel's chart: labels dark on light, or light on dark (never uPlot's black). */
    const chart = async (scheme) => {
      const ink = await eventually(`the chart's labels in the ${scheme} scheme`, 10, async () => {
        const i = await chartInk(page, "#panel");
        return (scheme === "dark" ? i.light : i.dark) > 30 ? i : null;
      });
      if (scheme === "dark") assert.equal(ink.black, 0, `black on the dark chart: ${JSON.stringify(ink)}`);
    };
    await page.setViewportSize(DESKTOP);
    await page.emulateMedia({ colorScheme: "light" });
    for (const view of VIEWS.slice(0, 2)) {
      await goTo(page, view);
      await check("light", `${view.label}, light`);
    }
    const row = page.locator("tr[data-outage-id]").first();
    await row.locator("td").first().click();
    await page.waitForSelector("#panel:not([hidden]) .uplot");
    await chart("light");
    // The scheme changes under an open page: everything follows, canvases included.
    await page.emulateMedia({ colorScheme: "dark" });
    await chart("dark");
    await check("dark", "the panel, dark");
    for (const view of VIEWS) {
      await goTo(page, view);
      await ctx.shot(page, `13-dark-1440x900-${view.slug}`);
      await check("dark", `${view.label}, dark`);
    }
    await page.setViewportSize(PHONE);
    for (const view of VIEWS.slice(0, 2)) {
      await goTo(page, view);
      await ctx.shot(page, `14-dark-390x844-${view.slug}`);
      await check("dark", `${view.label}, dark, phone`);
    }
    await row.locator("td").first().click();
    await page.waitForSelector("#panel:not([hidden]) .uplot");
    await chart("dark");
    await ctx.shot(page, "14-dark-390x844-asset-panel");
    await page.emulateMedia({ colorScheme: "light" });
    await page.setViewportSize(DESKTOP);
  });
}
