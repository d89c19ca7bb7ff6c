// The hub's live events (`GET /api/v1/events`, docs/api.md "Live events"): one
// EventSource for the whole app; views subscribe to the types they show. On `resync`, and
// after the browser reconnects on its own, subscribers refetch what they show.

export type EventType = "outage" | "work_order" | "command" | "device";
type Handler = (data: Record<string, unknown>) => void;

const handlers: Record<EventType, Set<Handler>> = {
  outage: new Set(),
  work_order: new Set(),
  command: new Set(),
  device: new Set(),
};
const resyncs = new Set<(types: EventType[]) => void>();
let source: EventSource | null = null;
let opened = false;
/** Counts of events received, by type (shown in the status bar, read by the tests). */
export const received: Record<string, number> = { outage: 0, work_order: 0, command: 0, device: 0, resync: 0 };
let statusListener: (state: string) => void = () => {};

export function onEvent(type: EventType, h: Handler): () => void {
  handlers[type].add(h);
  return () => handlers[type].delete(h);
}

export function onResync(h: (types: EventType[]) => void): () => void {
  resyncs.add(h);
  return () => resyncs.delete(h);
}

export function onStatus(h: (state: string) => void): void {
  statusListener = h;
}

/** Every view refetches what it shows. */
export function resyncAll(): void {
  resync(["outage", "work_order", "command", "device"]);
}

function resync(types: EventType[]): void {
  for (const h of resyncs) h(types);
}

/** Opens the stream (once). `url` is the events endpoint. */
export function connect(url = "/api/v1/events"): void {
  if (source) return;
  const s = new EventSource(url, { withCredentials: true });
  source = s;
  s.onopen = () => {
    statusListener("live");
    // A reconnection may have missed events: refetch.
    if (opened) resync(["outage", "work_order", "command", "device"]);
    opened = true;
  };
  s.onerror = () => statusListener(s.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  for (const type of Object.keys(handlers) as EventType[]) {
    s.addEventListener(type, (e) => {
      received[type]++;
      let data: Record<string, unknown>;
      try {
        data = JSON.parse((e as MessageEvent).data);
      } catch {
        return;
      }
      for (const h of handlers[type]) h(data);
    });
  }
  s.addEventListener("resync", (e) => {
    received.resync++;
    let types: EventType[] = ["outage", "work_order", "command", "device"];
    try {
      const d = JSON.parse((e as MessageEvent).data);
      if (Array.isArray(d.types)) types = d.types;
    } catch {
      /* keep every type */
    }
    resync(types);
  });
}

export function disconnect(): void {
  source?.close();
  source = null;
  opened = false;
}
