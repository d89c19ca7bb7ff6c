// The status page for residents (public.html, served by the hub at /public/{tenant}/):
// what affects them now and the planned works, on a map and in a list, from the feeds
// beside the page. No sign-in, no cookie, no other request. Read again every 30 s and when
// the tab comes back into view; a refresh that fails says why and keeps the last answer
// on show, with its age.

import "./public.css";
import { duration, whenOn } from "../timeFormat";
import { FeedError, loadBaseMap, loadWorks, workKey, type BaseMap, type Kind, type Works } from "./feed";
import { WorksList } from "./list";
import { SubscribeForm } from "./subscribe";
import { kindIcon, WorksMap } from "./map";
import { TITLES } from "./words";

const REFRESH_MS = 30_000;
/** The soonest and latest a refused refresh is tried again, whatever Retry-After says. */
const RETRY_MIN_MS = 5_000;
const RETRY_MAX_MS = 5 * 60_000;

const map = new WorksMap();
const list = new WorksList();
const legend = document.createElement("ul");
legend.className = "legend";
document.getElementById("map-area")!.append(map.element, legend);
const subscribe = new SubscribeForm();
document.getElementById("list-area")!.append(list.element, subscribe.element);
const updated = document.getElementById("updated")!;
const problemLine = document.getElementById("problem")!;
const cityName = document.getElementById("city")!;

/** The last answer, and when (browser time) it came. */
let works: Works | null = null;
let fetchedAt = 0;
/** Why the last refresh failed; null when it did not. */
let problem: FeedError | null = null;
/** The base map: undefined until read (read again after a failure), null when there is none. */
let base: BaseMap | null | undefined;
let selectedKey: string | null = null;
let nextAt = 0;
let timer = 0;
let busy = false;
let lastTry = 0;
let refreshes = 0;

/** Now on the hub's clock, as far as the last answer tells (its days decide "today"). */
function hubNow(): number {
  return works ? works.generatedAt + (Date.now() - fetchedAt) : Date.now();
}

function selectedIndex(): number {
  return works && selectedKey !== null ? works.items.findIndex((w) => workKey(w) === selectedKey) : -1;
}

function select(index: number, fromMap: boolean): void {
  const item = works?.items[index];
  selectedKey = item ? workKey(item) : null;
  const i = item ? index : -1;
  map.select(i);
  list.select(i, fromMap);
}
map.onSelect = (i) => select(i, true);
list.onSelect = (i) => select(i, false);

function age(ms: number): string {
  return ms < 60_000 ? "less than a minute" : ms < 3_600_000 ? `${Math.floor(ms / 60_000)} min` : duration(ms);
}

/** The line under the header: when the data is from, and what went wrong if anything did. */
function showStatus(): void {
  const now = hubNow();
  const at = works ? whenOn(works.generatedAt, now) : "";
  if (!problem) {
    updated.textContent = works ? `Updated ${at}. Refreshed every 30 s.` : "Loading…";
  } else {
    const again = problem.status === 404 ? "" : ` Trying again in ${Math.max(1, Math.round((nextAt - Date.now()) / 1000))} s.`;
    updated.textContent = works ? `Showing what was known ${age(Date.now() - fetchedAt)} ago (updated ${at}).${again}` : again.trim();
  }
  const said = problem?.message ?? "";
  // Only a change is written, so that a screen reader says it once.
  if (problemLine.textContent !== said) problemLine.textContent = said;
  problemLine.hidden = !problem;
  problemLine.dataset.status = problem ? String(problem.status) : "";
  document.body.dataset.state = problem ? (works ? "stale" : "failed") : works ? "current" : "loading";
}

function showLegend(): void {
  const counts = new Map<Kind, number>();
  for (const w of works?.items ?? []) counts.set(w.kind, (counts.get(w.kind) ?? 0) + 1);
  const rows: HTMLElement[] = (Object.keys(TITLES) as Kind[]).map((k) => {
    const li = document.createElement("li");
    li.append(kindIcon(k), `${TITLES[k]} (${counts.get(k) ?? 0})`);
    return li;
  });
  const unplaced = works?.items.filter((w) => !w.at).length ?? 0;
  if (unplaced) {
    const li = document.createElement("li");
    li.className = "unplaced";
    li.textContent = `${unplaced} across the whole city: in the list only`;
    rows.push(li);
  }
  legend.replaceChildren(...rows);
}

function render(): void {
  if (works) {
    const city = works.name || decodeURIComponent(location.pathname.split("/").filter(Boolean).at(-1) ?? "");
    cityName.textContent = city;
    document.title = `Works and outages · ${city}`;
    const i = selectedIndex();
    if (i < 0) selectedKey = null;
    list.render(works, i, hubNow());
    map.setItems(works.items, i);
    document.body.dataset.loaded = "";
  }
  document.body.classList.toggle("no-map", base !== undefined && !map.hasContent());
  showLegend();
  showStatus();
}

async function refresh(): Promise<void> {
  if (busy || Date.now() - lastTry < 1000) return;
  busy = true;
  lastTry = Date.now();
  window.clearTimeout(timer);
  let wait = REFRESH_MS;
  const baseMap =
    base === undefined
      ? loadBaseMap().then(
          (b) => {
            base = b;
            map.setBase(b);
          },
          () => {}, // asked again at the next refresh; the items show without it
        )
      : null;
  try {
    const answer = await loadWorks();
    works = answer;
    subscribe.show(answer.subscriptions, answer.districts);
    fetchedAt = Date.now();
    problem = null;
  } catch (e) {
    problem = e instanceof FeedError ? e : new FeedError(0, null, "The city's server could not be reached.");
    if (problem.retryAfter) wait = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, problem.retryAfter * 1000));
  }
  await baseMap;
  busy = false;
  nextAt = Date.now() + wait;
  timer = window.setTimeout(onTimer, wait);
  refreshes++;
  document.body.dataset.refreshes = String(refreshes);
  render();
}

/** A hidden tab asks nothing; it catches up when it is shown again. */
function onTimer(): void {
  if (!document.hidden) void refresh();
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) void refresh();
});
window.addEventListener("focus", () => void refresh());
// Ages and "trying again in" move on between refreshes.
window.setInterval(showStatus, 5_000);

void refresh();
