// What the feed's codes mean, in plain words for residents.

import type { Kind, Status, Work } from "./feed";

export const TITLES: Record<Kind, string> = {
  dark_street: "Street lights out",
  water_leak: "Water leak",
  planned_works: "Planned works",
};

/** The status of a repair; planned works not started yet are "Planned", not "Accepted". */
export function statusWords(w: Work): string {
  if (w.kind === "planned_works" && w.status === "accepted") return "Planned";
  const words: Record<Status, string> = { reported: "Reported", accepted: "Accepted", in_work: "In work", done: "Done" };
  return words[w.status];
}

/** Why, when the feed says and the title does not. */
export function causeWords(w: Work): string | null {
  if (w.kind !== "dark_street" || !w.cause) return null;
  if (w.cause === "lamp") return "Failed lamps";
  if (w.cause === "power_supply") return "Power cut to the street lights";
  return null;
}

/**
 * Where: the street and district its devices share. Neither: the whole city when it has no
 * place, else devices in several districts (as the calendar feed says).
 */
export function placeWords(w: Work): string {
  const place = [w.street, w.district].filter(Boolean).join(", ");
  if (place) return place;
  return w.at ? "Several districts" : "Across the city";
}

export function lampWords(n: number): string {
  return `${n.toLocaleString()} ${n === 1 ? "lamp" : "lamps"} out`;
}

/** Repairs are "now"; planned works are listed apart, with their dates. */
export function isNow(w: Work): boolean {
  return w.kind !== "planned_works";
}
