// The customer's /call page: join the queue, show the live position, then the call.

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
import { CobrowseCustomer } from "./cobrowse_customer.js";
import { ServicePanel } from "./service_panel.js";
import { CustomerVerifyUI } from "./verify_customer.js";

const state = { phase: "waiting", lastPosition: null };

function waitText(seconds) {
  if (seconds < 60) return msg("js.queue.wait_soon");
  return msg("js.queue.wait", { minutes: Math.ceil(seconds / 60) });
}

function showPosition(m) {
  const text =
    m.position <= 1 ? msg("js.queue.next") : msg("js.queue.position", { position: m.position });
  if (m.position !== state.lastPosition) $("queue-position").textContent = text;
  state.lastPosition = m.position;
  $("queue-wait").textContent = waitText(m.estimated_wait_seconds);
}

const socket = new SocketClient({
  path: config().wsPath,
  initial: () => (state.phase === "waiting" ? { type: "queue.join" } : null),
  onMessage: (m) => handle(m),
  onStatus: connectionStatus,
});

const call = new CallUI(socket, {
  role: "customer",
  onStarted: () => {
    state.phase = "call";
    $("waiting-panel").hidden = true;
  },
  onEnded: () => {
    state.phase = "ended";
    cobrowse.reset();
    socket.stop();
  },
});

const verify = new CustomerVerifyUI();
const service = new ServicePanel();
const cobrowse = new CobrowseCustomer(socket);

function handle(m) {
  // After every (re)connection: where the service stands (a state change may have been missed).
  if (m.type === "welcome") service.load();
  if (call.handle(m) || verify.handle(m) || service.handle(m) || cobrowse.handle(m)) return;
  switch (m.type) {
    case "queue.position":
      showPageError(null);
      showPosition(m);
      break;
    case "error":
      showPageError(errorText(m.code));
      break;
    default:
      break;
  }
}

$("queue-leave").addEventListener("click", () => {
  state.phase = "left";
  socket.send({ type: "queue.leave" });
  socket.stop();
  announce(msg("js.queue.left"));
  window.location.assign("/");
});

service.load();
socket.connect();
