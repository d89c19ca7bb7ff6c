// Asset markers stamped straight into pixels: one shape per state (so color is never the
// only signal), a size per kind. A stamp is a list of pixel offsets and colors, so a
// marker costs a handful of array writes and 100k of them a few milliseconds.

import { State } from "../assets";

/** RGBA as one little-endian uint32 (what a Uint32Array over ImageData holds). */
function rgba(r: number, g: number, b: number, a = 255): number {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

export const COLORS: Record<number, [number, number, number]> = {
  [State.Unknown]: [150, 150, 160],
  [State.Dark]: [70, 110, 200],
  [State.Burning]: [240, 190, 30],
  [State.Ok]: [60, 160, 100],
  [State.Offline]: [110, 110, 120],
  [State.Fault]: [200, 60, 160],
  [State.Outage]: [220, 40, 40],
  [State.Acknowledged]: [235, 120, 20],
};

export const SHAPES: Record<number, string> = {
  [State.Unknown]: "ring",
  [State.Dark]: "dot",
  [State.Burning]: "dot",
  [State.Ok]: "square",
  [State.Offline]: "cross",
  [State.Fault]: "diamond",
  [State.Outage]: "triangle",
  [State.Acknowledged]: "hollow-triangle",
};

export interface Stamp {
  dx: Int16Array;
  dy: Int16Array;
  color: Uint32Array;
  /** Half size in pixels, for hit testing. */
  r: number;
}

function inside(shape: string, x: number, y: number, r: number): boolean {
  const ax = Math.abs(x);
  const ay = Math.abs(y);
  switch (shape) {
    case "dot":
      return x * x + y * y <= r * r + 0.5;
    case "ring": {
      const d = x * x + y * y;
      return d <= r * r + 0.5 && d >= (r - 1.2) * (r - 1.2);
    }
    case "cross":
      return (Math.abs(x - y) <= 0.6 || Math.abs(x + y) <= 0.6) && ax <= r && ay <= r;
    case "triangle": {
      // Pointing up: apex at -r, base at +r.
      const t = (y + r) / (2 * r);
      return y >= -r && y <= r && ax <= t * r + 0.5;
    }
    case "diamond":
      return ax + ay <= r + 0.5;
    case "hollow-triangle": {
      const t = (y + r) / (2 * r);
      const outer = y >= -r && y <= r && ax <= t * r + 0.5;
      const ti = (y + r - 2.5) / (2 * r - 4);
      const inner = r >= 3 && y >= -r + 2.5 && y <= r - 1.5 && ax <= ti * (r - 2) - 0.2;
      return outer && !inner;
    }
    default:
      return ax <= r && ay <= r;
  }
}

/** The stamp of `state` at half size `r`: the shape in its color with a dark edge. */
export function makeStamp(state: number, r: number): Stamp {
  const shape = SHAPES[state];
  const [cr, cg, cb] = COLORS[state];
  const fill = rgba(cr, cg, cb);
  const edge = rgba(Math.round(cr * 0.45), Math.round(cg * 0.45), Math.round(cb * 0.45));
  const dx: number[] = [];
  const dy: number[] = [];
  const color: number[] = [];
  const outlined = r >= 3 && shape !== "ring" && shape !== "cross" && shape !== "hollow-triangle";
  for (let y = -r - 1; y <= r + 1; y++) {
    for (let x = -r - 1; x <= r + 1; x++) {
      if (inside(shape, x, y, r)) {
        dx.push(x);
        dy.push(y);
        const border =
          outlined &&
          (!inside(shape, x + 1, y, r) || !inside(shape, x - 1, y, r) || !inside(shape, x, y + 1, r) || !inside(shape, x, y - 1, r));
        color.push(border ? edge : fill);
      }
    }
  }
  return { dx: Int16Array.from(dx), dy: Int16Array.from(dy), color: Uint32Array.from(color), r };
}

/** A small canvas of a marker, for the legend and lists. */
export function markerIcon(state: number, size = 14): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.width = size;
  c.height = size;
  c.className = "marker-icon";
  c.setAttribute("aria-hidden", "true");
  const ctx = c.getContext("2d")!;
  const img = ctx.createImageData(size, size);
  const px = new Uint32Array(img.data.buffer);
  const s = makeStamp(state, Math.floor(size / 2) - 2);
  const cx = Math.floor(size / 2);
  for (let k = 0; k < s.dx.length; k++) px[(cx + s.dy[k]) * size + cx + s.dx[k]] = s.color[k];
  ctx.putImageData(img, 0, 0);
  return c;
}
