// Asset markers stamped straight into pixels: one shape per state (so color is never the
// only signal), a size per kind. A stamp is a list of pixel offsets and colors, so a
// marker costs a handful of array writes and 100k of them a few milliseconds.

import { State } from "../assets";
import { dark } from "../theme";

/** RGBA as one little-endian uint32 (what a Uint32Array over ImageData holds). */
function rgba(r: number, g: number, b: number, a = 255): number {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/**
 * ISA-101: the normal states in greys, so that colour means something is wrong; the
 * abnormal ones in colours by priority (red, orange, yellow for outages by severity, then
 * magenta, blue, violet), each also with its own shape so that none depends on colour.
 */
export const COLORS: Record<number, [number, number, number]> = {
  [State.Ok]: [120, 124, 130],
  [State.Off]: [95, 98, 104],
  [State.On]: [150, 154, 160],
  [State.Dimmed]: [130, 134, 140],
  [State.Override]: [105, 108, 116],
  [State.NeverHeard]: [90, 100, 170],
  [State.Fault]: [200, 40, 170],
  [State.Stale]: [120, 80, 200],
  [State.Offline]: [60, 60, 70],
  [State.Maintenance]: [30, 120, 200],
  [State.NoSupply]: [150, 40, 200],
  [State.OutageMinor]: [230, 190, 0],
  [State.OutageMajor]: [240, 110, 0],
  [State.OutageCritical]: [220, 20, 20],
};

/** On the dark scheme's map, the greys and the dark colours that would sink into it, lighter. */
const DARK_COLORS: Record<number, [number, number, number]> = {
  ...COLORS,
  [State.Ok]: [150, 154, 162],
  [State.Off]: [120, 124, 132],
  [State.On]: [195, 198, 205],
  [State.Dimmed]: [170, 174, 182],
  [State.Override]: [140, 144, 152],
  [State.NeverHeard]: [140, 150, 230],
  [State.Stale]: [170, 130, 250],
  [State.Offline]: [175, 175, 188],
  [State.Maintenance]: [90, 170, 250],
  [State.NoSupply]: [200, 110, 250],
};

export const SHAPES: Record<number, string> = {
  [State.Ok]: "square",
  [State.Off]: "ring",
  [State.On]: "dot",
  [State.Dimmed]: "dot",
  [State.Override]: "diamond",
  [State.NeverHeard]: "ring",
  [State.Fault]: "diamond",
  [State.Stale]: "hollow-square",
  [State.Offline]: "cross",
  [State.Maintenance]: "plus",
  [State.NoSupply]: "square",
  [State.OutageMinor]: "hollow-triangle",
  [State.OutageMajor]: "triangle",
  [State.OutageCritical]: "triangle",
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
    case "plus":
      return (ax <= 0.6 && ay <= r) || (ay <= 0.6 && ax <= r);
    case "hollow-square":
      return ax <= r && ay <= r && (ax >= r - 1 || ay >= r - 1);
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
export function makeStamp(state: number, r: number, darkScheme = dark()): Stamp {
  const shape = SHAPES[state];
  const [cr, cg, cb] = (darkScheme ? DARK_COLORS : COLORS)[state];
  const fill = rgba(cr, cg, cb);
  const edge = rgba(Math.round(cr * 0.45), Math.round(cg * 0.45), Math.round(cb * 0.45));
  const dx: number[] = [];
  const dy: number[] = [];
  const color: number[] = [];
  const outlined = r >= 3 && !["ring", "cross", "plus", "hollow-triangle", "hollow-square"].includes(shape);
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
