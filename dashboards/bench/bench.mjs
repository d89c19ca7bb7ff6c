// The map's benchmark, in headless Chromium: a city of 100,000 lamps (plus cabinets),
// the built app served with a stand-in of the hub's API that answers what the hub answers
// (`/api/v1/state` columns, `/api/v1/events` server-sent events, the base map). Measured:
//   first_render_ms: from navigation to the first frame with every asset drawn on the
//                    whole-city view (fetching and parsing the state included);
//   frame_p95_ms:    the 95th percentile of the time between animation frames while
//                    1,000 lamp state changes a second stream in for BENCH_SECONDS.
// Last line: RESULT first_render_ms=N frame_p95_ms=N
//
// BENCH_HUB_URL=http://127.0.0.1:8080 BENCH_USER=... BENCH_PASSWORD=... measures a running
// hub instead (its inventory, its live events at whatever rate its devices make them).

import { createServer } from "node:http";
import { readFileSync, existsSync, statSync, mkdirSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import { chromium } from "playwright-core";

const DIST = resolve(import.meta.dirname, "../dist");
const OUT = resolve(import.meta.dirname, "../bench-output");
const LAMPS = Number(process.env.BENCH_LAMPS || 100_000);
const RATE = Number(process.env.BENCH_RATE || 1000);
const SECONDS = Number(process.env.BENCH_SECONDS || 10);
const CHROMIUM = process.env.CITYHUB_CHROMIUM || "/usr/bin/chromium";

if (!existsSync(join(DIST, "index.html"))) {
  console.error("dashboards/dist is missing: run `npm run build` first.");
  process.exit(1);
}

// --- A city: a grid of streets 120 m apart, a lamp every 30 m, a cabinet per 50 lamps. ---
const LON0 = -9.2, LAT0 = 38.68;
const M_LAT = 1 / 111_320, M_LON = 1 / (111_320 * Math.cos((LAT0 * Math.PI) / 180));
const side = Math.ceil(Math.sqrt(LAMPS / 8)); // blocks per side: 8 lamps per block corner run
const ids = [], kinds = [], lon = [], lat = [], state = [], on = [], dim = [];
// The hub's legend of effective states, in its order (docs/api.md, "Device states").
const STATES = ["outage_critical", "outage_major", "outage_minor", "no_supply", "maintenance", "offline", "stale", "never_heard", "fault", "override", "dimmed", "on", "off", "ok"];
for (let i = 0; i < LAMPS; i++) {
  const street = Math.floor(i / (side * 4));
  const along = i % (side * 4);
  const horizontal = street % 2 === 0;
  const s = Math.floor(street / 2) * 120, a = along * 30;
  const x = horizontal ? a : s, y = horizontal ? s : a;
  ids.push(`L${String(i).padStart(6, "0")}`);
  kinds.push(0);
  lon.push(+(LON0 + x * M_LON).toFixed(7));
  lat.push(+(LAT0 + y * M_LAT).toFixed(7));
  state.push(STATES.indexOf("on"));
  on.push(true);
  dim.push(100);
}
for (let c = 0; c < LAMPS / 50; c++) {
  const i = c * 50;
  ids.push(`C${String(c).padStart(5, "0")}`);
  kinds.push(1);
  lon.push(lon[i] + 5 * M_LON);
  lat.push(lat[i] + 5 * M_LAT);
  state.push(STATES.indexOf("ok"));
  on.push(true);
  dim.push(null);
}
const n = ids.length;
const stateJson = JSON.stringify({
  count: n,
  tenants: ["benchcity"],
  kinds: ["light", "cabinet", "meter", "vehicle"],
  states: STATES,
  ext_id: ids,
  tenant: new Array(n).fill(0),
  kind: kinds,
  lon,
  lat,
  state,
  on,
  dim,
  last_seen: new Array(n).fill(Math.floor(Date.now() / 1000)),
});
const width = side * 120;
const features = [];
for (let d = 0; d < 16; d++) {
  const x0 = (d % 4) * (width / 4), y0 = Math.floor(d / 4) * (width / 4), w = width / 4;
  const ring = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + w], [x0, y0 + w], [x0, y0]].map(([x, y]) => [LON0 + x * M_LON, LAT0 + y * M_LAT]);
  features.push({ type: "Feature", geometry: { type: "Polygon", coordinates: [ring] }, properties: { layer: "district", id: `D${d + 1}` } });
}
for (let s = 0; s <= width; s += 120) {
  for (const horizontal of [true, false]) {
    const line = [[0, s], [width, s]].map(([a, b]) => (horizontal ? [a, b] : [b, a])).map(([x, y]) => [LON0 + x * M_LON, LAT0 + y * M_LAT]);
    features.push({ type: "Feature", geometry: { type: "LineString", coordinates: line }, properties: { layer: "street", id: `S${s}${horizontal ? "h" : "v"}` } });
  }
}
const baseMap = JSON.stringify({ type: "FeatureCollection", features });

