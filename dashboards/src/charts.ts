// The charts (uPlot) of the asset panel and the reports: the style sheet's colors in both
// schemes (drawn again when the scheme changes: a canvas keeps its colors), 13 px labels,
// times on a 24-hour clock, and as wide as their box (a phone's screen, the panel).

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { cssColor, dark, onSchemeChange } from "./theme";
import { clockTime, day, when } from "./time";

const FONT = '13px system-ui, -apple-system, "Segoe UI", sans-serif';

/** A series color per scheme: the light one, then one that reads on the dark background. */
export type Colors = [light: string, dark: string];
export const SERIES_COLORS = {
  amber: ["#d08a00", "#f2b53a"],
  blue: ["#2a62c9", "#7aa7ff"],
  green: ["#2f9e5b", "#63cf8c"],
  grey: ["#888888", "#a9b1ba"],
  red: ["#c03030", "#ff7b7b"],
} satisfies Record<string, Colors>;

export function color([light, darkColor]: Colors): string {
  return dark() ? darkColor : light;
}

/** An axis in the page's colors; `time` for the x axis of times ("18:04") or days ("22 Nov"). */
export function axis(options: uPlot.Axis = {}, time = false): uPlot.Axis {
  const line = cssColor("--line");
  return {
    stroke: cssColor("--fg"),
    font: FONT,
    labelFont: `600 ${FONT}`,
    grid: { stroke: line, width: 1 },
    ticks: { stroke: line, width: 1 },
    ...(time
      ? { values: (_u: uPlot, splits: number[], _i: number, _space: number, incr: number) => splits.map((s) => (s === null ? "" : incr >= 86400 ? day(s * 1000) : clockTime(s * 1000))) }
      : {}),
    ...options,
  };
}

/** The x series of times: the legend writes the cursor's time as the lists do. */
export const timeSeries: uPlot.Series = { value: (_u, v) => (v === null || v === undefined ? "—" : when(v * 1000)) };

/**
 * A uPlot chart in `box`, as wide as the box (at most `maxWidth`); `options` is called
 * again to draw it anew when the color scheme changes.
 */
export class Chart {
  private plot: uPlot;
  private observer: ResizeObserver;
  private frame = 0;
  private destroyed = false;
  private unsubscribe: () => void;

  constructor(
    private options: (width: number) => uPlot.Options,
    data: uPlot.AlignedData,
    private box: HTMLElement,
    private maxWidth = Infinity,
  ) {
    this.plot = new uPlot(options(this.width()), data, box);
    // Resized after the layout settles (never inside the observer's own callback).
    this.observer = new ResizeObserver(() => {
      cancelAnimationFrame(this.frame);
      this.frame = requestAnimationFrame(() => {
        const w = this.width();
        if (!this.destroyed && w !== this.plot.width) this.plot.setSize({ width: w, height: this.plot.height });
      });
    });
    this.observer.observe(box);
    this.unsubscribe = onSchemeChange(this.redraw);
  }

  private width(): number {
    return Math.max(200, Math.min(this.maxWidth, Math.floor(this.box.clientWidth) || 340));
  }

  private redraw = (): void => {
    if (this.destroyed) return;
    const data = this.plot.data;
    this.plot.destroy();
    this.plot = new uPlot(this.options(this.width()), data, this.box);
  };

  setData(data: uPlot.AlignedData): void {
    this.plot.setData(data);
  }

  destroy(): void {
    this.destroyed = true;
    cancelAnimationFrame(this.frame);
    this.observer.disconnect();
    this.unsubscribe();
    this.plot.destroy();
  }
}

/** One line of a chart of days. */
export interface DayLine {
  label: string;
  values: (number | null)[];
  colors: Colors;
  dash?: number[];
}

/**
 * A chart of values per UTC day in `box`: `days` are the days' starts (Unix seconds, as
 * the API gives them), written as dates on the axis, as many as fit.
 */
export function dayChart(box: HTMLElement, days: number[], lines: DayLine[], height = 220): Chart {
  const ticks = {
    splits: (u: { width: number }) => days.filter((_x, k) => k % Math.max(1, Math.ceil((days.length * 64) / u.width)) === 0),
    values: (_u: unknown, splits: number[]) => splits.map((s) => day(s * 1000, true)),
  };
  return new Chart(
    (width) => ({
      width,
      height,
      scales: { x: { range: (_u, min, max) => [(min ?? 0) - 43200, (max ?? 0) + 43200] } },
      series: [
        { label: "Day", value: (_u, v) => (v === null ? "—" : day(v * 1000, true)) },
        ...lines.map((l) => ({ label: l.label, stroke: color(l.colors), width: 2, dash: l.dash, points: { show: true } })),
      ],
      axes: [axis(ticks as uPlot.Axis), axis()],
    }),
    [days, ...lines.map((l) => l.values)] as uPlot.AlignedData,
    box,
    520,
  );
}

/** The UTC days' starts (Unix seconds) from the one holding `from` to the one holding `to`. */
export function utcDays(from: Date, to: Date): number[] {
  const out: number[] = [];
  const first = Math.floor(from.getTime() / 86_400_000);
  const last = Math.floor((to.getTime() - 1) / 86_400_000);
  for (let d = first; d <= last; d++) out.push(d * 86_400);
  return out;
}
