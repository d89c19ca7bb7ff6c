// Webhooks as the API has them (docs/api.md, "Webhooks"), and their filters and deliveries
// in words. The hub's OpenAPI document lists neither the event types nor the outage kinds
// as vocabularies: they are written out here as the API's documentation gives them.

/** A subscription, and how its deliveries go. */
export interface Webhook {
  id: number;
  tenant: string;
  url: string;
  description: string;
  /** The filters; null lets everything through. */
  event_types: string[] | null;
  kinds: string[] | null;
  severities: string[] | null;
  districts: string[] | null;
  created_by: string;
  created_at: string;
  removed_at: string | null;
  status: "active" | "retrying" | "disabled" | "removed";
  failures: number;
  failing_since: string | null;
  next_attempt_at: string | null;
  disabled_at: string | null;
  disabled_reason: string | null;
  pending: number;
  delivered: number;
}

/** `POST /api/v1/webhooks`'s answer: the secret, shown this once (null for `mailto:`). */
export interface NewWebhook extends Webhook {
  secret: string | null;
}

export interface Attempt {
  at: string;
  /** Null when no answer came. */
  status: number | null;
  error: string | null;
  duration_ms: number;
}

export interface Message {
  id: number;
  webhook_id: string;
  event_type: string;
  payload: { data?: Record<string, unknown> };
  queued_at: string;
  delivered_at: string | null;
  /** The newest ten, newest first. */
  attempts: Attempt[];
}

/** The event types a subscription may ask for, by what they are about. */
export const EVENT_GROUPS: { label: string; types: string[] }[] = [
  {
    label: "Outages",
    types: ["opened", "acknowledged", "shelved", "unshelved", "assigned", "comment", "chattering", "resolved", "closed"].map((s) => `outage.${s}`),
  },
  {
    label: "Work orders",
    types: ["new", "assigned", "in_progress", "done", "verified", "reopened", "closed"].map((s) => `work_order.${s}`),
  },
  { label: "Planned works", types: ["planned_works.announced"] },
];

/** The outage kinds (docs/rules.md), by the assets they concern. */
export const KIND_GROUPS: { label: string; kinds: string[] }[] = [
  { label: "Street lighting", kinds: ["lamp_failure", "day_burner", "lamp_cycling", "voltage_out_of_range", "cabinet_supply_loss", "device_offline"] },
  { label: "Meters", kinds: ["leak", "reverse_flow", "tamper", "meter_silent"] },
  { label: "Buses", kinds: ["off_route", "stopped_too_long", "bunching", "vehicle_silent"] },
];

/** "lamp_failure" → "lamp failure". */
export const words = (name: string): string => name.replace(/_/g, " ");

/** "outage.acknowledged" → "outage acknowledged", "work_order.in_progress" → "work order in progress". */
export const eventWords = (type: string): string => words(type.replace(".", " "));

/** An event type's own part, as its group's checkbox names it: "in progress". */
export const stepWords = (type: string): string => words(type.slice(type.indexOf(".") + 1));

/** The filters in words: "All events", or "Events: outage opened · Severities: critical". */
export function filtersText(w: Pick<Webhook, "event_types" | "kinds" | "severities" | "districts">): string {
  const parts = [
    w.event_types && `Events: ${w.event_types.map(eventWords).join(", ")}`,
    w.kinds && `Kinds: ${w.kinds.map(words).join(", ")}`,
    w.severities && `Severities: ${w.severities.join(", ")}`,
    w.districts && `Districts: ${w.districts.join(", ")}`,
  ].filter(Boolean);
  if (!parts.length) return "All events";
  if (!w.event_types) parts.unshift("All events");
  return parts.join(" · ");
}

/** "120 ms", "2.5 s". */
export function took(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toLocaleString(undefined, { maximumFractionDigits: 1 })} s`;
}

/** What a message is about, from its body: "L-0001 · lamp failure · outage 42". */
export function subject(m: Message): string {
  const d = m.payload?.data ?? {};
  const what = m.event_type.startsWith("work_order.") ? "work order" : m.event_type.startsWith("outage.") ? "outage" : "planned works";
  return [
    typeof d.device === "string" && d.device,
    typeof d.kind === "string" && words(d.kind),
    typeof d.district === "string" && d.district,
    typeof d.id === "number" && `${what} ${d.id}`,
  ]
    .filter(Boolean)
    .join(" · ");
}
