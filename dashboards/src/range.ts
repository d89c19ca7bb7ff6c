// A time range people pick: the last 24 hours, 7 or 30 days on the hub's clock, or days
// of their own (whole days in the browser's time zone, the last one included).

import { el } from "./dom";
import { hubClock } from "./time";

export interface Span {
  from: Date;
  to: Date;
  /** It ends now, and moves on with the clock. */
  live: boolean;
  /** "last 7 days", "3 Nov – 9 Nov". */
  label: string;
}

const DAY_MS = 86_400_000;
const PRESETS: [string, string, number][] = [
  ["24h", "Last 24 hours", DAY_MS],
  ["7d", "Last 7 days", 7 * DAY_MS],
  ["30d", "Last 30 days", 30 * DAY_MS],
];
const SHORT = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });

/** "2026-11-09" of a time, in the browser's time zone (what a date input holds). */
function dateValue(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The local midnight starting a date input's day, or null for none. */
function midnight(value: string): Date | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  return m ? new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : null;
}

export class RangePicker {
  readonly el: HTMLElement;
  private choice: HTMLSelectElement;
  private first: HTMLInputElement;
  private last: HTMLInputElement;
  private custom: HTMLElement;
  private problem: HTMLElement;

  /** `initial` is a preset's key (`24h`, `7d`, `30d`). */
  constructor(
    private onChange: (span: Span) => void,
    initial = "24h",
  ) {
    this.choice = el(
      "select",
      { "aria-label": "Time range", "data-range": "" },
      ...PRESETS.map(([key, label]) => el("option", { value: key }, label)),
      el("option", { value: "custom" }, "Chosen days…"),
    );
    this.choice.value = initial;
    this.first = el("input", { type: "date", "aria-label": "First day", required: true });
    this.last = el("input", { type: "date", "aria-label": "Last day", required: true });
    this.problem = el("span", { class: "range-problem", role: "alert" });
    this.custom = el("span", { class: "range-days", hidden: true }, this.first, " – ", this.last);
    this.el = el("span", { class: "range" }, this.choice, this.custom, this.problem);
    this.choice.addEventListener("change", () => {
      const custom = this.choice.value === "custom";
      this.custom.hidden = !custom;
      if (custom && !this.first.value) {
        // Starts as the last 7 days, for the person to change.
        const now = hubClock.now();
        this.first.value = dateValue(now - 6 * DAY_MS);
        this.last.value = dateValue(now);
      }
      this.changed();
    });
    this.first.addEventListener("change", () => this.changed());
    this.last.addEventListener("change", () => this.changed());
  }

  /** The range chosen, as of now (a preset ends now on the hub's clock); null while the
   * chosen days make no range. */
  span(): Span | null {
    const preset = PRESETS.find(([key]) => key === this.choice.value);
    if (preset) {
      const to = hubClock.now();
      return { from: new Date(to - preset[2]), to: new Date(to), live: true, label: preset[1].toLowerCase() };
    }
    const from = midnight(this.first.value);
    const lastDay = midnight(this.last.value);
    if (!from || !lastDay || lastDay < from) return null;
    const to = new Date(lastDay.getFullYear(), lastDay.getMonth(), lastDay.getDate() + 1);
    const label = from.getTime() === lastDay.getTime() ? SHORT.format(from) : `${SHORT.format(from)} – ${SHORT.format(lastDay)}`;
    return { from, to, live: false, label };
  }

  private changed(): void {
    const span = this.span();
    this.problem.textContent = span ? "" : "Choose a first day no later than the last.";
    if (span) this.onChange(span);
  }
}

/** `from` and `to` query parameters of a span, RFC 3339. */
export function spanQuery(span: Span): { from: string; to: string } {
  return { from: span.from.toISOString(), to: span.to.toISOString() };
}
