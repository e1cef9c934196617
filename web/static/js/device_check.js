// The device check page: camera preview, microphone level, a network round-trip; the
// continue button is enabled once the camera works.

import { $, msg } from "./common.js";
import { getMedia, MediaProblem, stopStream } from "./rtc.js";

const SLOW_MS = 1500;
const HEARD_LEVEL = 8;
const state = { stream: null, audio: null, frame: 0, heard: false };

// What the server is told of each check when the customer continues (pending counts as
// "not working": the server lets a customer into the call only with a working camera).
const RESULT = {
  camera: { ok: "ok" },
  mic: { ok: "ok", pending: "silent" },
  network: { ok: "ok", warn: "slow" },
};
const FAILED = { camera: "fail", mic: "fail", network: "down" };

function setCheck(name, result, text) {
  const item = $(`check-${name}`);
  item.dataset.state = result;
  item.querySelector(".check-text").textContent = text;
  $(`result-${name}`).value = RESULT[name][result] || FAILED[name];
}

function setStatus(text) {
  $("device-status").textContent = text;
}

async function capture() {
  try {
    return await getMedia();
  } catch (err) {
    if (!(err instanceof MediaProblem) || err.key !== "js.media.not_found") throw err;
    // Tell "no camera" from "no microphone": try the camera alone.
    const video = await getMedia({ video: true, audio: false });
    setCheck("mic", "fail", msg("js.device.mic_missing"));
    return video;
  }
}

function levelOf(analyser, buffer) {
  analyser.getByteTimeDomainData(buffer);
  let sum = 0;
  for (const sample of buffer) sum += ((sample - 128) / 128) ** 2;
  return Math.min(100, Math.round(Math.sqrt(sum / buffer.length) * 300));
}

function startMeter(stream) {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context || stream.getAudioTracks().length === 0) return;
  const audio = new Context();
  state.audio = audio;
  const analyser = audio.createAnalyser();
  analyser.fftSize = 512;
  audio.createMediaStreamSource(stream).connect(analyser);
  audio.resume().catch(() => {});
  const buffer = new Uint8Array(analyser.fftSize);
  const draw = () => {
    const level = levelOf(analyser, buffer);
    $("mic-level").value = level;
    $("mic-level").textContent = String(level);
    if (level >= HEARD_LEVEL && !state.heard) {
      state.heard = true;
      setCheck("mic", "ok", msg("js.device.mic_heard"));
    }
    state.frame = window.requestAnimationFrame(draw);
  };
  draw();
}

function stopAll() {
  window.cancelAnimationFrame(state.frame);
  if (state.audio) state.audio.close().catch(() => {});
  stopStream(state.stream);
  state.audio = null;
  state.stream = null;
  state.heard = false;
  $("mic-level").value = 0;
}

async function checkNetwork() {
  setCheck("network", "pending", msg("js.device.checking"));
  const started = performance.now();
  try {
    await fetch("/healthz", { cache: "no-store", credentials: "same-origin" });
  } catch (err) {
    setCheck("network", "fail", msg("js.device.network_down"));
    return;
  }
  const ms = Math.round(performance.now() - started);
  if (ms > SLOW_MS) setCheck("network", "warn", msg("js.device.network_slow", { ms }));
  else setCheck("network", "ok", msg("js.device.network_ok", { ms }));
}

async function checkMedia() {
  setCheck("camera", "pending", msg("js.device.checking"));
  setCheck("mic", "pending", msg("js.device.checking"));
  try {
    state.stream = await capture();
  } catch (err) {
    const key = err instanceof MediaProblem ? err.key : "js.media.failed";
    setCheck("camera", "fail", msg("js.device.camera_fail"));
    setCheck("mic", "fail", msg("js.device.camera_fail"));
    return msg(key);
  }
  $("preview").srcObject = state.stream;
  setCheck("camera", "ok", msg("js.device.camera_ok"));
  if (state.stream.getAudioTracks().length > 0) {
    setCheck("mic", "pending", msg("js.device.mic_speak"));
    startMeter(state.stream);
  }
  return null;
}

async function run() {
  stopAll();
  $("device-continue").disabled = true;
  setStatus(msg("js.device.checking"));
  const [problem] = await Promise.all([checkMedia(), checkNetwork()]);
  const ok = problem === null;
  $("device-continue").disabled = !ok;
  const text = ok ? msg("js.device.ready") : problem;
  setStatus(text);
}

$("device-retry").addEventListener("click", () => run());
window.addEventListener("pagehide", stopAll);
run();
