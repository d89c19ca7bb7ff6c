#!/usr/bin/env python3
"""A device maker's integration kit for cityhub, written from its public documents only.

A fleet of streetlight controllers, lighting cabinets, water meters and buses talks to
cityhub over MQTT exactly as docs/device-contract.md says; an operator uses the HTTP API
of docs/api.md; a checker compares cityhub's outages with the fleet's own ground truth for
one Lisbon December night (docs/rules.md, default parameters). See tests/vendor/README.md.

    night.py inventory --tenant T --out FILE
    night.py run --tenant T --mqtt-host H --mqtt-port P --device-password PW --api URL \
                 --token TOKEN --sim-clock WALL_ORIGIN_MS,SIM_ORIGIN_MS,SPEED --report FILE

Python 3.11, standard library plus paho-mqtt 2.x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import math
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# --------------------------------------------------------------------------------------
# Rules parameters: the documented defaults (docs/rules.md, deploy/rules.toml). The harness
# may change only [stream] reorder_s, which the truth below does not depend on.
# --------------------------------------------------------------------------------------
LAMP_FAILURE_ON_DELAY_S = 600
LAMP_FAILURE_OFF_DELAY_S = 900
LAMP_FAILURE_MIN_RATIO = 0.3
DAY_BURNER_MARGIN_S = 1800
CYCLING_MIN_SWITCHES = 3
CYCLING_OFF_DELAY_S = 3600
SILENCE_INTERVALS = 3.0
SILENCE_GRACE_S = 10
CABINET_OFF_DELAY_S = 0
CABINET_MIN_LAMPS = 5
LEAK_NIGHT = (1.0, 4.0)  # local solar hours
LEAK_MIN_FLOW = 0.01
BUNCHING_SHARE = 0.25
BUNCHING_MAX_GAP_M = 150.0
BUNCHING_ON_DELAY_S = 60
BUNCHING_OFF_DELAY_S = 60
STOPPED_ON_DELAY_S = 300

# Reporting intervals of this fleet: the documented ones (docs/simulation.md; the
# [silence] *_interval_s defaults of docs/rules.md).
LAMP_INTERVAL_S = 900
CABINET_INTERVAL_S = 300
METER_INTERVAL_S = 3600
BUS_INTERVAL_S = 10

ALL_KINDS = [
    "lamp_failure", "day_burner", "lamp_cycling", "voltage_out_of_range", "device_offline",
    "cabinet_supply_loss", "leak", "tamper", "reverse_flow", "meter_silent", "vehicle_silent",
    "off_route", "bunching", "stopped_too_long",
]

# Our controllers switch a little early at dusk and a little late at dawn (a guard band):
# never dark while cityhub's astronomical clock says they should burn, even if its civil
# twilight differs from ours by a minute or two. Daylight for day burners starts 30 min
# after dawn, so the guard band can never look like a day burner.
GUARD_S = 180

S, M, H = 1000, 60_000, 3_600_000  # milliseconds

# --------------------------------------------------------------------------------------
# The fleet (deterministic)
# --------------------------------------------------------------------------------------
DISTRICT = "santo-antonio"
ROUTE_ID = "728"
ROUTE_HEADWAY_S = 600
BUS_SPEED = 8.0
# Lamps: three cabinets of eight lamps each, 30 m apart along three streets.
STREETS = {
    "CAB-1": ("Rua de Santa Marta", 38.72330, -9.14720),
    "CAB-2": ("Rua do Salitre", 38.71980, -9.14860),
    "CAB-3": ("Rua Rodrigues Sampaio", 38.72150, -9.14520),
}
RATINGS_W = [70, 100, 50, 150, 100, 70, 120, 90]
# The lamps' roles in the scenario.
FAILING_LAMP = "SL-104"      # draws 3 % of its rating 21:00-23:30, then repaired
CYCLING_LAMP = "SL-106"      # relay flips every 4 min 22:00-22:40, then steady
LOSS_CABINET = "CAB-2"       # mains lost 01:00-02:30
DAY_CMD_LAMP = "SL-201"      # operator: on at 50 % at 15:30 (daylight), expires 16:00
DAWN_CMD_LAMP = "SL-202"     # off at dawn, operator on at dawn+35 min, expires 15 min later
BACKLOG_LAMP = "SL-305"      # silent 02:00, backlog 02:06..05:51 sent at 06:00
LEAK_METER = "WM-3"          # never stops flowing from 22:30
BUSES = ("BUS-41", "BUS-42")  # bunched 80 m apart 05:30-05:40, then 1.2 km apart
METERS = ("WM-1", "WM-2", "WM-3", "WM-4")

# Scenario instants as offsets from the simulated origin (the harness's SIM_ORIGIN_MS,
# "14:00 in Lisbon on a December day"; Lisbon is on UTC in winter).
T_DAY_CMD = 90 * M                 # 15:30
T_DAY_CMD_EXPIRES = 120 * M        # 16:00
T_FAIL = (7 * H, 9 * H + 30 * M)   # 21:00-23:30
T_CYCLE = (8 * H, 8 * H + 40 * M)  # 22:00-22:40
CYCLE_STEP = 4 * M
T_LEAK = 8 * H + 30 * M            # 22:30
T_LOSS = (11 * H, 12 * H + 30 * M)  # 01:00-02:30
T_BACKLOG = (12 * H, 16 * H)       # 02:00-06:00
T_BUS = 15 * H + 30 * M            # 05:30 service start
BUS_CLOSE_S = 600                  # 10 min bunched
BUS_DWELL_S = 140                  # then the second bus dwells: 80 m + 140 s * 8 m/s = 1.2 km
DAWN_CMD_AFTER = 35 * M
DAWN_CMD_HOLD = 15 * M
END_AFTER_DAWN_CMD = 15 * M        # the scenario ends 15 min after that command expired

# Per-device reporting phases (ms after the origin, modulo the interval).
LAMP_PHASE = {"SL-104": 4 * M, "SL-106": 2 * M, "SL-305": 6 * M}


def lamp_ids(cab: str) -> list[str]:
    n = int(cab.split("-")[1])
    return [f"SL-{n}{j:02d}" for j in range(1, 9)]


def lamp_phase(lamp: str) -> int:
    if lamp in LAMP_PHASE:
        return LAMP_PHASE[lamp]
    n = int(lamp[3:])
    c, j = n // 100, n % 100
    return (((c - 1) * 8 + (j - 1)) * 37 * S + 20 * S) % (LAMP_INTERVAL_S * S)


def lamp_rating(lamp: str) -> int:
    return RATINGS_W[int(lamp[3:]) % 100 - 1]


def lamp_position(lamp: str) -> tuple[float, float]:
    n = int(lamp[3:])
    cab = f"CAB-{n // 100}"
    _, lat, lon = STREETS[cab]
    j = n % 100
    return lat + 0.00004 * (j % 2), lon + 0.00035 * j  # ~30 m apart eastwards


def cabinet_position(cab: str) -> tuple[float, float]:
    _, lat, lon = STREETS[cab]
    return lat - 0.00008, lon


METER_POS = {"WM-1": (38.72240, -9.14600), "WM-2": (38.72060, -9.14700),
             "WM-3": (38.72110, -9.14380), "WM-4": (38.71930, -9.14550)}

# The bus route: a closed rectangle 2.8 km x 2.0 km (a loop, so buses of one direction
# never meet head on), buses start 400 m along its south edge.
ROUTE_SW = (38.70950, -9.16200)
ROUTE_W_M, ROUTE_H_M = 2800.0, 2000.0
BUS_D0 = 400.0
M_PER_DEG_LAT = 111_132.0


def m_per_deg_lon(lat: float) -> float:
    return 111_320.0 * math.cos(math.radians(lat))


def route_corners() -> list[tuple[float, float]]:
    lat0, lon0 = ROUTE_SW
    dlat = ROUTE_H_M / M_PER_DEG_LAT
    dlon = ROUTE_W_M / m_per_deg_lon(lat0)
    return [(lat0, lon0), (lat0, lon0 + dlon), (lat0 + dlat, lon0 + dlon), (lat0 + dlat, lon0),
            (lat0, lon0)]


def route_point(d: float) -> tuple[float, float, float]:
    """(lat, lon, bearing) at distance d (m) along the loop from BUS_D0."""
    per = 2 * (ROUTE_W_M + ROUTE_H_M)
    x = (BUS_D0 + d) % per
    lat0, lon0 = ROUTE_SW
    mlon = m_per_deg_lon(lat0)
    if x < ROUTE_W_M:
        e, n, b = x, 0.0, 90.0
    elif x < ROUTE_W_M + ROUTE_H_M:
        e, n, b = ROUTE_W_M, x - ROUTE_W_M, 0.0
    elif x < 2 * ROUTE_W_M + ROUTE_H_M:
        e, n, b = ROUTE_W_M - (x - ROUTE_W_M - ROUTE_H_M), ROUTE_H_M, 270.0
    else:
        e, n, b = 0.0, ROUTE_H_M - (x - 2 * ROUTE_W_M - ROUTE_H_M), 180.0
    return lat0 + n / M_PER_DEG_LAT, lon0 + e / mlon, b


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dp, dl = p2 - p1, math.radians(b[1] - a[1])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def inventory(tenant: str) -> dict:
    feats = []

    def dev(i, kind, lat, lon, **props):
        p = {"id": i, "kind": kind, "tenant": tenant, "district": DISTRICT,
             "manufacturer": "Lusolux", "model": {"light": "LX-NEMA7", "cabinet": "LX-CAB3",
                                                  "meter": "AQ-R5", "vehicle": "TRK-9"}[kind]}
        p.update(props)
        feats.append({"type": "Feature",
                      "geometry": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]},
                      "properties": p})

    for cab, (street, _, _) in STREETS.items():
        lat, lon = cabinet_position(cab)
        dev(cab, "cabinet", lat, lon, street=street)
    for cab, (street, _, _) in STREETS.items():
        for lamp in lamp_ids(cab):
            lat, lon = lamp_position(lamp)
            dev(lamp, "light", lat, lon, cabinet=cab, rated_power_w=lamp_rating(lamp), street=street)
    for m in METERS:
        lat, lon = METER_POS[m]
        dev(m, "meter", lat, lon, medium="water")
    for b in BUSES:
        lat, lon, _ = route_point(0.0)
        dev(b, "vehicle", lat, lon, route=ROUTE_ID)
    feats.append({"type": "Feature",
                  "geometry": {"type": "LineString",
                               "coordinates": [[round(lon, 6), round(lat, 6)] for lat, lon in route_corners()]},
                  "properties": {"kind": "route", "id": ROUTE_ID, "tenant": tenant,
                                 "headway_s": ROUTE_HEADWAY_S, "name": "728 Circular"}})
    return {"type": "FeatureCollection", "features": feats}


# --------------------------------------------------------------------------------------
# Civil twilight (NOAA solar position; sun's centre at -6 degrees)
# --------------------------------------------------------------------------------------
def _solar(t_ms: float) -> tuple[float, float]:
    jc = (t_ms / 86_400_000.0 + 2440587.5 - 2451545.0) / 36525.0
    l0 = (280.46646 + jc * (36000.76983 + jc * 0.0003032)) % 360
    m = math.radians(357.52911 + jc * (35999.05029 - 0.0001537 * jc))
    e = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
    c = (math.sin(m) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
         + math.sin(2 * m) * (0.019993 - 0.000101 * jc) + math.sin(3 * m) * 0.000289)
    om = math.radians(125.04 - 1934.136 * jc)
    app = math.radians(l0 + c - 0.00569 - 0.00478 * math.sin(om))
    eps0 = 23 + (26 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60) / 60
    eps = math.radians(eps0 + 0.00256 * math.cos(om))
    decl = math.asin(math.sin(eps) * math.sin(app))
    y = math.tan(eps / 2) ** 2
    l0r = math.radians(l0)
    eot = 4 * math.degrees(y * math.sin(2 * l0r) - 2 * e * math.sin(m)
                           + 4 * e * y * math.sin(m) * math.cos(2 * l0r)
                           - 0.5 * y * y * math.sin(4 * l0r) - 1.25 * e * e * math.sin(2 * m))
    return decl, eot  # radians, minutes


def sun_altitude(t_ms: float, lat: float, lon: float) -> float:
    decl, eot = _solar(t_ms)
    tst = ((t_ms / 60000.0) % 1440 + eot + 4 * lon) % 1440
    ha = math.radians(tst / 4 - 180)
    la = math.radians(lat)
    cz = math.sin(la) * math.sin(decl) + math.cos(la) * math.cos(decl) * math.cos(ha)
    return 90 - math.degrees(math.acos(max(-1.0, min(1.0, cz))))


def twilights(lat: float, lon: float, t0: int, t1: int) -> list[tuple[int, int]]:
    """Nights [(civil dusk, civil dawn)] overlapping [t0, t1], ms."""
    f = lambda t: sun_altitude(t, lat, lon) + 6.0  # noqa: E731
    events = []
    step = 10 * M
    t = t0 - 24 * H
    prev = f(t)
    while t < t1 + 24 * H:
        nt = t + step
        cur = f(nt)
        if (prev > 0) != (cur > 0):
            a, b, fa = t, nt, prev
            for _ in range(40):
                mid = (a + b) / 2
                fm = f(mid)
                if (fm > 0) == (fa > 0):
                    a, fa = mid, fm
                else:
                    b = mid
            events.append((int(round((a + b) / 2)), "dusk" if prev > 0 else "dawn"))
        t, prev = nt, cur
    nights = []
    for i, (te, kind) in enumerate(events):
        if kind == "dusk" and i + 1 < len(events) and events[i + 1][1] == "dawn":
            nights.append((te, events[i + 1][0]))
    return [n for n in nights if n[1] > t0 - 24 * H and n[0] < t1 + 24 * H]


def solar_offsets_ms(t_ms: int, lon: float) -> tuple[float, float]:
    """Local solar time minus UTC, ms: (mean, apparent)."""
    mean = lon * 240_000.0
    _, eot = _solar(t_ms)
    return mean, mean + eot * 60_000.0


# --------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------
class Clock:
    def __init__(self, spec: str):
        w, s, v = spec.split(",")
        self.wall0, self.sim0, self.speed = int(w), int(s), float(v)

    def now(self) -> int:
        return int(self.sim0 + (time.time() * 1000 - self.wall0) * self.speed)

    def wall_at(self, sim_ms: float) -> float:
        return (self.wall0 + (sim_ms - self.sim0) / self.speed) / 1000.0


def iso(ms: float) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hhmm(ms: float) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%H:%M:%S")


def parse_ts(s) -> float | None:
    if s is None:
        return None
    if isinstance(s, (int, float)):
        return float(s)
    s = s.strip().replace("z", "Z")
    if "." in s:  # trim sub-microsecond digits
        head, rest = s.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        s = head + "." + rest[:i][:6].ljust(6, "0") + rest[i:]
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000


# --------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------
class Device:
    kind = ""

    def __init__(self, fleet: "Fleet", dev_id: str):
        self.fleet = fleet
        self.id = dev_id
        self.base = f"city/{fleet.tenant}/{self.kind}/{dev_id}"
        self.client = None
        self.connected = threading.Event()
        self.started = False  # has said "online" (a bus only when its service starts)
        self.refused = None
        self.last_ts = -1
        self.published = 0

    # --- MQTT
    def make_client(self, host: str, port: int, password: str):
        import paho.mqtt.client as mqtt
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"vendor-{self.fleet.tenant}-{self.kind}-{self.id}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        c.username_pw_set(f"{self.fleet.tenant}/{self.kind}/{self.id}", password)
        # The documented last will: retained, QoS 1, on our status topic.
        c.will_set(self.base + "/status", json.dumps({"state": "offline"}), qos=1, retain=True)
        c.max_inflight_messages_set(200)
        c.reconnect_delay_set(0.05, 2)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c
        c.connect_async(host, port, keepalive=60)
        c.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.fleet.log(f"{self.id}: connection refused: {reason_code}")
            if not self.connected.is_set():
                self.refused = str(reason_code)
                self.connected.set()
            return
        if self.kind == "light":
            client.subscribe(self.base + "/cmd", qos=1)
        if self.connected.is_set() and self.started:
            # a reconnection: say online again, as on every connection
            self.fleet.inbox.put(("online", self))
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self.fleet.stopping:
            self.fleet.log(f"{self.id}: connection lost ({reason_code}); reconnecting")

    def _on_message(self, client, userdata, msg):
        self.fleet.inbox.put(("cmd", self, msg.payload))

    def publish(self, channel: str, payload, retain: bool = False):
        self.client.publish(f"{self.base}/{channel}", json.dumps(payload, separators=(",", ":")),
                            qos=1, retain=retain)
        self.published += 1

    def say_online(self, t: int):
        self.started = True
        self.publish("status", {"state": "online", "ts": t}, retain=True)

    def stamp(self, t: int) -> int:
        """Readings of one device never share a `ts` (it is their key) and never go back."""
        t = max(int(t), self.last_ts + 1)
        self.last_ts = t
        return t


class Cabinet(Device):
    kind = "cabinet"

    def __init__(self, fleet, dev_id):
        super().__init__(fleet, dev_id)
        self.lamps: list[Lamp] = []
        self.loss = T_LOSS if dev_id == LOSS_CABINET else None
        self.energy_kwh = 1520.0 + 100 * int(dev_id[-1])
        self.last_t = None
        self.phase = (30 + 100 * (int(dev_id[-1]) - 1)) * S

    def supply_at(self, t: int) -> bool:
        if self.loss is None:
            return True
        o = self.fleet.origin
        return not (o + self.loss[0] <= t < o + self.loss[1])

    def power_kw(self, t: int) -> float:
        if not self.supply_at(t):
            return 0.0
        return round(0.04 + sum(lp.state(t)["power_w"] for lp in self.lamps) / 1000.0, 3)

    def reading(self, t: int) -> dict:
        if self.last_t is not None:
            self.energy_kwh += self.power_kw(self.last_t) * (t - self.last_t) / H
        self.last_t = t
        sup = self.supply_at(t)
        p = self.power_kw(t)
        v = 231.0 if sup else 0.0
        return {"ts": self.stamp(t), "supply": sup, "contactor_on": True, "door_open": False,
                "power_kw": p, "voltage_v": v, "current_a": round(p * 1000 / (3 * v), 2) if v else 0.0,
                "energy_kwh": round(self.energy_kwh, 3)}

    def report(self, t: int):
        self.publish("telemetry", self.reading(t))


class Lamp(Device):
    kind = "light"

    def __init__(self, fleet, dev_id, cabinet: Cabinet):
        super().__init__(fleet, dev_id)
        self.cabinet = cabinet
        self.rating = lamp_rating(dev_id)
        self.lat, self.lon = lamp_position(dev_id)
        self.phase = lamp_phase(dev_id)
        self.nights: list[tuple[int, int]] = []
        self.overrides: list[list] = []  # [from, until, on, dim, cmd_id]
        self.profiles: list[tuple[int, dict]] = [(0, {})]
        self.answered: dict[str, dict] = {}
        self.energy_wh = 41_000.0 + 3_000 * (int(dev_id[3:]) % 7)
        self.burn_h = 11_000.0 + 400 * (int(dev_id[3:]) % 5)
        self.last_t = None
        self.backlog: list[dict] = []
        self.reported = None  # (relay, dim) of the last reading sent or held

    # --- what it should do
    def schedule(self, t: int) -> tuple[bool, int]:
        prof = {}
        for since, p in self.profiles:
            if since <= t:
                prof = p
        dusk_off = int(prof.get("dusk_offset_min") or 0) * M
        dawn_off = int(prof.get("dawn_offset_min") or 0) * M
        dim = prof.get("dim")
        dim = 100 if dim is None else int(dim)
        on = any(dk + dusk_off - GUARD_S * S <= t < dn + dawn_off + GUARD_S * S for dk, dn in self.nights)
        if not on:
            return False, 0
        steps = prof.get("steps") or []
        if steps:
            sol = (t + self.lon * 240_000.0) % (24 * H)
            for st in steps:
                try:
                    fh, fm = (int(x) for x in st["from"].split(":"))
                    th, tm = (int(x) for x in st["to"].split(":"))
                except (KeyError, ValueError, AttributeError):
                    continue
                a, b = (fh * 60 + fm) * M, (th * 60 + tm) * M
                inside = a <= sol < b if a <= b else (sol >= a or sol < b)
                if inside:
                    dim = int(st.get("dim", dim))
        return (dim > 0), (dim if dim > 0 else 0)

    def desired(self, t: int) -> tuple[bool, int]:
        for frm, until, on, dim, _ in reversed(self.overrides):
            if frm <= t < until:
                return on, (dim if on else 0)
        return self.schedule(t)

    def failing(self, t: int) -> bool:
        o = self.fleet.origin
        return self.id == FAILING_LAMP and o + T_FAIL[0] <= t < o + T_FAIL[1]

    def state(self, t: int) -> dict:
        on, dim = self.desired(t)
        relay = on
        if self.id == CYCLING_LAMP:
            o = self.fleet.origin
            if o + T_CYCLE[0] <= t < o + T_CYCLE[1]:
                k = (t - o - T_CYCLE[0]) // CYCLE_STEP
                relay = relay and k % 2 == 0
        sup = self.cabinet.supply_at(t)
        n = int(self.id[3:])
        v = (229.5 + ((n * 7 + t // (15 * M)) % 5) * 0.4) if sup else 0.0
        p = 0.0
        if relay and sup:
            p = self.rating * (dim / 100.0) * (0.96 + (n % 3) * 0.01)
            if self.failing(t):
                p = self.rating * 0.03
        pf = 0.95 if p > 0 else 0.0
        return {"on": relay, "dim": dim if relay else 0, "power_w": round(p, 1), "voltage_v": round(v, 1),
                "current_a": round(p / (v * pf), 3) if p > 0 else 0.0, "pf": pf}

    def advance(self, t: int):
        """Cumulative energy and burning hours up to t."""
        if self.last_t is not None and t > self.last_t:
            prev = self.state(self.last_t)
            self.energy_wh += prev["power_w"] * (t - self.last_t) / H
            if prev["on"]:
                self.burn_h += (t - self.last_t) / H
        if self.last_t is None or t > self.last_t:
            self.last_t = t

    def reading(self, t: int) -> dict:
        self.advance(t)
        st = self.state(t)
        self.reported = (st["on"], st["dim"])
        return {"ts": self.stamp(t), **st, "energy_wh": round(self.energy_wh, 1),
                "burn_hours": round(self.burn_h, 3), "fault": None}

    def holding_back(self, t: int) -> bool:
        o = self.fleet.origin
        return self.id == BACKLOG_LAMP and o + T_BACKLOG[0] <= t < o + T_BACKLOG[1]

    def report(self, t: int):
        r = self.reading(t)
        if self.holding_back(t):
            self.backlog.append(r)  # still connected, but not sending
        else:
            self.publish("telemetry", r)

    def report_if_changed(self, t: int):
        st = self.state(t)
        if self.reported != (st["on"], st["dim"]):
            self.report(t)

    def send_backlog(self, t: int):
        if self.backlog:
            self.fleet.log(f"{self.id}: sending its backlog of {len(self.backlog)} readings "
                           f"({hhmm(self.backlog[0]['ts'])}..{hhmm(self.backlog[-1]['ts'])}) as one array")
            self.publish("telemetry", self.backlog)
            self.fleet.backlog_sent = (max(t, self.fleet.clock.now()), [r["ts"] for r in self.backlog])
            self.backlog = []

    # --- commands (docs/device-contract.md, "Other channels")
    def on_command(self, raw: bytes, now: int):
        try:
            cmd = json.loads(raw)
            cid = str(cmd["id"])
        except Exception:  # not ours to answer: no id
            self.fleet.log(f"{self.id}: unreadable command {raw[:200]!r}")
            return
        self.fleet.log(f"{self.id}: command {raw.decode(errors='replace')[:300]}")
        if cid in self.answered:  # delivered twice: act once, answer again
            self.publish("cmd/ack", self.answered[cid])
            return
        now = max(int(now), self.last_ts + 1)  # the acknowledgement's time
        action = cmd.get("action")
        expires = cmd.get("expires")
        exp_ms = None
        if expires is not None:
            exp_ms = parse_ts(expires) if isinstance(expires, str) else float(expires)
        status, detail, then_report = "ok", None, False
        if exp_ms is not None and exp_ms <= now:
            status, detail = "rejected", "expired before it arrived"
        elif action == "set_light":
            on = cmd.get("on", True)
            dim = cmd.get("dim", 100)
            if not isinstance(on, bool) or not isinstance(dim, (int, float)) or not 0 <= dim <= 100:
                status, detail = "rejected", "on must be a boolean and dim 0..100"
            else:
                until = int(exp_ms) + 1000 if exp_ms is not None else 10**15
                self.overrides.append([now, until, on, int(round(dim)) if on else 0, cid])
                if exp_ms is not None:  # back to the schedule when it expires
                    self.fleet.at(until, self.report_if_changed)
                then_report = True
        elif action == "set_schedule":
            prof = {k: cmd[k] for k in ("dusk_offset_min", "dawn_offset_min", "dim", "steps") if k in cmd}
            self.profiles.append((now, prof))
            # it replaces the schedule; a set_light in force still holds until it expires
            self.fleet.schedule_profile_changes(self, now, prof)
            then_report = True
        elif action == "reboot":
            then_report = True
        else:
            status, detail = "rejected", f"unknown action {action!r}"
        ack = {"id": cid, "ts": self.stamp(now), "status": status}
        if detail:
            ack["detail"] = detail
        self.answered[cid] = ack
        self.publish("cmd/ack", ack)
        self.fleet.acks.append((self.id, cid, action, status, ack["ts"]))
        if then_report:
            self.report(now + 1)  # 1 ms later: what it does now


class Meter(Device):
    kind = "meter"

    def __init__(self, fleet, dev_id):
        super().__init__(fleet, dev_id)
        k = int(dev_id[3:])
        self.total = 812.0 + 97.3 * k
        self.k = k
        self.last_t = None

    def flow(self, t: int) -> float:
        h = ((t % (24 * H)) / H)  # Lisbon keeps UTC in winter
        if 0.0 <= h < 5.5 or h >= 23.75:
            f = 0.0
        else:
            f = (0.03 + 0.05 * (self.k % 2) + 0.22 * math.exp(-((h - 7.5) / 1.0) ** 2)
                 + 0.25 * math.exp(-((h - 20.0) / 1.5) ** 2))
        if self.id == LEAK_METER and t >= self.fleet.origin + T_LEAK:
            f += 0.045
        return round(f, 4)

    def report(self, t: int):
        if self.last_t is not None:
            self.total += self.flow(self.last_t) * (t - self.last_t) / H
        self.last_t = t
        self.publish("telemetry", {"ts": self.stamp(t), "medium": "water", "total": round(self.total, 3),
                                   "flow_m3h": self.flow(t), "pressure_bar": 3.1 + 0.1 * self.k,
                                   "battery_pct": 90 - self.k, "tamper": False, "reverse_flow": False})


class Bus(Device):
    kind = "vehicle"

    def __init__(self, fleet, dev_id, lag_s: int):
        super().__init__(fleet, dev_id)
        self.lag = lag_s * S  # BUS-42 leaves 10 s after BUS-41

    def distance(self, t: int) -> tuple[float, float]:
        """(metres driven, speed) at t."""
        o = self.fleet.origin
        x = (t - o - T_BUS - self.lag) / 1000.0
        if self.id != BUSES[1]:
            return BUS_SPEED * x, BUS_SPEED
        close_end = BUS_CLOSE_S + 10 - self.lag / 1000.0  # 05:40:10 in its own time
        if x < close_end:
            return BUS_SPEED * x, BUS_SPEED
        if x < close_end + BUS_DWELL_S:
            return BUS_SPEED * close_end, 0.0
        return BUS_SPEED * (x - BUS_DWELL_S), BUS_SPEED

    def position(self, t: int) -> tuple[float, float]:
        d, _ = self.distance(t)
        lat, lon, _ = route_point(d)
        return lat, lon

    def report(self, t: int):
        d, v = self.distance(t)
        lat, lon, b = route_point(d)
        occ = 20 + (int(d / 400) * 13 + (7 if self.id == BUSES[1] else 0)) % 45
        self.publish("telemetry", {"ts": self.stamp(t), "lat": round(lat, 7), "lon": round(lon, 7),
                                   "speed_mps": v, "bearing_deg": b, "route": ROUTE_ID,
                                   "trip": f"{ROUTE_ID}-{hhmm(self.fleet.origin + T_BUS)[:5].replace(':', '')}-{self.id[-2:]}",
                                   "occupancy_pct": occ, "odometer_m": round(183_000 + d, 1)})


# --------------------------------------------------------------------------------------
# The fleet and its event loop
# --------------------------------------------------------------------------------------
class Fleet:
    def __init__(self, args):
        self.args = args
        self.tenant = args.tenant
        self.clock = Clock(args.sim_clock)
        self.origin = self.clock.sim0
        self.inbox: queue.Queue = queue.Queue()
        self.heap: list = []
        self.seq = 0
        self.t_cur = 0
        self.stopping = False
        self.acks: list = []
        self.backlog_sent = None
        self.lock = threading.Lock()
        self.cabinets = {c: Cabinet(self, c) for c in STREETS}
        self.lamps: dict[str, Lamp] = {}
        for c, cab in self.cabinets.items():
            for lid in lamp_ids(c):
                lp = Lamp(self, lid, cab)
                cab.lamps.append(lp)
                self.lamps[lid] = lp
        self.meters = {m: Meter(self, m) for m in METERS}
        self.buses = {BUSES[0]: Bus(self, BUSES[0], 0), BUSES[1]: Bus(self, BUSES[1], 10)}
        self.devices: list[Device] = [*self.cabinets.values(), *self.lamps.values(),
                                      *self.meters.values(), *self.buses.values()]
        end_guess = self.origin + 20 * H
        for lp in self.lamps.values():
            lp.nights = twilights(lp.lat, lp.lon, self.origin - H, end_guess)
        self.t0 = time.time()

    def log(self, msg: str):
        with self.lock:
            print(f"[{time.time() - self.t0:7.2f}s] {msg}", flush=True)

    def at(self, t: float, fn, *a):
        self.seq += 1
        heapq.heappush(self.heap, (int(t), self.seq, fn, a))

    def every(self, first: int, interval: int, fn):
        def tick(t):
            fn(t)
            self.at(t + interval, tick)
        self.at(first, tick)

    def next_phase(self, after: int, phase: int, interval: int) -> int:
        k = math.ceil((after - self.origin - phase) / interval)
        return self.origin + phase + k * interval

    def schedule_profile_changes(self, lamp: Lamp, now: int, prof: dict):
        times = set()
        for dk, dn in lamp.nights:
            times.add(dk + int(prof.get("dusk_offset_min") or 0) * M - GUARD_S * S)
            times.add(dn + int(prof.get("dawn_offset_min") or 0) * M + GUARD_S * S)
        for st in prof.get("steps") or []:
            for key in ("from", "to"):
                try:
                    hh, mm = (int(x) for x in str(st[key]).split(":"))
                except (KeyError, ValueError):
                    continue
                for day in range(-1, 3):
                    base = (now // (24 * H) + day) * 24 * H
                    times.add(int(base + (hh * 60 + mm) * M - lamp.lon * 240_000.0))
        for t in sorted(times):
            if t > now:
                self.at(t, lamp.report_if_changed)

    def run_until(self, stop: threading.Event | None, t_end: int | None):
        while True:
            try:
                while True:
                    item = self.inbox.get_nowait()
                    self._inbox(item)
            except queue.Empty:
                pass
            if stop is not None and stop.is_set():
                return
            if not self.heap:
                time.sleep(0.01)
                continue
            t = self.heap[0][0]
            if t_end is not None and t > t_end:
                return
            delay = self.clock.wall_at(t) - time.time()
            if delay > 0:
                try:
                    item = self.inbox.get(timeout=min(delay, 0.5))
                    self._inbox(item)
                except queue.Empty:
                    pass
                continue
            t, _, fn, a = heapq.heappop(self.heap)
            self.t_cur = max(self.t_cur, t)
            fn(t, *a)

    def _inbox(self, item):
        what, dev = item[0], item[1]
        now = max(self.clock.now(), self.t_cur)
        if what == "cmd":
            raw = item[2]
            self.at(now, lambda t: dev.on_command(raw, max(t, dev.last_ts + 1)))
        elif what == "online":
            self.at(now, lambda t: dev.say_online(t))
        elif what == "call":
            self.at(now, item[2])


# --------------------------------------------------------------------------------------
# The operator (docs/api.md)
# --------------------------------------------------------------------------------------
class Api:
    def __init__(self, base: str, token: str):
        self.base = base.rstrip("/")
        if self.base.endswith("/api/v1"):  # accept the API's root as well as the hub's
            self.base = self.base[: -len("/api/v1")]
        self.token = token

    def call(self, method: str, path: str, body=None, params=None):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        for attempt in range(5):
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    raw = r.read()
                    return r.status, (json.loads(raw) if raw else None)
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    ans = json.loads(raw)
                except Exception:
                    ans = {"error": raw.decode(errors="replace")}
                if e.code == 503 and attempt < 4:
                    time.sleep(0.5)
                    continue
                return e.code, ans
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                if attempt < 4:
                    time.sleep(0.5)
                    continue
                return 0, {"error": str(e)}
        return 0, {"error": "unreachable"}

    def pages(self, path: str, params: dict) -> tuple[list, str | None]:
        items, cursor = [], None
        while True:
            p = dict(params)
            if cursor:
                p["cursor"] = cursor
            st, ans = self.call("GET", path, params=p)
            if st != 200:
                return items, f"GET {path} {p} answered {st}: {ans}"
            items.extend(ans.get("items", []))
            cursor = ans.get("next_cursor")
            if not cursor:
                return items, None


class Operator:
    def __init__(self, fleet: Fleet, api: Api):
        self.fleet = fleet
        self.api = api
        self.commands: list[dict] = []  # what we asked, the batch and its delivery
        self.threads: list[threading.Thread] = []

    def send_set_light(self, lamp: str, on: bool, dim: int, expires_ms: int, why: str):
        rec = {"lamp": lamp, "on": on, "dim": dim, "expires": iso(expires_ms), "why": why,
               "planned_at": None, "batch": None, "status": None, "error": None}
        self.commands.append(rec)

        def go():
            rec["planned_at"] = iso(self.fleet.clock.now())
            body = {"tenant": self.fleet.tenant, "target": {"device": lamp}, "action": "set_light",
                    "on": on, "dim": dim, "expires": iso(expires_ms)}
            st, ans = self.api.call("POST", "/api/v1/commands", body)
            if st != 201:
                rec["error"] = f"POST /api/v1/commands answered {st}: {ans}"
                self.fleet.log(f"operator: {rec['error']}")
                return
            rec["batch"] = ans.get("id")
            rec["issued_at"] = ans.get("issued_at")
            self.fleet.log(f"operator: set_light {lamp} on={on} dim={dim} until {hhmm(expires_ms)} "
                           f"(batch {rec['batch']}, issued {ans.get('issued_at')})")
            # follow its delivery until the lamp answered
            deadline = time.time() + max(10.0, 600 * 1000 / self.fleet.clock.speed / 1000)
            while time.time() < deadline:
                st, ans = self.api.call("GET", f"/api/v1/commands/{rec['batch']}/devices")
                if st == 200 and ans.get("items"):
                    item = ans["items"][0]
                    rec["status"], rec["acked_at"] = item.get("status"), item.get("acked_at")
                    if rec["status"] in ("acked", "rejected", "failed", "expired"):
                        break
                time.sleep(0.2)
            self.fleet.log(f"operator: command to {lamp} is {rec['status']}")

        th = threading.Thread(target=go, daemon=True)
        th.start()
        self.threads.append(th)


# --------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------
def ground_truth(fleet: Fleet, end: int) -> tuple[list[dict], dict]:
    o = fleet.origin
    truth = []
    L, C, MT, V = LAMP_INTERVAL_S * S, CABINET_INTERVAL_S * S, METER_INTERVAL_S * S, BUS_INTERVAL_S * S

    def win(r, d):  # R + ceil(D/R)*R (docs/benchmarks.md, "Windows")
        return r + math.ceil(d / r) * r

    truth.append({"kind": "lamp_failure", "device": FAILING_LAMP, "start": o + T_FAIL[0], "end": o + T_FAIL[1],
                  "window": win(L, LAMP_FAILURE_ON_DELAY_S * S),
                  "resolve_by": o + T_FAIL[1] + L + LAMP_FAILURE_OFF_DELAY_S * S,
                  "what": f"{FAILING_LAMP} draws 3 % of its {lamp_rating(FAILING_LAMP)} W at night, repaired at {hhmm(o + T_FAIL[1])}"})
    truth.append({"kind": "lamp_cycling", "device": CYCLING_LAMP, "start": o + T_CYCLE[0], "end": o + T_CYCLE[1],
                  "window": (CYCLING_MIN_SWITCHES + 1) * L,
                  "resolve_by": o + T_CYCLE[1] + L + CYCLING_OFF_DELAY_S * S,
                  "what": f"{CYCLING_LAMP}'s relay flips every 4 min, steady from {hhmm(o + T_CYCLE[1])}"})
    truth.append({"kind": "cabinet_supply_loss", "device": LOSS_CABINET, "start": o + T_LOSS[0], "end": o + T_LOSS[1],
                  "window": win(C, 1), "resolve_by": o + T_LOSS[1] + C + CABINET_OFF_DELAY_S * S,
                  "what": f"{LOSS_CABINET} loses its mains (all its 8 lamps dark), restored at {hhmm(o + T_LOSS[1])}"})
    last_heard = fleet.next_phase(o + T_BACKLOG[0], lamp_phase(BACKLOG_LAMP), L) - L
    last_held = fleet.next_phase(o + T_BACKLOG[1], lamp_phase(BACKLOG_LAMP), L) - L
    # "heard at the later of its message's time and the stream's time when the message
    # arrives", "silent until then": never resolved before the newest reading of the backlog
    # (the message's time); the stream's time may trail the hub's clock by an amount the docs
    # do not bound (a few batches, plus [stream] reorder_s as observed), so the resolution may
    # come somewhat before the arrival on the shared clock: its offset is reported.
    silent_at = last_heard + int(SILENCE_INTERVALS * LAMP_INTERVAL_S * S) + SILENCE_GRACE_S * S
    truth.append({"kind": "device_offline", "device": BACKLOG_LAMP, "start": o + T_BACKLOG[0], "end": o + T_BACKLOG[1],
                  "window": int(SILENCE_INTERVALS * L) + SILENCE_GRACE_S * S,
                  "resolve_by": o + T_BACKLOG[1] + L, "resolve_not_before": last_held,
                  "not_before_what": "the newest reading of its backlog, the earliest it can have been heard",
                  "open_between": (silent_at - S, silent_at + 5 * M),
                  "what": f"{BACKLOG_LAMP} keeps its connection but holds its readings from {hhmm(o + T_BACKLOG[0])} "
                          f"(last heard {hhmm(last_heard)}, silent at {hhmm(silent_at)}), sends them as one array at {hhmm(o + T_BACKLOG[1])}"})
    # bunching: close from the first instant both report, apart once > max_gap_m
    b1, b2 = fleet.buses[BUSES[0]], fleet.buses[BUSES[1]]
    t_close = o + T_BUS + b2.lag
    t = t_close
    while haversine(b1.position(t), b2.position(t)) <= BUNCHING_MAX_GAP_M:
        t += 250
    t_apart = t
    truth.append({"kind": "bunching", "device": BUSES[0], "partner": BUSES[1], "start": t_close, "end": t_apart,
                  "window": win(V, BUNCHING_ON_DELAY_S * S), "resolve_by": t_apart + V + BUNCHING_OFF_DELAY_S * S,
                  "what": f"{BUSES[0]} and {BUSES[1]} (route {ROUTE_ID}, headway {ROUTE_HEADWAY_S} s) run 80 m apart "
                          f"from {hhmm(t_close)}, apart (> {BUNCHING_MAX_GAP_M:.0f} m) from {hhmm(t_apart)}"})
    # leak: the first whole night window (local solar time) after it starts, plus a reading
    lat, lon = METER_POS[LEAK_METER]
    day = (o + T_LEAK) // (24 * H) * 24 * H
    mean, app = solar_offsets_ms(o + T_LEAK, lon)
    night_end = day + 24 * H + int(LEAK_NIGHT[1] * H) - int(min(mean, app))
    if o + T_LEAK > day + 24 * H + int(LEAK_NIGHT[0] * H) - int(max(mean, app)):
        night_end += 24 * H
    truth.append({"kind": "leak", "device": LEAK_METER, "start": o + T_LEAK, "end": None,
                  "window": night_end - (o + T_LEAK) + MT, "resolve_by": None,
                  "what": f"{LEAK_METER}'s flow never drops to zero from {hhmm(o + T_LEAK)} (household meters read 0 at night)"})
    info = {"last_heard": last_heard, "silent_at": silent_at, "t_apart": t_apart, "last_held": last_held}
    return truth, info


# --------------------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------------------
def check(fleet: Fleet, op: Operator, truth: list[dict], info: dict, end: int, read_at: int) -> dict:
    api = op.api
    o = fleet.origin
    findings: dict[str, list] = {"chronology_violations": [], "late_resolutions": [], "operator_alarms": [],
                                 "premature_resolutions": [], "backlog_findings": [], "command_findings": [],
                                 "api_errors": [], "observations": []}
    params = {"tenant": fleet.tenant, "limit": 1000, "from": iso(o - H)}
    seen: dict[int, dict] = {}
    items, err = api.pages("/api/v1/outages", params)
    if err:
        findings["api_errors"].append(err)
    for it in items:
        seen[it["id"]] = it
    for state in ("open", "acknowledged", "resolved", "closed"):
        items, err = api.pages("/api/v1/outages", {**params, "state": state})
        if err:
            findings["api_errors"].append(err)
        for it in items:
            seen.setdefault(it["id"], it)
    outages = []
    for oid, it in sorted(seen.items()):
        st, det = api.call("GET", f"/api/v1/outages/{oid}")
        if st == 200:
            it = det
        else:
            findings["api_errors"].append(f"GET /api/v1/outages/{oid} answered {st}: {det}")
        it["_opened"] = parse_ts(it.get("opened_at"))
        it["_resolved"] = parse_ts(it.get("resolved_at"))
        outages.append(it)

    def desc(x):
        r = f"{x['kind']} #{x['id']} on {x['device']} opened {x.get('opened_at')}"
        if x.get("resolved_at"):
            r += f", resolved {x['resolved_at']}"
        return r + f" ({x.get('reason', '')})"

    # chronology of every outage of ours
    for x in outages:
        if x["_resolved"] is not None and x["_resolved"] < x["_opened"]:
            findings["chronology_violations"].append(
                f"outage {x['id']} ({x['kind']} on {x['device']}) resolved at {x['resolved_at']}, before it opened at {x['opened_at']}")
        evs = x.get("events") or []
        prev = None
        opened_ev = resolved_ev = None
        for ev in evs:
            at = parse_ts(ev.get("at"))
            if prev is not None and at is not None and at < prev[0]:
                findings["chronology_violations"].append(
                    f"outage {x['id']} ({x['kind']} on {x['device']}): event `{ev.get('transition')}` at {ev.get('at')} "
                    f"comes after `{prev[1]}` at {iso(prev[0])}")
            if at is not None:
                prev = (at, ev.get("transition"))
            if ev.get("transition") == "opened" and opened_ev is None:
                opened_ev = at
            if ev.get("transition") == "resolved":
                resolved_ev = at
        if opened_ev is not None and resolved_ev is not None and resolved_ev < opened_ev:
            findings["chronology_violations"].append(
                f"outage {x['id']} ({x['kind']} on {x['device']}): its `resolved` event ({iso(resolved_ev)}) "
                f"is before its `opened` event ({iso(opened_ev)})")
        if x["_resolved"] is not None and opened_ev is not None and x["_resolved"] < opened_ev:
            findings["chronology_violations"].append(
                f"outage {x['id']} ({x['kind']} on {x['device']}) resolved at {x['resolved_at']}, before its opened event at {iso(opened_ev)}")

    # matching (as docs/benchmarks.md: same kind and asset, opened in [start - 1 s, end + window])
    matched: dict[int, dict] = {}
    tp_list, miss_list = [], []
    for tr in truth:
        lo = tr["start"] - S
        hi = (tr["end"] if tr["end"] is not None else end) + tr["window"]
        assets = {tr["device"], tr.get("partner")} if tr["kind"] == "bunching" else {tr["device"]}
        cands = [x for x in outages if x["id"] not in matched and x["kind"] == tr["kind"]
                 and x["device"] in assets and lo <= x["_opened"] <= hi]
        cands.sort(key=lambda x: x["_opened"])
        if not cands:
            miss_list.append(tr)
            continue
        x = cands[0]
        matched[x["id"]] = tr
        tp_list.append((tr, x))
        note = f"{tr['kind']} on {x['device']}: opened {(x['_opened'] - tr['start']) / 1000:.0f} s after the fault began"
        if x["_resolved"] is not None and tr["end"] is not None:
            note += f", resolved {(x['_resolved'] - tr['end']) / 1000:.0f} s after it ended"
        findings["observations"].append(note)
        if tr["kind"] == "bunching" and x["device"] != tr["device"]:
            findings["chronology_violations"].append(
                f"bunching outage {x['id']} is on {x['device']}, but docs/rules.md puts it on the vehicle whose id "
                f"comes first in byte order ({tr['device']})")
        # resolution
        if tr.get("resolve_by") is not None:
            if x["_resolved"] is None:
                if read_at > tr["resolve_by"]:
                    findings["late_resolutions"].append(
                        f"{desc(x)}: the fault ended at {iso(tr['end'])} and it should have been resolved by "
                        f"{iso(tr['resolve_by'])} (off-delay plus one reporting interval), but it is still {x['state']}")
            elif x["_resolved"] > tr["resolve_by"]:
                findings["late_resolutions"].append(
                    f"{desc(x)}: the fault ended at {iso(tr['end'])}; resolved later than {iso(tr['resolve_by'])} "
                    f"(off-delay plus one reporting interval)")
            nb = tr.get("resolve_not_before", tr["end"])
            if x["_resolved"] is not None and nb is not None and x["_resolved"] < nb:
                findings["premature_resolutions"].append(
                    f"{desc(x)}: resolved before {tr.get('not_before_what', 'the fault ended')} ({iso(nb)})")
        elif x["_resolved"] is not None:
            findings["premature_resolutions"].append(f"{desc(x)}: resolved while the fault still lasts")
        if "open_between" in tr:
            a, b = tr["open_between"]
            if not a <= x["_opened"] <= b:
                findings["backlog_findings"].append(
                    f"{desc(x)}: expected to open when its silence window ran out, between {iso(a)} and {iso(b)}")
    fps = [x for x in outages if x["id"] not in matched]

    # alarms the operator's commands (or a schedule) caused
    commanded = {c["lamp"] for c in op.commands}
    for x in outages:
        if x["device"] in commanded:
            findings["operator_alarms"].append(
                f"{desc(x)}: this lamp only did what the operator told it (and its astronomical schedule)")
    # ... and those the astronomical schedule's switching caused (a lamp alarm within
    # 20 min of its dusk or dawn that our truth does not expect)
    for x in fps:
        lp = fleet.lamps.get(x["device"])
        if lp is None or x["device"] in commanded:
            continue
        for dk, dn in lp.nights:
            for t, name in ((dk, "dusk"), (dn, "dawn")):
                if abs(x["_opened"] - t) <= 20 * M:
                    findings["operator_alarms"].append(
                        f"{desc(x)}: raised at {name} ({iso(t)} by our clock) while the lamp followed its "
                        f"astronomical schedule")

    # the backlog lamp: what cityhub recorded
    if fleet.backlog_sent is None:
        findings["backlog_findings"].append(f"{BACKLOG_LAMP} never sent its backlog (the run ended early?)")
    else:
        sent_at, stamps = fleet.backlog_sent
        st, hist = api.call("GET", f"/api/v1/devices/{BACKLOG_LAMP}/history",
                            params={"tenant": fleet.tenant, "bucket": "raw",
                                    "from": iso(o + T_BACKLOG[0]), "to": iso(o + T_BACKLOG[1])})
        if st != 200:
            findings["api_errors"].append(f"GET /api/v1/devices/{BACKLOG_LAMP}/history answered {st}: {hist}")
        else:
            got = sorted(parse_ts(p.get("t")) for p in hist.get("points", []))
            want = sorted(float(s) for s in stamps)
            if got != want:
                findings["backlog_findings"].append(
                    f"{BACKLOG_LAMP}'s history holds {len(got)} raw readings between {hhmm(o + T_BACKLOG[0])} and "
                    f"{hhmm(o + T_BACKLOG[1])}, expected the {len(want)} of its backlog at their own times")
        others = [x for x in outages if x["device"] == BACKLOG_LAMP and x["kind"] != "device_offline"]
        for x in others:
            findings["backlog_findings"].append(f"{desc(x)}: its backlog readings were all normal")
        offl = [x for x in outages if x["device"] == BACKLOG_LAMP and x["kind"] == "device_offline"]
        for x in offl:
            if x["_resolved"] is not None:
                d = (x["_resolved"] - sent_at) / 1000
                findings["observations"].append(
                    f"{BACKLOG_LAMP}'s device_offline resolved at {x['resolved_at']}, {d:+.1f} s of simulated time "
                    f"({d / fleet.clock.speed:+.3f} s of wall time) from the backlog's arrival at {iso(sent_at)}; "
                    f"allowed: from the backlog's newest reading ({iso(info['last_held'])}, the message's time; "
                    f"the stream's time may trail the clock) to +{LAMP_INTERVAL_S} s after the arrival")
        if len(offl) > 1:
            findings["backlog_findings"].append(
                f"{BACKLOG_LAMP} has {len(offl)} device_offline outages; its one silence should make one")

    # the operator's commands
    for c in op.commands:
        if c["error"] or c["status"] != "acked":
            findings["command_findings"].append(
                f"set_light to {c['lamp']} ({c['why']}): {c['error'] or 'ended ' + str(c['status'])}, expected acked")

    # scores
    kinds = {}
    for k in ALL_KINDS + sorted({x["kind"] for x in outages} - set(ALL_KINDS)):
        exp = sum(1 for tr in truth if tr["kind"] == k)
        det = sum(1 for x in outages if x["kind"] == k)
        tp = sum(1 for tr, _ in tp_list if tr["kind"] == k)
        fp = sum(1 for x in fps if x["kind"] == k)
        fn = sum(1 for tr in miss_list if tr["kind"] == k)
        kinds[k] = {"expected": exp, "detected": det, "true_positives": tp, "false_positives": fp, "misses": fn,
                    "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
                    "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0}

    def out_summary(x):
        return {"id": x["id"], "kind": x["kind"], "device": x["device"], "state": x.get("state"),
                "opened_at": x.get("opened_at"), "resolved_at": x.get("resolved_at"), "reason": x.get("reason"),
                "chattering": x.get("chattering"), "occurrences": x.get("occurrences"),
                "events": [{k: e.get(k) for k in ("at", "transition", "actor", "detail")} for e in x.get("events") or []]}

    def tr_summary(tr):
        return {"kind": tr["kind"], "device": tr["device"], "partner": tr.get("partner"), "what": tr["what"],
                "start": iso(tr["start"]), "end": iso(tr["end"]) if tr["end"] is not None else None,
                "resolve_by": iso(tr["resolve_by"]) if tr.get("resolve_by") else None}

    return {
        "kinds": kinds,
        "matches": [{"truth": tr_summary(tr), "outage": out_summary(x)} for tr, x in tp_list],
        "false_positives": [out_summary(x) for x in fps],
        "misses": [tr_summary(tr) for tr in miss_list],
        **findings,
    }


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------
def run(args) -> int:
    try:
        import paho.mqtt.client as _paho
        if not hasattr(_paho, "CallbackAPIVersion"):
            raise ImportError
    except ImportError:
        print("paho-mqtt 2.x is needed: pip install paho-mqtt==2.1.0", file=sys.stderr)
        return 2
    fleet = Fleet(args)
    o = fleet.origin
    api = Api(args.api, args.token)
    op = Operator(fleet, api)
    lp202 = fleet.lamps[DAWN_CMD_LAMP]
    lp201 = fleet.lamps[DAY_CMD_LAMP]

    def night_of(lp, t):
        return next(((dk, dn) for dk, dn in lp.nights if dk <= t < dn), None)

    night = night_of(lp202, o + T_LOSS[0])
    if night is None:
        print(f"the simulated origin {iso(o)} does not put 01:00 at night in Lisbon; "
              f"pass an origin of a December afternoon (14:00 UTC)", file=sys.stderr)
        return 2
    dusk, dawn = night
    t_dawn_cmd = dawn + DAWN_CMD_AFTER
    t_dawn_cmd_exp = t_dawn_cmd + DAWN_CMD_HOLD
    end = t_dawn_cmd_exp + END_AFTER_DAWN_CMD
    # the scenario's own consistency: faults by night (the operator's afternoon command is
    # checked once the fleet is connected, when it is known how late we start)
    day_dusk = night_of(lp201, o + T_LOSS[0])[0]
    problems = []
    if not (dusk + H < o + T_FAIL[0] and o + T_BUS + 20 * M < dawn - 30 * M):
        problems.append(f"the night's faults do not fall between dusk {hhmm(dusk)} and dawn {hhmm(dawn)}")
    if problems:
        print("scenario does not fit this origin: " + "; ".join(problems), file=sys.stderr)
        return 2
    truth, info = ground_truth(fleet, end)
    speed = fleet.clock.speed
    fleet.log(f"origin {iso(o)}, speed {speed:g}x; civil dusk {hhmm(dusk)}, dawn {hhmm(dawn)} at {DAWN_CMD_LAMP}; "
              f"scenario ends {iso(end)}: {(end - fleet.clock.now()) / speed / 1000:.0f} s of wall time from now")

    # connect every device (its own connection, credentials and last will)
    for d in fleet.devices:
        d.make_client(args.mqtt_host, args.mqtt_port, args.device_password)
    t_wait = time.time() + 30
    for d in fleet.devices:
        if not d.connected.wait(max(0.1, t_wait - time.time())) or d.refused:
            print(f"{d.id} could not connect to the broker {args.mqtt_host}:{args.mqtt_port} as "
                  f"{fleet.tenant}/{d.kind}/{d.id}: {d.refused or 'no answer in 30 s'}", file=sys.stderr)
            fleet.stopping = True
            for x in fleet.devices:
                x.client.disconnect()
                x.client.loop_stop()
            return 2
    now = fleet.clock.now()
    fleet.log(f"{len(fleet.devices)} devices connected at sim {iso(now)}")
    # the afternoon command: 15:30, or 10 min after a late start, and in any case over
    # (back to dark) well before daylight ends (civil dusk - margin_s)
    t_day_cmd = max(o + T_DAY_CMD, (now + 10 * M) // M * M)
    t_day_exp = t_day_cmd + (T_DAY_CMD_EXPIRES - T_DAY_CMD)
    if not t_day_exp + S < day_dusk - DAY_BURNER_MARGIN_S * S - 10 * M:
        print(f"started too late: the simulated clock is already at {iso(now)}; the operator's command in "
              f"daylight (until {hhmm(t_day_exp)}) would not end well before dusk ({hhmm(day_dusk)})", file=sys.stderr)
        fleet.stopping = True
        for d in fleet.devices:
            d.client.disconnect()
        return 2
    start = now + 2 * S
    fleet.t_cur = start

    # every device says online and reports at once, then on its interval
    for i, d in enumerate(fleet.devices):
        if isinstance(d, Bus):
            continue
        t = start + i * 50
        fleet.at(t, lambda t, d=d: (d.say_online(t), d.report(t + 1)))
    for c in fleet.cabinets.values():
        fleet.every(fleet.next_phase(start + 5 * S, c.phase, CABINET_INTERVAL_S * S), CABINET_INTERVAL_S * S, c.report)
    for lp in fleet.lamps.values():
        fleet.every(fleet.next_phase(start + 5 * S, lp.phase, LAMP_INTERVAL_S * S), LAMP_INTERVAL_S * S, lp.report)
        for dk, dn in lp.nights:  # switching at dusk and dawn, reported at once
            for t in (dk - GUARD_S * S, dn + GUARD_S * S):
                if t > start:
                    fleet.at(t, lp.report_if_changed)
    # meters: hourly, at a minute of the hour well clear of the leak rule's night window
    # edges, whether "local solar time" is mean or apparent solar time
    lat, lon = METER_POS[LEAK_METER]
    mean, app = solar_offsets_ms(o + 12 * H, lon)
    day = (o + T_LEAK) // (24 * H) * 24 * H + 24 * H
    edges = [day + int(h * H - off) for h in LEAK_NIGHT for off in (mean, app)]

    def clearance(mnt):
        p = o + mnt * M
        return min(min((p - e) % H, (e - p) % H) for e in edges)
    best = max(range(60), key=clearance)
    for i, m in enumerate(fleet.meters.values()):
        fleet.every(fleet.next_phase(start + 5 * S, best * M + i * 7 * S, METER_INTERVAL_S * S), METER_INTERVAL_S * S, m.report)
    # the cycling lamp reports every relay change
    cy = fleet.lamps[CYCLING_LAMP]
    for k in range(1, (T_CYCLE[1] - T_CYCLE[0]) // CYCLE_STEP + 1):
        fleet.at(o + T_CYCLE[0] + k * CYCLE_STEP, cy.report_if_changed)
    # the failing lamp: counters follow the drop in power
    fl = fleet.lamps[FAILING_LAMP]
    for t in (o + T_FAIL[0], o + T_FAIL[1]):
        fleet.at(t, fl.advance)
    # the cabinet's mains: the cabinet says so at once (telemetry and an event), its
    # controllers (battery-backed) report 0 V a moment later
    cab = fleet.cabinets[LOSS_CABINET]
    for t, code in ((o + T_LOSS[0], "supply_lost"), (o + T_LOSS[1], "supply_restored")):
        fleet.at(t, lambda t, code=code: (cab.report(t), cab.publish("event", {"ts": t, "code": code,
                                                                              "detail": "mains monitor"})))
        for j, lp in enumerate(cab.lamps):
            fleet.at(t + 2 * S + j * 500, lp.report)
    # the backlog
    bl = fleet.lamps[BACKLOG_LAMP]
    fleet.at(o + T_BACKLOG[1], bl.send_backlog)
    # the buses start their service (status online, then a position every 10 s)
    for b in fleet.buses.values():
        t0 = o + T_BUS + b.lag
        fleet.at(t0 - 5 * S, b.say_online)
        fleet.every(t0, BUS_INTERVAL_S * S, b.report)
    # the operator
    fleet.at(t_day_cmd, lambda t: op.send_set_light(DAY_CMD_LAMP, True, 50, t_day_exp,
                                                        "on at 50 % in daylight, for a crew inspecting it"))
    fleet.at(t_dawn_cmd, lambda t: op.send_set_light(DAWN_CMD_LAMP, True, 100, t_dawn_cmd_exp,
                                                     "on after dawn for a road works crew"))
    for t in (t_dawn_cmd_exp + S,):
        fleet.at(t, lp202.report_if_changed)

    # progress lines
    def progress(t):
        fleet.log(f"sim {iso(t)}: {sum(d.published for d in fleet.devices)} messages published")
    fleet.every(o + 2 * H, 2 * H, progress)

    try:
        fleet.run_until(None, end)
        # settle: let the hub judge the last readings, then read while the fleet keeps reporting
        settle_until = max(end + 5 * M, fleet.clock.now() + int(3 * speed * 1000))
        fleet.run_until(None, settle_until)
        read_at = fleet.clock.now()
        fleet.log(f"scenario over at sim {iso(end)}; the operator reads the outages (sim {iso(read_at)})")
        for th in op.threads:
            th.join(timeout=30)
        done = threading.Event()
        result: dict = {}

        def do_check():
            try:
                result["r"] = check(fleet, op, truth, info, end, read_at)
            except Exception as e:  # report it rather than hang the fleet
                import traceback
                traceback.print_exc()
                result["error"] = f"{type(e).__name__}: {e}"
            done.set()

        threading.Thread(target=do_check, daemon=True).start()
        fleet.run_until(done, None)
    finally:
        fleet.stopping = True
        for d in fleet.devices:
            if d.client is not None:
                try:
                    d.client.disconnect()
                    d.client.loop_stop()
                except Exception:
                    pass

    if "error" in result:
        print(f"the checker failed: {result['error']}", file=sys.stderr)
        return 2
    r = result["r"]
    passed = (all(v["precision"] == 1.0 and v["recall"] == 1.0 for v in r["kinds"].values())
              and not any(r[k] for k in ("chronology_violations", "late_resolutions", "operator_alarms",
                                         "premature_resolutions", "backlog_findings", "command_findings",
                                         "api_errors")))
    report = {
        "kit": "vendor night (tests/vendor/night.py)",
        "tenant": fleet.tenant,
        "sim_clock": args.sim_clock,
        "scenario": {"origin": iso(o), "end": iso(end), "read_at": iso(read_at), "civil_dusk": iso(dusk),
                     "civil_dawn": iso(dawn), "guard_s": GUARD_S,
                     "wall_seconds": round(time.time() - fleet.t0, 1),
                     "messages_published": sum(d.published for d in fleet.devices),
                     "truth": [{"kind": tr["kind"], "device": tr["device"], "what": tr["what"],
                                "start": iso(tr["start"]), "end": iso(tr["end"]) if tr["end"] else None}
                               for tr in truth],
                     "commands": op.commands},
        "passed": passed,
        **r,
    }
    with open(args.report, "w") as f:
        json.dump(report, f, indent=2)
    print_findings(report)
    return 0 if passed else 1


def print_findings(rep: dict):
    print()
    print(f"{'kind':22} {'exp':>4} {'det':>4} {'tp':>4} {'fp':>4} {'fn':>4} {'prec':>6} {'recall':>6}")
    for k, v in rep["kinds"].items():
        if v["expected"] or v["detected"]:
            print(f"{k:22} {v['expected']:4} {v['detected']:4} {v['true_positives']:4} {v['false_positives']:4} {v['misses']:4} "
                  f"{v['precision']:6.3f} {v['recall']:6.3f}")
    for x in rep["false_positives"]:
        print(f"False alarm: cityhub raised {x['kind']} on {x['device']} at {x['opened_at']} "
              f"({x.get('reason')}); our ground truth has no such fault.")
    for m in rep["misses"]:
        print(f"Missed: no {m['kind']} on {m['device']} for: {m['what']} ({m['start']} .. {m['end']}).")
    names = {"chronology_violations": "Chronology", "late_resolutions": "Late resolution",
             "premature_resolutions": "Premature resolution", "operator_alarms": "Alarm from an operator's command",
             "backlog_findings": "Backlog", "command_findings": "Command", "api_errors": "API"}
    for k, name in names.items():
        for s in rep[k]:
            print(f"{name}: {s}.")
    for s in rep["observations"]:
        print(f"Note: {s}.")
    print("PASS: every kind at precision 1 and recall 1, no violation." if rep["passed"]
          else "FAIL: see the findings above and the report.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("inventory", help="write the fleet's inventory (GeoJSON, docs/inventory.md)")
    a.add_argument("--tenant", required=True)
    a.add_argument("--out", required=True)
    b = sub.add_parser("run", help="run the fleet, the operator and the checker")
    b.add_argument("--tenant", required=True)
    b.add_argument("--mqtt-host", required=True)
    b.add_argument("--mqtt-port", required=True, type=int)
    b.add_argument("--device-password", required=True)
    b.add_argument("--api", required=True)
    b.add_argument("--token", required=True)
    b.add_argument("--sim-clock", required=True)
    b.add_argument("--report", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "inventory":
        with open(args.out, "w") as f:
            json.dump(inventory(args.tenant), f, indent=1)
            f.write("\n")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
