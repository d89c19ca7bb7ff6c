// The map benchmark against a real hub: the tests' stack (its own database, broker and
// `cityhub serve`, CITYHUB_BIN or target/debug/cityhub) with the 100,000 lamps of
// hub-scenario.toml reporting at 60 times real time, then bench.mjs pointed at it. It
// prints how long `GET /api/v1/state` takes first, since the first render waits for it.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { PASSWORD, startStack } from "../tests/stack.mjs";

const here = import.meta.dirname;
const stack = await startStack({
  scenario: join(here, "hub-scenario.toml"),
  users: [["bench", "viewer"]],
  out: join(here, "../bench-output/hub"),
  // The map's first render is measured, not the charts: no history to write first.
  historyDays: 0,
});
let status = 1;
try {
  // Every lamp reports every 15 simulated minutes: 15 real seconds at 60x.
  await sleep(Number(process.env.BENCH_WARM_SECONDS || 20) * 1000);
  const login = await fetch(`${stack.url}/api/v1/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: "bench", password: PASSWORD }),
  });
  const cookie = login.headers.get("set-cookie").split(";")[0];
  for (let k = 0; k < 3; k++) {
    const t0 = performance.now();
    const r = await fetch(`${stack.url}/api/v1/state`, { headers: { Cookie: cookie } });
    const size = (await r.text()).length;
    console.log(`GET /api/v1/state: ${r.status}, ${(size / 1e6).toFixed(1)} MB in ${(performance.now() - t0).toFixed(0)} ms`);
  }
  console.log(`lamps heard from: ${stack.psql("SELECT count(*) FROM device_latest WHERE telemetry_ts IS NOT NULL")}`);
  const r = spawnSync("node", [join(here, "bench.mjs")], {
    env: { ...process.env, BENCH_HUB_URL: stack.url, BENCH_USER: "bench", BENCH_PASSWORD: PASSWORD },
    stdio: "inherit",
  });
  status = r.status ?? 1;
} finally {
  await stack.stop();
}
process.exit(status);
