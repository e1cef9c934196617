// The auditor's replay of the stored co-browse streams (rrweb events as JSON lines), on the same
// clock as the recordings: each stream starts at the moment the server started co-browsing
// (its place on the clock comes from the server, not the customer's browser clock), and
// follows the page's play / pause / seek.

import { loadRrweb } from "./cobrowse_load.js";

const DRIFT_MS = 400; // a replay further than this from the clock is put back on it

export class CobrowseReplays {
  constructor(cfg) {
    this.items = [];
    for (const c of cfg.cobrowse || []) {
      const fig = [...document.querySelectorAll(".cobrowse-replay")].find(
        (f) => f.dataset.url === c.url,
      );
      const stage = fig && fig.querySelector(".cobrowse-replay-stage");
      if (!stage) continue;
      const idle = fig.querySelector(".cobrowse-idle");
      this.items.push({ fig, stage, idle, offset: c.tMs, url: c.url, replayer: null });
    }
  }

  /** Fetch every stream and build its replayer (paused at its start). */
  async load() {
    if (this.items.length === 0) return;
    const rrweb = await loadRrweb();
    for (const item of this.items) {
      const response = await fetch(item.url, { credentials: "same-origin" });
      if (!response.ok) {
        item.fig.dataset.error = String(response.status);
        continue;
      }
      const events = (await response.text())
        .split("\n")
        .filter((line) => line.trim())
        .map((line) => JSON.parse(line));
      if (events.length === 0) continue;
      item.length = events[events.length - 1].timestamp - events[0].timestamp;
      item.replayer = new rrweb.Replayer(events, {
        root: item.stage,
        mouseTail: false,
        showWarning: false,
        skipInactive: false,
      });
      item.replayer.on("resize", (size) => fit(item, size));
      item.replayer.pause(0);
      item.playing = false;
      item.fig.dataset.loaded = "true";
    }
  }

  /** Where the last stream ends on the clock (ms; 0 without streams). */
  endMs() {
    return Math.max(0, ...this.items.filter((i) => i.replayer).map((i) => i.offset + i.length));
  }

  /** Put every replay where the clock (`t` ms) says; outside its span it shows its first
   * (before) or last (after) state, dimmed. */
  show(t, playing, hard) {
    for (const item of this.items) {
      if (!item.replayer) continue;
      const local = t - item.offset;
      const inside = local >= 0 && local <= item.length;
      item.fig.classList.toggle("is-idle", !inside);
      if (item.idle) item.idle.hidden = inside;
      item.fig.dataset.localMs = String(Math.round(local));
      if (!inside || !playing) {
        // Past the end: one ms beyond the last event, or rrweb leaves that event out.
        const at = local > item.length ? item.length + 1 : Math.max(local, 0);
        if (item.playing || hard) item.replayer.pause(at);
        item.playing = false;
        continue;
      }
      // Where the replay is by its own start (the replayer's clock runs with ours).
      const expected = item.playing ? item.from + (performance.now() - item.since) : null;
      if (hard || expected === null || Math.abs(expected - local) > DRIFT_MS) {
        item.replayer.play(local);
        item.playing = true;
        item.from = local;
        item.since = performance.now();
      }
    }
  }
}

function fit(item, size) {
  const scale = Math.min(1, item.stage.clientWidth / size.width || 1);
  const wrapper = item.stage.querySelector(".replayer-wrapper");
  if (wrapper) wrapper.style.transform = `scale(${scale})`;
  item.stage.style.height = `${Math.round(size.height * scale)}px`;
}
