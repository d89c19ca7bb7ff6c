// The whole stack for the end-to-end tests, made fresh for a run: a database of its own on
// the local PostgreSQL, a private Mosquitto with the shipped configuration on a free port,
// the simulated city of a scenario (its inventory and base map), the hub (`cityhub serve`
// on the simulators' clock, serving the built dashboard) and users made with
// `cityhub users add`. Everything listens on 127.0.0.1 and is stopped by `stop()`.

import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, openSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const ROOT = resolve(import.meta.dirname, "../..");
export const DASHBOARDS = resolve(import.meta.dirname, "..");
export const PASSWORD = "correct horse battery staple";
const SERVER_URL = process.env.CITYHUB_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const HUB_PASSWORD = "hub-e2e-password";
const SIM_PASSWORD = "sim-e2e-password";

export function binary() {
  const bin = process.env.CITYHUB_BIN || join(process.env.CARGO_TARGET_DIR || join(ROOT, "target"), "debug/cityhub");
  try {
    execFileSync(bin, ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error(`${bin} does not run: build it first (cargo build -p cityhub)`);
  }
  return bin;
}

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function waitPort(port, child, what, seconds = 20) {
  const deadline = Date.now() + seconds * 1000;
  return new Promise((ok, fail) => {
    const tryOnce = () => {
      if (child.exitCode !== null) return fail(new Error(`${what} exited with ${child.exitCode}`));
      const sock = new Socket();
      sock.once("connect", () => {
        sock.destroy();
        ok();
      });
      sock.once("error", () => {
        sock.destroy();
        if (Date.now() > deadline) fail(new Error(`${what} did not listen on ${port} within ${seconds} s`));
        else setTimeout(tryOnce, 100);
      });
      sock.connect(port, "127.0.0.1");
    };
    tryOnce();
  });
}

/** A line of a child's output matching `re`, within `seconds`. */
function waitLine(child, re, what, seconds = 30) {
  return new Promise((ok, fail) => {
    let buf = "";
    const timer = setTimeout(() => fail(new Error(`${what}: no line matching ${re} within ${seconds} s:\n${buf}`)), seconds * 1000);
    const on = (chunk) => {
      buf += chunk.toString();
      // Whole lines only: a chunk can end inside the line looked for.
      const m = buf.slice(0, buf.lastIndexOf("\n") + 1).match(re);
      if (m) {
        clearTimeout(timer);
        ok(m);
      }
    };
    child.stdout?.on("data", on);
    child.stderr?.on("data", on);
    child.once("exit", (code) => fail(new Error(`${what} exited with ${code}:\n${buf}`)));
  });
}

/**
 * Starts everything for `scenario` (a TOML file whose [city] is read for the base map).
 * `users` are [name, role] pairs (a crew's: [name, "crew", team]), all of the city's tenant.
 * `publicTenants`: the slugs whose status page and works feeds the hub publishes (the
 * city's tenant is `simcity`, as `cityhub simulate city` names it).
 * `hubEnv`: more of the hub's settings, as environment variables (`CITYHUB_WEBHOOKS_...`).
 */
export async function startStack({ scenario, users, out, tileUrl, rulesFile, historyDays = 2, publicTenants = [], hubEnv = {} }) {
  const bin = binary();
  for (const page of ["index.html", ...(publicTenants.length ? ["public.html"] : [])]) {
    if (!existsSync(join(DASHBOARDS, "dist", page))) {
      throw new Error(`dashboards/dist/${page} is not built: run \`npm --prefix dashboards run build\` first`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), "cityhub-e2e-"));
  mkdirSync(out, { recursive: true });
  const children = [];
  const cleanups = [() => rmSync(dir, { recursive: true, force: true })];
  const stop = async () => {
    for (const c of children.reverse()) {
      if (c.exitCode === null) {
        c.kill("SIGTERM");
        await Promise.race([new Promise((r) => c.once("exit", r)), sleep(10_000)]);
        if (c.exitCode === null) c.kill("SIGKILL");
      }
    }
    for (const f of cleanups.reverse()) {
      try {
        f();
      } catch {
        /* best effort */
      }
    }
  };
  try {
    // Database.
    const db = `cityhub_e2e_${process.pid}_${Date.now() % 100000}`;
    execFileSync("psql", [SERVER_URL, "-qc", `CREATE DATABASE ${db}`], { stdio: "inherit" });
    cleanups.push(() => execFileSync("psql", [SERVER_URL, "-qc", `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`], { stdio: "ignore" }));
    const databaseUrl = SERVER_URL.replace(/\/[^/]*$/, `/${db}`);

    // Broker: the shipped configuration with this run's port, files and users.
    const brokerPort = await freePort();
    const passwd = join(dir, "passwd");
    // One account per connection (the shipped configuration makes a connection's client
    // id its user name): the hub's two, and one per simulator connection (simulator-n).
    // A connection carries up to 1,000 devices (cabinets are about one per 50 lamps).
    const counts = ["lamps", "meters", "vehicles"].map((k) => Number(readFileSync(scenario, "utf8").match(new RegExp(`^${k}\\s*=\\s*(\\d+)`, "m"))?.[1] ?? 0));
    const connections = Math.max(32, Math.ceil((counts[0] * 1.05 + counts[1] + counts[2]) / 1000) + 8);
    const simulators = Array.from({ length: connections }, (_, n) => `simulator-${n}`);
    const accounts = [["cityhub-ingest", HUB_PASSWORD], ["cityhub-commands", HUB_PASSWORD], ...simulators.map((u) => [u, SIM_PASSWORD])];
    writeFileSync(passwd, accounts.map(([u, p]) => `${u}:${p}\n`).join(""));
    execFileSync("mosquitto_passwd", ["-U", passwd], { stdio: "ignore" });
    writeFileSync(
      join(dir, "acl"),
      readFileSync(join(ROOT, "deploy/mosquitto/acl"), "utf8") + simulators.map((u) => `\nuser ${u}\ntopic readwrite city/#\n`).join(""),
    );
    const conf = readFileSync(join(ROOT, "deploy/mosquitto/mosquitto.conf"), "utf8")
      .replace(/^listener .*/m, `listener ${brokerPort} 127.0.0.1`)
      .replace(/^password_file .*/m, `password_file ${passwd}`)
      .replace(/^acl_file .*/m, `acl_file ${join(dir, "acl")}`)
      .replace(/^persistence_location .*/m, `persistence_location ${dir}/`);
    // Keep this user (as root it would switch to `mosquitto`, who cannot read this folder).
    writeFileSync(join(dir, "mosquitto.conf"), `${conf}\nuser ${userInfo().username}\n`);
    const broker = spawn("mosquitto", ["-c", join(dir, "mosquitto.conf")], { stdio: ["ignore", "ignore", openSync(join(out, "mosquitto.log"), "a")] });
    children.push(broker);
    await waitPort(brokerPort, broker, "mosquitto");

    const env = {
      ...process.env,
      CITYHUB_CONFIG: "/dev/null",
      CITYHUB_DATABASE_URL: databaseUrl,
      CITYHUB_MQTT_HOST: "127.0.0.1",
      CITYHUB_MQTT_PORT: String(brokerPort),
      CITYHUB_LOG: process.env.CITYHUB_LOG || "warn",
    };
    const run = (args, input) => execFileSync(bin, args, { env, cwd: ROOT, input, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] }).toString();

    // The scenario's city: its inventory into the database, its base map for the hub.
    const toml = readFileSync(scenario, "utf8");
    const city = Object.fromEntries(
      ["seed", "lamps", "meters", "vehicles"].map((k) => [k, toml.match(new RegExp(`^${k}\\s*=\\s*(\\d+)`, "m"))?.[1]]),
    );
    run(["migrate"]);
    const cityDir = join(dir, "city");
    run(["simulate", "city", "--seed", city.seed, "--lamps", city.lamps, "--meters", city.meters, "--vehicles", city.vehicles, "--out", cityDir]);
    run(["devices", "import", join(cityDir, "inventory.geojson")]);
    const inventory = JSON.parse(readFileSync(join(cityDir, "inventory.geojson"), "utf8"));
    const devices = inventory.features.filter((f) => f.geometry.type === "Point").map((f) => f.properties);
    const tenant = devices[0].tenant;
    for (const [name, role, team] of users) {
      run(["users", "add", name, "--role", role, "--tenant", tenant, ...(team ? ["--team", team] : [])], `${PASSWORD}\n`);
    }

    // The devices first (they print the clock), then the hub on their clock.
    // With the city's last days written first (two by default), as the demonstration has them.
    const sim = spawn(bin, ["simulate", "run", "--scenario", scenario, "--truth", join(out, "truth.jsonl"), "--username", "simulator", "--history-days", String(historyDays)], {
      env: { ...env, CITYHUB_SIM_PASSWORD: SIM_PASSWORD },
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(sim);
    const simLog = openSync(join(out, "simulator.log"), "a");
    sim.stdout.on("data", (d) => writeFileSync(simLog, d));
    sim.stderr.on("data", (d) => writeFileSync(simLog, d));
    const [, clock] = await waitLine(sim, /CITYHUB_SIM_CLOCK=([0-9.,]+)/, "cityhub simulate run", 90);

    const port = await freePort();
    const hub = spawn(bin, ["serve"], {
      env: {
        ...env,
        CITYHUB_SIM_CLOCK: clock,
        CITYHUB_HTTP_ADDR: `127.0.0.1:${port}`,
        CITYHUB_MQTT_USERNAME: "cityhub-ingest",
        CITYHUB_MQTT_PASSWORD: HUB_PASSWORD,
        CITYHUB_COMMANDS_MQTT_USERNAME: "cityhub-commands",
        CITYHUB_COMMANDS_MQTT_PASSWORD: HUB_PASSWORD,
        CITYHUB_DASHBOARD_DIR: join(DASHBOARDS, "dist"),
        CITYHUB_DASHBOARD_BASE_MAP: join(cityDir, "map.geojson"),
        ...(tileUrl ? { CITYHUB_DASHBOARD_TILE_URL: tileUrl } : {}),
        ...(rulesFile ? { CITYHUB_RULES_FILE: rulesFile } : {}),
        ...(publicTenants.length ? { CITYHUB_PUBLIC_TENANTS: publicTenants.join(",") } : {}),
        ...hubEnv,
      },
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.splice(children.length - 1, 0, hub); // stopped after the devices
    const hubLog = openSync(join(out, "hub.log"), "a");
    hub.stdout.on("data", (d) => writeFileSync(hubLog, d));
    hub.stderr.on("data", (d) => writeFileSync(hubLog, d));
    await waitPort(port, hub, "cityhub serve", 30);
    const url = `http://127.0.0.1:${port}`;
    // The field falls silent: the simulated devices stop, the hub stays.
    const silence = async () => {
      for (const c of children.filter((c) => c !== hub && c !== broker && c.exitCode === null)) {
        c.kill("SIGTERM");
        await Promise.race([new Promise((r) => c.once("exit", r)), sleep(10_000)]);
      }
    };
    return {
      url,
      tenant,
      devices,
      databaseUrl,
      stop,
      silence,
      psql: (sql) => execFileSync("psql", [databaseUrl, "-qtAc", sql]).toString().trim(),
      // `cityhub` with this stack's database (more inventory, maintenance windows...).
      cli: run,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** A small API client with its own session, for checks and set-up outside the browser. */
export async function apiClient(url, username) {
  const res = await fetch(`${url}/api/v1/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  if (!res.ok) throw new Error(`login as ${username}: ${res.status} ${await res.text()}`);
  const cookie = res.headers.get("set-cookie").split(";")[0];
  /** The answer's status and its JSON (null without one), whatever the status. */
  const answer = async (method, path, body) => {
    const r = await fetch(`${url}/api/v1${path}`, {
      method,
      headers: { Cookie: cookie, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      if (r.ok) throw new Error(`${method} ${path}: ${r.status} answered no JSON: ${text.slice(0, 200)}`);
    }
    return { status: r.status, ok: r.ok, text, json };
  };
  const call = async (method, path, body) => {
    const r = await answer(method, path, body);
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
    return r.json;
  };
  return { get: (p) => call("GET", p), post: (p, b = {}) => call("POST", p, b), del: (p) => call("DELETE", p), answer };
}

/** Polls `f` until it returns something truthy, or fails after `seconds`. */
export async function eventually(what, seconds, f, every = 250) {
  const deadline = Date.now() + seconds * 1000;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s${last ? ` (${last.message})` : ""}`);
    await sleep(every);
  }
}
