// What the end-to-end tests check of a view as shown: nothing wider than the window, no
// text under 13 px, times without fractions of a second, and the colors of a scheme. Each
// check answers a list of what is wrong (empty when nothing is), so a failure names it.

import { inflateSync } from "node:zlib";

/**
 * The views, as the header names them, and what says each one has drawn its data. `admin`:
 * shown to administrators alone (the others' header has no link to it).
 */
export const VIEWS = [
  { path: "/map", label: "Map", slug: "map", ready: ".map-page:not([hidden]) #map[data-drawn]" },
  { path: "/outages", label: "Outages", slug: "outages", ready: ".outages-page[data-loaded]:not([hidden])" },
  { path: "/work-orders", label: "Work orders", slug: "work-orders", ready: ".workorders-page[data-loaded]:not([hidden])" },
  { path: "/kpis", label: "KPIs", slug: "kpis", ready: ".kpi-page[data-loaded]:not([hidden])" },
  { path: "/transport", label: "Transport", slug: "transport", ready: ".transport-page:not([hidden]) tbody tr" },
  { path: "/reports", label: "Reports", slug: "reports", ready: ".reports-page[data-loaded]:not([hidden])" },
  { path: "/webhooks", label: "Webhooks", slug: "webhooks", ready: ".webhooks-page[data-loaded]:not([hidden])", admin: true },
];
export const DESKTOP = { width: 1440, height: 900 };
export const PHONE = { width: 390, height: 844 };

/**
 * Goes to a view the way a person does: with its link in the header, opening the menu
 * first when the header has folded it away (a phone). Fails when the link cannot be seen.
 */
export async function goTo(page, view) {
  const link = page.locator("header.top nav").getByRole("link", { name: view.label, exact: true });
  if (!(await link.isVisible())) await page.locator("header.top .menu-toggle").click({ timeout: 5_000 });
  await link.click({ timeout: 5_000 });
  await page.waitForFunction((path) => location.pathname === path, view.path, { timeout: 5_000 });
  await page.waitForSelector(view.ready, { timeout: 20_000 });
}

/**
 * What makes the page wider than its window: the document's own scroll width, and any
 * element shown beyond the window's sides that no scrolling (or clipping) box of its own,
 * itself inside the window, holds.
 */
