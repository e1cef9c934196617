// The advisor console: presence, the live waiting queue with accept buttons, then the call.

import {
  $,
  announce,
  config,
  connectionStatus,
  errorText,
  msg,
  showPageError,
  SocketClient,
} from "./common.js";
import { CallUI } from "./call_ui.js";
import { CasePanel } from "./case_panel.js";
import { CobrowseAdvisor } from "./cobrowse_advisor.js";
import { AdvisorVerifyUI } from "./verify_advisor.js";

const state = { desired: "available", presence: "offline", entries: [] };

function waitedText(sinceIso) {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(sinceIso)) / 1000));
  return msg("js.advisor.waited", { minutes: Math.floor(seconds / 60), seconds: seconds % 60 });
}

function serviceTitle(code) {
  const text = msg(`service.${code}.title`);
  return text === `service.${code}.title` ? code : text;
}

function entryItem(entry, canAccept) {
  const item = document.createElement("li");
  item.className = "queue-entry";
  item.dataset.caseId = entry.case_id;
  const name = document.createElement("span");
  name.className = "entry-name";
  name.textContent = entry.customer_name;
  const service = document.createElement("span");
  service.className = "entry-service";
  service.textContent = serviceTitle(entry.service);
  const waited = document.createElement("span");
  waited.className = "entry-waited";
  waited.dataset.since = entry.waiting_since;
  waited.textContent = waitedText(entry.waiting_since);
  item.append(name, service, waited);
  if (entry.elderly_mode) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = msg("js.advisor.elderly");
    item.append(badge);
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn primary accept-btn";
  button.textContent = msg("js.advisor.accept");
  button.setAttribute("aria-label", msg("js.advisor.accept_name", { name: entry.customer_name }));
  button.disabled = !canAccept;
  item.append(button);
  return item;
}

function renderQueue() {
  const canAccept = state.presence === "available" && !call.inCall;
  const items = state.entries.map((entry) => entryItem(entry, canAccept));
  $("queue-list").replaceChildren(...items);
  $("queue-empty").hidden = state.entries.length > 0;
}

function tick() {
  document.querySelectorAll("#queue-list .entry-waited").forEach((el) => {
    el.textContent = waitedText(el.dataset.since);
  });
}

function showPresence(status) {
  state.presence = status;
  $("presence-status").textContent = msg(`js.presence.${status}`);
  $("presence-toggle").setAttribute("aria-pressed", String(status === "available"));
  renderQueue();
}

function onSnapshot(m) {
  if (m.entries.length > state.entries.length) {
    announce(msg("js.advisor.new_customer", { count: m.entries.length }));
  }
  state.entries = m.entries;
  renderQueue();
}

const socket = new SocketClient({
  path: config().wsPath,
  initial: () => (call.inCall ? null : { type: "presence.set", status: state.desired }),
  onMessage: (m) => handle(m),
  onStatus: connectionStatus,
});

const call = new CallUI(socket, {
  role: "advisor",
  onStarted: (m) => {
    $("queue-panel").hidden = true;
    verify.setInCall(true);
    casePanel.started(m);
    if (!cobrowse.inCall) cobrowse.setInCall(true);
  },
  onEnded: () => {
    verify.setInCall(false);
    casePanel.reset();
    cobrowse.setInCall(false);
  },
});

const verify = new AdvisorVerifyUI((m) => socket.send(m));
const casePanel = new CasePanel((m) => socket.send(m));
const cobrowse = new CobrowseAdvisor((m) => socket.send(m));

// Refusals that answer a decision on the case panel are shown there, not at the top of the page.
function isGrantError(m) {
  return m.code === "grant_refused" || m.ref === "grant.confirm" || m.ref === "grant.decline";
}

function handle(m) {
  if (call.handle(m) || verify.handle(m) || casePanel.handle(m) || cobrowse.handle(m)) return;
  switch (m.type) {
    case "queue.snapshot":
      onSnapshot(m);
      break;
    case "presence.state":
      showPresence(m.status);
      break;
    case "error":
      if (m.ref === "verify.start") verify.refused();
      if (isGrantError(m)) casePanel.refused(m);
      else showPageError(errorText(m.code));
      break;
    default:
      break;
  }
}

$("presence-toggle").addEventListener("click", () => {
  state.desired = state.presence === "available" ? "away" : "available";
  showPageError(null);
  socket.send({ type: "presence.set", status: state.desired });
});

$("queue-list").addEventListener("click", (event) => {
  const button = event.target.closest(".accept-btn");
  if (!button || button.disabled) return;
  button.disabled = true;
  showPageError(null);
  socket.send({ type: "queue.accept", case_id: button.closest(".queue-entry").dataset.caseId });
});

$("ended-back").addEventListener("click", () => {
  $("ended-panel").hidden = true;
  $("queue-panel").hidden = false;
  socket.send({ type: "presence.set", status: state.desired });
  renderQueue();
  $("queue-title").focus();
});

renderQueue();
window.setInterval(tick, 1000);
socket.connect();
