// How times are written for people, without any clock of its own: the caller says what
// "today" is (the hub's clock in the control center, the feed's time on the public page).
//
// Times are written in the browser's locale and time zone on a 24-hour clock, to the
// minute ("18:04", and "18:04, 22 Nov" when not today); a tooltip adds the seconds, never
// a fraction.

export const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
export const DAY = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const DAY_YEAR = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });
const FULL = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});

function sameDay(a: Date, b: Date): boolean {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** "18:04" on the day of `today` (ms), "18:04, 22 Nov" another day; "—" for none. */
export function whenOn(t: string | number | null | undefined, today: number): string {
  if (t === null || t === undefined || t === "") return "—";
  const d = new Date(t);
  if (isNaN(d.getTime())) return "—";
  const now = new Date(today);
  if (sameDay(d, now)) return TIME.format(d);
  return `${TIME.format(d)}, ${(d.getFullYear() === now.getFullYear() ? DAY : DAY_YEAR).format(d)}`;
}

/** "22 Nov 2026, 18:04:09": to the second, for tooltips. */
export function whenExactly(t: string | number): string {
  const d = new Date(t);
  return isNaN(d.getTime()) ? "" : FULL.format(d);
}

/** "3 h 05 min", "45 s": a duration for people. */
export function duration(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${s % 60} s`;
}