export function sideways(page) {
  return page.evaluate(() => {
    const name = (e) => e.tagName.toLowerCase() + (e.id ? `#${e.id}` : "") + (typeof e.className === "string" && e.className ? `.${e.className.trim().split(/\s+/).join(".")}` : "");
    const w = window.innerWidth;
    const out = [];
    const sw = document.scrollingElement.scrollWidth;
    if (sw > w) out.push(`the page is ${sw} px wide in a ${w} px window`);
    const inside = (r) => r.left >= -1 && r.right <= w + 1;
    for (const e of document.body.querySelectorAll("*")) {
      const r = e.getBoundingClientRect();
      if (!r.width || !r.height || inside(r)) continue;
      if (!e.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
      let held = false;
      for (let p = e.parentElement; p && p !== document.body && !held; p = p.parentElement) {
        held = getComputedStyle(p).overflowX !== "visible" && inside(p.getBoundingClientRect());
      }
      if (!held) out.push(`${name(e)} spans ${Math.round(r.left)}..${Math.round(r.right)} px`);
    }
    return out.slice(0, 10);
  });
}

/** Every element shown whose computed font size is under `min` px. */
export function smallText(page, min = 13) {
  return page.evaluate(
    (min) => {
      const name = (e) => e.tagName.toLowerCase() + (e.id ? `#${e.id}` : "") + (typeof e.className === "string" && e.className ? `.${e.className.trim().split(/\s+/).join(".")}` : "");
      const out = [];
      for (const e of document.body.querySelectorAll("*")) {
        const r = e.getBoundingClientRect();
        if (!r.width || !r.height || !e.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
        const size = parseFloat(getComputedStyle(e).fontSize);
        if (size < min) out.push(`${name(e)} at ${size} px: "${(e.textContent ?? "").trim().slice(0, 40)}"`);
      }
      return out.slice(0, 10);
    },
    min,
  );
}

/** A time as the lists write it: "18:04", or "18:04, 22 Nov" another day. */
export const TIME = /^\d{2}:\d{2}(, .+)?$/;
/** What a time must never show: seconds' fractions, an RFC 3339 stamp, a 12-hour clock. */
const NOT_A_TIME_FOR_PEOPLE = [/\d:\d{2}[.,]\d/, /\d{2}:\d{2}:\d{2}[.,]\d/, /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/, /\d{1,2}:\d{2}\s?[AP]M\b/i, /\.\d{4,}Z?\b/];

/** What is wrong with the times shown in `selector`: each `<time>`'s text, and all the text. */
export async function timesIn(page, selector) {
  const { times, text } = await page.evaluate((selector) => {
    const box = document.querySelector(selector);
    return { times: [...(box?.querySelectorAll("time") ?? [])].map((t) => t.textContent), text: box?.innerText ?? "" };
  }, selector);
  const out = times.filter((t) => !TIME.test(t)).map((t) => `time "${t}"`);
  for (const re of NOT_A_TIME_FOR_PEOPLE) {
    const m = text.match(re);
    if (m) out.push(`"${m[0]}" in the text`);
  }
  return { count: times.length, wrong: out };
}

/** Relative luminance (WCAG) of [r, g, b] in 0..255. */
export function luminance([r, g, b]) {
  const c = [r, g, b].map((v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
  return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
}

export function contrast(a, b) {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

/**
 * The text color and the background behind it (the first ancestor's that is not
 * transparent) of the first element shown that matches each selector, as [r, g, b].
 */
export function colorsOf(page, selectors) {
  return page.evaluate((selectors) => {
    const rgb = (s) => s.match(/[\d.]+/g).map(Number);
    const out = {};
    for (const sel of selectors) {
      const e = [...document.querySelectorAll(sel)].find((x) => x.checkVisibility());
      if (!e) continue;
      let bg = null;
      for (let p = e; p && !bg; p = p.parentElement) {
        const c = rgb(getComputedStyle(p).backgroundColor);
        if (c.length < 4 || c[3] > 0.9) bg = c.slice(0, 3);
      }
      out[sel] = { color: rgb(getComputedStyle(e).color).slice(0, 3), background: bg ?? [255, 255, 255] };
    }
    return out;
  }, selectors);
}

/** One pixel of the page as shown (canvases included), [r, g, b], from a 1x1 screenshot. */
export async function pixel(page, x, y) {
  const png = await page.screenshot({ clip: { x, y, width: 1, height: 1 } });
  const data = [];
  for (let pos = 8; pos < png.length; ) {
    const len = png.readUInt32BE(pos);
    if (png.toString("ascii", pos + 4, pos + 8) === "IDAT") data.push(png.subarray(pos + 8, pos + 8 + len));
    pos += 12 + len;
  }
  // One pixel in one row: whatever the row's filter, its bytes are the pixel's (the
  // filters only add neighbours, and it has none). Byte 0 is the filter.
  const raw = inflateSync(Buffer.concat(data));
  return [raw[1], raw[2], raw[3]];
}

/**
 * The opaque pixels of the charts (uPlot's canvases) in `selector`, counted: near black
 * (what uPlot's own black labels would be), and light (labels in a dark scheme).
 */
export function chartInk(page, selector) {
  return page.evaluate((selector) => {
    let black = 0, light = 0, dark = 0;
    for (const c of document.querySelectorAll(`${selector} .uplot canvas`)) {
      const { data } = c.getContext("2d").getImageData(0, 0, c.width, c.height);
      for (let k = 0; k < data.length; k += 4) {
        if (data[k + 3] < 200) continue;
        const l = (0.2126 * data[k] + 0.7152 * data[k + 1] + 0.0722 * data[k + 2]) / 255;
        if (l < 0.08) black++;
        if (l < 0.3) dark++;
        if (l > 0.75) light++;
      }
    }
    return { black, dark, light };
  }, selector);
}
