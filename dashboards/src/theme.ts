// The color scheme follows the browser's (`prefers-color-scheme`). The style sheet colors
// the page; the canvases (the map, the charts) ask here for theirs and redraw when the
// scheme changes, since a canvas keeps the colors it was drawn with.

const query = window.matchMedia("(prefers-color-scheme: dark)");

/** Whether the page is in its dark scheme now. */
export function dark(): boolean {
  return query.matches;
}

/** Calls `f` whenever the scheme changes, until the returned function is called. */
export function onSchemeChange(f: () => void): () => void {
  query.addEventListener("change", f);
  return () => query.removeEventListener("change", f);
}

/** A color of the style sheet (`--fg`, `--line`...), as the scheme now has it. */
export function cssColor(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}
