// An audible alert for new high-priority alarms: when an outage of critical or major
// severity opens (its live `outage` event), a short two-tone chime, if the operator turned
// the sound on (a button in the header, remembered by the browser). Made with Web Audio:
// no sound file to fetch. A burst of openings (a storm) chimes once, not once per outage.

import { el } from "./dom";
import * as live from "./live";

const KEY = "cityhub.sound";
/** Severities that chime. */
const LOUD = new Set(["critical", "major"]);
/** Openings within this many ms of a chime are covered by it. */
const QUIET_MS = 5000;

export class Alarm {
  readonly button: HTMLButtonElement;
  /** Chimes played (read by the tests, which cannot hear). */
  chimes = 0;
  private on = localStorage.getItem(KEY) === "on";
  private last = 0;
  private audio: AudioContext | null = null;

  constructor() {
    this.button = el("button", { type: "button", class: "link sound", "aria-pressed": String(this.on) });
    this.label();
    this.button.addEventListener("click", () => {
      this.on = !this.on;
      localStorage.setItem(KEY, this.on ? "on" : "off");
      this.label();
      // A browser lets a page play sound once a person has acted on it: this click.
      if (this.on) this.context();
    });
    live.onEvent("outage", (e) => {
      if (e.transition === "opened" && LOUD.has(String(e.severity))) this.chime();
    });
  }

  private label(): void {
    this.button.setAttribute("aria-pressed", String(this.on));
    // Words, not an emoji: a control room's browser may have no emoji font.
    this.button.textContent = this.on ? "Sound: on" : "Sound: off";
    this.button.title = this.on ? "A chime for each new critical or major outage; click to silence" : "Click for a chime at each new critical or major outage";
  }

  private context(): AudioContext | null {
    try {
      this.audio ??= new AudioContext();
      if (this.audio.state === "suspended") void this.audio.resume();
    } catch {
      this.audio = null;
    }
    return this.audio;
  }

  private chime(): void {
    const now = Date.now();
    if (!this.on || now - this.last < QUIET_MS) return;
    this.last = now;
    this.chimes++;
    const ctx = this.context();
    if (!ctx) return;
    const t = ctx.currentTime;
    for (const [i, freq] of [880, 660].entries()) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.2, t + i * 0.25 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.25 + 0.22);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t + i * 0.25);
      osc.stop(t + i * 0.25 + 0.25);
    }
  }
}
