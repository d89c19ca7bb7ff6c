// Devices' fields as people read them: a label and a unit for each telemetry field and each
// history series (docs/api.md, "Telemetry history"), speeds in km/h, ratios in percent.

/** How one field is shown: label, unit, and the factor from the API's unit to it. */
export interface Shown {
  label: string;
  unit: string;
  factor: number;
}

const f = (label: string, unit = "", factor = 1): Shown => ({ label, unit, factor });

/** Telemetry fields (the latest state, live events). */
const TELEMETRY: Record<string, Shown> = {
  on: f("switched on"),
  dim: f("dim level", "%"),
  power_w: f("power", "W"),
  voltage_v: f("voltage", "V"),
  current_a: f("current", "A"),
  pf: f("power factor"),
  energy_wh: f("energy meter", "kWh", 0.001),
  burn_hours: f("burning hours", "h"),
  lux: f("light level", "lx"),
  fault: f("fault"),
  supply: f("mains supply"),
  contactor_on: f("contactor on"),
  door_open: f("door open"),
  power_kw: f("power", "kW"),
  energy_kwh: f("energy meter", "kWh"),
  medium: f("medium"),
  total: f("index"),
  flow_m3h: f("flow", "m³/h"),
  pressure_bar: f("pressure", "bar"),
  temp_supply_c: f("supply temperature", "°C"),
  temp_return_c: f("return temperature", "°C"),
  battery_pct: f("battery", "%"),
  tamper: f("tamper"),
  reverse_flow: f("reverse flow"),
  lat: f("latitude", "°"),
  lon: f("longitude", "°"),
  speed_mps: f("speed", "km/h", 3.6),
  bearing_deg: f("heading", "°"),
  route: f("route"),
  trip: f("trip"),
  occupancy_pct: f("occupancy", "%"),
  odometer_m: f("odometer", "km", 0.001),
};

/** A history series: its bucket field, how it is shown, and the telemetry field a live
 * reading adds to it (none for what only a bucket has: a maximum, a count). */
export interface Series extends Shown {
  field: string;
  live?: string;
}

const s = (field: string, label: string, unit: string, live?: string, factor = 1): Series => ({ field, label, unit, factor, live });

/** Every series of each kind, the one drawn first at the head. */
export const SERIES: Record<string, Series[]> = {
  light: [
    s("power_avg_w", "power", "W", "power_w"),
    s("power_max_w", "power (highest)", "W"),
    s("dim_avg", "dim level", "%", "dim"),
    s("voltage_min_v", "voltage (lowest)", "V", "voltage_v"),
    s("voltage_max_v", "voltage (highest)", "V", "voltage_v"),
    s("on_ratio", "switched on", "%", undefined, 100),
    s("energy_wh", "energy used", "Wh"),
    s("burning_s", "burning time", "min", undefined, 1 / 60),
    s("fault_samples", "readings with a fault", ""),
    s("samples", "readings", ""),
  ],
  cabinet: [
    s("power_avg_kw", "power", "kW", "power_kw"),
    s("power_max_kw", "power (highest)", "kW"),
    s("voltage_min_v", "voltage (lowest)", "V", "voltage_v"),
    s("voltage_max_v", "voltage (highest)", "V", "voltage_v"),
    s("supply_ratio", "mains supply", "%", undefined, 100),
    s("contactor_on_ratio", "contactor on", "%", undefined, 100),
    s("door_open_samples", "readings with the door open", ""),
    s("energy_kwh", "energy used", "kWh"),
    s("samples", "readings", ""),
  ],
  meter: [
    s("flow_avg_m3h", "flow", "m³/h", "flow_m3h"),
    s("flow_min_m3h", "flow (lowest)", "m³/h"),
    s("flow_max_m3h", "flow (highest)", "m³/h"),
    s("consumption", "consumption", ""),
    s("total", "index", "", "total"),
    s("power_avg_kw", "power", "kW", "power_kw"),
    s("pressure_avg_bar", "pressure", "bar", "pressure_bar"),
    s("temp_supply_avg_c", "supply temperature", "°C", "temp_supply_c"),
    s("temp_return_avg_c", "return temperature", "°C", "temp_return_c"),
    s("battery_min_pct", "battery (lowest)", "%", "battery_pct"),
    s("tamper_samples", "readings with tamper", ""),
    s("reverse_flow_samples", "readings with reverse flow", ""),
    s("samples", "readings", ""),
  ],
  vehicle: [
    s("speed_avg_mps", "speed", "km/h", "speed_mps", 3.6),
    s("speed_max_mps", "speed (highest)", "km/h", undefined, 3.6),
    s("occupancy_avg_pct", "occupancy", "%", "occupancy_pct"),
    s("distance_m", "distance", "km", undefined, 0.001),
    s("samples", "readings", ""),
  ],
};

/** "speed (km/h)", "readings". */
export function seriesLabel(x: Shown): string {
  return x.unit ? `${x.label} (${x.unit})` : x.label;
}

/** A number as people read it: at most 3 significant decimals, the locale's separators. */
export function num(v: number): string {
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return v.toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** A telemetry fact: its label and its value with its unit ("speed", "43 km/h"). */
export function fact(field: string, v: unknown): [string, string] {
  const shown = TELEMETRY[field];
  const label = shown?.label ?? field.replace(/_/g, " ");
  if (v === null || v === undefined) return [label, "none"];
  if (typeof v === "boolean") return [label, v ? "yes" : "no"];
  if (typeof v === "number") {
    const x = v * (shown?.factor ?? 1);
    return [label, shown?.unit ? `${num(x)} ${shown.unit}` : num(x)];
  }
  return [label, String(v)];
}
