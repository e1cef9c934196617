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

  /** Put every replay where the clock (`t` ms) says. */
  show(t, playing, hard) {
    for (const item of this.items) {
      if (!item.replayer) continue;
      const local = t - item.offset;
      const inside = local >= 0 && local <= item.length;
      item.fig.classList.toggle("is-idle", !inside);
      if (item.idle) item.idle.hidden = inside;
      item.fig.dataset.localMs = String(Math.round(local));
      if (!inside) {
        if (item.playing) item.replayer.pause();
        item.playing = false;
        continue;
      }
      const drifted = Math.abs(item.replayer.getCurrentTime() - local) > DRIFT_MS;
      if (playing && (!item.playing || hard || drifted)) {
        item.replayer.play(local);
        item.playing = true;
      } else if (!playing && (item.playing || hard)) {
        item.replayer.pause(local);
        item.playing = false;
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
