// The status page's list: what affects residents now (dark streets, water leaks), then the
// planned works, each item a button that shows it on the map.

import { el, keyboardRows } from "../dom";
import { whenOn, whenExactly } from "../timeFormat";
import { workKey, type Work, type Works } from "./feed";
import { kindIcon } from "./map";
import { causeWords, isNow, lampWords, placeWords, statusWords, TITLES } from "./words";

/** A `<time>`: to the minute, the date when not `today`'s; to the second as its tooltip. */
function timeEl(iso: string, today: number): HTMLTimeElement {
  const t = el("time", { datetime: iso, title: whenExactly(iso) });
  t.textContent = whenOn(iso, today);
  return t;
}

function itemEl(w: Work, index: number, now: number): HTMLLIElement {
  const planned = w.kind === "planned_works";
  const head = el(
    "span",
    { class: "item-head" },
    kindIcon(w.kind),
    el("span", { class: "title" }, TITLES[w.kind]),
    el("span", { class: `status st-${w.status}` }, statusWords(w)),
  );
  const detail = [w.kind === "dark_street" ? lampWords(w.count) : null, causeWords(w)].filter(Boolean).join(" · ");
  const started = Date.parse(w.since) <= now;
  const since = el("span", { class: "since" }, planned && !started ? "Starts " : "Since ", timeEl(w.since, now));
  let end: HTMLElement;
  if (planned) {
    end = el("span", { class: "eta" }, ...(w.expected_end ? ["Ends ", timeEl(w.expected_end, now)] : ["No end date yet"]));
  } else if (!w.expected_end) {
    end = el("span", { class: "eta none" }, "No date yet");
  } else {
    // A deadline gone by is not hidden: it is said as past.
    const late = Date.parse(w.expected_end) < now && w.status !== "done";
    end = el("span", { class: late ? "eta late" : "eta" }, late ? "Was expected fixed by " : "Expected fixed by ", timeEl(w.expected_end, now));
  }
  const button = el(
    "button",
    { type: "button", class: "item", "data-index": index, "data-key": workKey(w), "data-kind": w.kind, "data-status": w.status, "aria-pressed": "false" },
    head,
    el("span", { class: "where" }, placeWords(w)),
    detail ? el("span", { class: "detail" }, detail) : null,
    el("span", { class: "times" }, since, end),
  );
  return el("li", {}, button);
}

export class WorksList {
  readonly element: HTMLElement;
  onSelect: (index: number) => void = () => {};

  constructor() {
    this.element = el("div", { class: "lists" }, el("p", { class: "loading" }, "Loading…"));
    this.element.addEventListener("click", (e) => {
      const item = (e.target as Element).closest<HTMLElement>("button.item");
      if (item) this.onSelect(Number(item.dataset.index));
    });
    this.element.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.onSelect(-1);
    });
    keyboardRows(this.element, "button.item");
  }

  /** Shows `works` (null: none yet), `selected` pressed; `now` is the hub's time (ms). */
  render(works: Works | null, selected: number, now: number): void {
    if (!works) return;
    const focused = (document.activeElement as HTMLElement | null)?.closest<HTMLElement>("button.item")?.dataset.key;
    const indexed = works.items.map((w, i) => [w, i] as const);
    const current = indexed.filter(([w]) => isNow(w));
    const planned = indexed.filter(([w]) => !isNow(w));
    const group = (name: string, heading: string, items: typeof indexed, none: string) =>
      el(
        "section",
        { class: "group", "data-group": name, "aria-labelledby": `group-${name}` },
        el("h2", { id: `group-${name}` }, heading, items.length ? el("span", { class: "n" }, ` (${items.length})`) : null),
        items.length ? el("ol", { class: "items" }, ...items.map(([w, i]) => itemEl(w, i, now))) : el("p", { class: "none" }, none),
      );
    if (!works.items.length) {
      this.element.replaceChildren(
        el("p", { class: "all-clear" }, "Nothing affects the city right now."),
        el("p", { class: "none" }, "No street lights out, no water leaks, no planned works."),
      );
    } else {
      this.element.replaceChildren(
        group("now", "Now", current, "No street lights out or water leaks."),
        group("planned", "Planned works", planned, "No planned works."),
      );
    }
    this.select(selected, false);
    // A refresh keeps the keyboard where it was (the list is drawn anew).
    if (focused !== undefined) {
      const again = [...this.element.querySelectorAll<HTMLElement>("button.item")].find((b) => b.dataset.key === focused);
      again?.focus({ preventScroll: true });
    }
  }

  /** Marks item `index` as the one shown on the map; `reveal` scrolls it into view. */
  select(index: number, reveal: boolean): void {
    for (const b of this.element.querySelectorAll<HTMLElement>("button.item")) {
      const on = Number(b.dataset.index) === index;
      b.setAttribute("aria-pressed", String(on));
      if (on && reveal) b.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
  }
}