// --- The stand-in API and the built app. ---
const ROUTES = ["/api/v1/me", "/api/v1/state", "/api/v1/events", "/api/v1/outages", "/api/v1/map", "/api/v1/map/base"];
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
let sent = 0;
const server = createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const json = (body) => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(typeof body === "string" ? body : JSON.stringify(body));
  };
  switch (url.pathname) {
    case "/api/v1/openapi.json":
      return json({ paths: Object.fromEntries(ROUTES.map((r) => [r, {}])) });
    case "/api/v1/me":
      return json({ username: "bench", role: "viewer", tenants: ["benchcity"], via: "session" });
    case "/api/v1/state":
      return json(stateJson);
    case "/api/v1/outages":
      return json({ items: [] });
    case "/api/v1/map":
      return json({ base_map: true, tile_url: null });
    case "/api/v1/map/base":
      return json(baseMap);
    case "/api/v1/events": {
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      res.write(": hello\n\n");
      // RATE changes a second, in batches every 10 ms, as the hub sends them: one event each.
      let owed = 0, last = performance.now();
      const timer = setInterval(() => {
        const now = performance.now();
        owed += ((now - last) * RATE) / 1000;
        last = now;
        let chunk = "";
        for (; owed >= 1; owed--) {
          const i = Math.floor(Math.random() * LAMPS);
          const onNow = Math.random() < 0.8;
          const fault = Math.random() < 0.005 ? "lamp_failure" : null;
          chunk += `event: device\ndata: ${JSON.stringify({ id: i, tenant: "benchcity", device: ids[i], kind: "light", ts: new Date().toISOString(), online: true, on: onNow, dim: onNow ? 60 : 0, fault })}\n\n`;
          sent++;
        }
        if (chunk) res.write(chunk);
      }, 10);
      req.on("close", () => clearInterval(timer));
      return;
    }
  }
  let file = join(DIST, url.pathname);
  if (!file.startsWith(DIST) || !existsSync(file) || statSync(file).isDirectory()) file = join(DIST, "index.html");
  res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
  res.end(readFileSync(file));
});
const HUB = process.env.BENCH_HUB_URL;
let base;
if (HUB) base = HUB;
else {
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  base = `http://127.0.0.1:${server.address().port}`;
}

// --- The browser. ---
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  await context.addInitScript(() => localStorage.setItem("cityhub.signedIn", "1"));
  if (HUB) {
    const r = await context.request.post(`${HUB}/api/v1/login`, { data: { username: process.env.BENCH_USER, password: process.env.BENCH_PASSWORD } });
    if (!r.ok()) throw new Error(`signing in to ${HUB}: ${r.status()} ${await r.text()}`);
  }
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/map`);
  await page.waitForFunction(() => window.cityhub?.pages["/map"].map.stats.firstFullRenderAt > 0, null, { timeout: 60_000 });
  const first = await page.evaluate(() => ({
    at: window.cityhub.pages["/map"].map.stats.firstFullRenderAt,
    count: window.cityhub.assets.count,
    drawn: window.cityhub.pages["/map"].map.stats.drawn,
  }));
  console.log(`first full render: ${first.at.toFixed(0)} ms after navigation, ${first.count} assets, ${first.drawn} drawn`);
  if (!HUB && first.count !== n) throw new Error(`the page holds ${first.count} assets, not ${n}`);

  // Frame times while the changes stream in.
  const sentBefore = sent;
  const frames = await page.evaluate(async (seconds) => {
    const received0 = window.cityhub.live.device;
    const renders0 = window.cityhub.pages["/map"].map.stats.renders;
    const deltas = [];
    const drawMs = [];
    await new Promise((done) => {
      let last = performance.now();
      const end = last + seconds * 1000;
      const tick = (t) => {
        deltas.push(t - last);
        drawMs.push(window.cityhub.pages["/map"].map.stats.lastRenderMs);
        last = t;
        if (t < end) requestAnimationFrame(tick);
        else done();
      };
      requestAnimationFrame(tick);
    });
    return {
      deltas,
      drawMs,
      received: window.cityhub.live.device - received0,
      renders: window.cityhub.pages["/map"].map.stats.renders - renders0,
    };
  }, SECONDS);
  mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: join(OUT, "bench-map.png") });
  const sorted = frames.deltas.slice(1).sort((a, b) => a - b);
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  const draws = frames.drawMs.slice().sort((a, b) => a - b);
  console.log(`streamed: ${sent - sentBefore} changes sent, ${frames.received} received by the page in ${SECONDS} s (${(frames.received / SECONDS).toFixed(0)}/s)`);
  console.log(`frames: ${sorted.length}, ${frames.renders} redraws of the asset layer; frame time p50 ${pct(50).toFixed(1)} ms, p95 ${pct(95).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms`);
  console.log(`asset layer draw: p50 ${draws[Math.floor(draws.length / 2)].toFixed(1)} ms, p95 ${draws[Math.floor(draws.length * 0.95)].toFixed(1)} ms`);
  if (errors.length) console.log(`console errors: ${errors.join(" | ")}`);
  if (!HUB && frames.received < RATE * SECONDS * 0.8) throw new Error(`the page received ${frames.received} changes, fewer than 80% of ${RATE * SECONDS}`);
  console.log(`RESULT first_render_ms=${first.at.toFixed(0)} frame_p95_ms=${pct(95).toFixed(1)}`);
} finally {
  await browser.close();
  if (!HUB) server.close();
}
