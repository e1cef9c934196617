// The auditor's case page: both parties' recordings played on one common clock (one play/pause
// button, one scrubber), the timeline's entries seek both videos, and the verdict form posts
// JSON with the CSRF header. A video shows "not yet speaking" while the clock is before its
// offset or after its end.

import { CobrowseReplays } from "./audit_cobrowse.js";
import { $, announce, config, msg } from "./common.js";

const DRIFT_S = 0.25; // a video further than this from the clock is put back on it

const cfg = config();
const players = (cfg.recordings || [])
  .filter((r) => !r.deleted)
  .map((r) => ({ ...r, video: $(`video-${r.side}`), idle: $(`idle-${r.side}`) }))
  .filter((p) => p.video);
// The session's length on the clock: the recordings, and co-browsing once its streams are loaded.
let totalMs = Math.max(0, ...players.map((p) => p.offsetMs + p.durationMs));
const seekable = [...document.querySelectorAll(".timeline-entry[data-t-ms]")];
const replays = new CobrowseReplays(cfg);

// The review states in words (each key written out: the catalogue test finds them).
const STATE_TEXT = {
  unreviewed: "js.audit.state.unreviewed",
  auto_flagged: "js.audit.state.auto_flagged",
  second_review: "js.audit.state.second_review",
  confirmed: "js.audit.state.confirmed",
  cleared: "js.audit.state.cleared",
  upheld: "js.audit.state.upheld",
};

const clock = { t: 0, playing: false, startedAt: 0, startT: 0, frame: 0 };

function mmss(ms) {
  const s = Math.floor(Math.max(ms, 0) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function now() {
  if (!clock.playing) return clock.t;
  return clock.startT + (performance.now() - clock.startedAt);
}

/** Put one video where the common clock says; "not yet speaking" outside its span. */
function place(p, t, hard) {
  const local = (t - p.offsetMs) / 1000;
  const inside = local >= 0 && local < p.durationMs / 1000;
  p.video.classList.toggle("idle", !inside);
  p.video.closest("figure").classList.toggle("is-idle", !inside);
  if (p.idle) p.idle.hidden = inside;
  if (!inside) {
    if (!p.video.paused) p.video.pause();
    const edge = local < 0 ? 0 : p.durationMs / 1000;
    if (hard && Math.abs(p.video.currentTime - edge) > DRIFT_S) p.video.currentTime = edge;
    return;
  }
  const drifted = !p.video.seeking && Math.abs(p.video.currentTime - local) > DRIFT_S;
  if (hard || drifted) p.video.currentTime = local;
  if (clock.playing && p.video.paused) {
    p.video.play().catch((err) => console.warn("play refused", p.side, err));
  } else if (!clock.playing && !p.video.paused) {
    p.video.pause();
  }
}

function highlight(t) {
  let current = null;
  for (const li of seekable) {
    if (Number(li.dataset.tMs) <= t) current = li;
  }
  for (const li of seekable) {
    const on = li === current && (clock.playing || t > 0);
    li.classList.toggle("current", on);
    if (on) li.setAttribute("aria-current", "true");
    else li.removeAttribute("aria-current");
  }
}

function show(t, hard = false) {
  for (const p of players) place(p, t, hard);
  replays.show(t, clock.playing, hard);
  const scrubber = $("audit-scrubber");
  if (scrubber && document.activeElement !== scrubber) scrubber.value = String(Math.round(t));
  if (scrubber) scrubber.setAttribute("aria-valuetext", mmss(t));
  $("audit-clock").textContent = `${mmss(t)} / ${mmss(totalMs)}`;
  highlight(t);
}

function tick() {
  const t = now();
  if (t >= totalMs) {
    pause(totalMs);
    return;
  }
  show(t);
  clock.frame = window.requestAnimationFrame(tick);
}

function setButton() {
  const button = $("audit-play");
  button.textContent = msg(clock.playing ? "js.audit.pause" : "js.audit.play");
  button.setAttribute("aria-pressed", String(clock.playing));
}

function play() {
  if (clock.playing || players.length === 0) return;
  if (clock.t >= totalMs) clock.t = 0;
  clock.playing = true;
  clock.startT = clock.t;
  clock.startedAt = performance.now();
  setButton();
  show(clock.t, true);
  clock.frame = window.requestAnimationFrame(tick);
}

function pause(at = now()) {
  window.cancelAnimationFrame(clock.frame);
  clock.playing = false;
  clock.t = Math.min(Math.max(at, 0), totalMs);
  setButton();
  show(clock.t, true);
}

/** Move the common clock to `t` ms; playing goes on from there. */
function seek(t) {
  const target = Math.min(Math.max(Number(t) || 0, 0), totalMs);
  clock.t = target;
  clock.startT = target;
  clock.startedAt = performance.now();
  show(target, true);
  announce(msg("js.audit.at", { time: mmss(target) }));
}

function setupPlayer() {
  const button = $("audit-play");
  if (!button) return;
  if (players.length === 0) {
    button.disabled = true;
    $("audit-scrubber").disabled = true;
    return;
  }
  $("audit-scrubber").max = String(totalMs);
  button.addEventListener("click", () => (clock.playing ? pause() : play()));
  $("audit-scrubber").addEventListener("input", (event) => seek(event.target.value));
  document.addEventListener("click", (event) => {
    const target = event.target.closest(".timeline-seek");
    if (target) seek(target.dataset.tMs);
  });
  for (const p of players) {
    // Metadata arrive after the first placement: put the video on the clock again.
    p.video.addEventListener("loadedmetadata", () => place(p, now(), true));
  }
  show(0, true);
  replays
    .load()
    .then(() => {
      totalMs = Math.max(totalMs, replays.endMs());
      $("audit-scrubber").max = String(totalMs);
      replays.show(now(), clock.playing, true);
      show(now());
    })
    .catch((err) => console.warn("co-browse replay:", err));
}

// ---- the verdict -------------------------------------------------------------------------

function verdictError(text) {
  const box = $("verdict-error");
  box.textContent = text || "";
  box.hidden = !text;
  $("verdict-comment").toggleAttribute("aria-invalid", !!text);
}

async function submitVerdict(event) {
  event.preventDefault();
  const form = $("verdict-form");
  const verdict = form.querySelector("input[name=verdict]:checked")?.value || "confirm";
  const comment = $("verdict-comment").value.trim();
  if (verdict === "flag" && !comment) {
    verdictError(msg("js.audit.comment_required"));
    $("verdict-comment").focus();
    return;
  }
  verdictError(null);
  const submit = $("verdict-submit");
  submit.disabled = true;
  let body = null;
  let ok = false;
  try {
    const response = await fetch(cfg.verdictUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cfg.csrf },
      body: JSON.stringify({ verdict, comment }),
      credentials: "same-origin",
    });
    ok = response.ok;
    body = await response.json().catch(() => null);
  } catch (err) {
    console.warn("verdict not sent", err);
  }
  submit.disabled = false;
  if (!ok) {
    verdictError(body?.message || msg("js.audit.not_sent"));
    $("verdict-comment").focus();
    return;
  }
  const state = $("review-state");
  state.dataset.state = body.state;
  state.textContent = STATE_TEXT[body.state] ? msg(STATE_TEXT[body.state]) : body.state;
  const status = msg("js.audit.saved", { state: state.textContent });
  $("verdict-status").textContent = status;
  form.hidden = true;
  announce(status);
}

setupPlayer();
$("verdict-form")?.addEventListener("submit", submitVerdict);
