// Shared by every page script: the page config, translated messages, status helpers and the
// WebSocket client (reconnects with backoff and re-sends the page's initial message).

const PROTOCOL_VERSION = 1;
const PING_MS = 20000;
const MAX_BACKOFF_MS = 15000;

let cachedConfig = null;

/** The page's `cb-config` JSON ({lang, messages, csrf, wsPath, ...page fields}). */
export function config() {
  if (cachedConfig === null) {
    const el = document.getElementById("cb-config");
    cachedConfig = el ? JSON.parse(el.textContent) : {};
    if (!cachedConfig.messages) cachedConfig.messages = {};
  }
  return cachedConfig;
}

export const $ = (id) => document.getElementById(id);

export function hasMsg(key) {
  return Object.prototype.hasOwnProperty.call(config().messages, key);
}

/** The translated text of `key` with `{name}` placeholders filled from `fmt`. */
export function msg(key, fmt = {}) {
  if (!hasMsg(key)) {
    console.warn("missing message", key);
    return key;
  }
  return config().messages[key].replace(/\{(\w+)\}/g, (whole, name) =>
    Object.prototype.hasOwnProperty.call(fmt, name) ? String(fmt[name]) : whole,
  );
}

/** Say `text` to screen readers through the page's polite live region. */
export function announce(text) {
  const region = $("sr-announcer");
  if (!region) return;
  region.textContent = "";
  window.setTimeout(() => {
    region.textContent = text;
  }, 60);
}

/** The sentence for an `error` code (`error.<code>` in the catalogue). */
export function errorText(code) {
  const key = `error.${code}`;
  return hasMsg(key) ? msg(key) : msg("error.internal");
}

/** Show (or with `null`, hide) the page-wide error box. */
export function showPageError(text) {
  const box = $("page-error");
  if (!box) return;
  box.textContent = text || "";
  box.hidden = !text;
}

/** Show a connection status line (`null` hides it). */
export function showConnection(text) {
  const line = $("connection-status");
  if (!line) return;
  line.textContent = text || "";
  line.hidden = !text;
}

const CLOSE_SIGNED_OUT = 4401;
const CLOSE_SUPERSEDED = 4409; // the customer started again in another window or device

function isFatalClose(code) {
  return code === 1008 || (code >= 4400 && code < 4500);
}

/**
 * The page's WebSocket. `initial()` returns the message to send after every `welcome` (first
 * connection and each reconnection) or null; `onMessage(msg)` gets every server message.
 */
export class SocketClient {
  constructor({ path, initial, onMessage, onStatus }) {
    this.path = path || "/ws";
    this.initial = initial || (() => null);
    this.onMessage = onMessage;
    this.onStatus = onStatus || (() => {});
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    window.addEventListener("online", () => this.reconnectNow());
  }

  url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${this.path}`;
  }

  connect() {
    if (this.stopped) return;
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.attempt = 0;
      this.startPing();
      this.onStatus("open");
    });
    ws.addEventListener("message", (event) => this.dispatch(event.data));
    ws.addEventListener("close", (event) => this.closed(ws, event.code));
  }

  dispatch(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch (err) {
      console.warn("bad frame from server", err);
      return;
    }
    this.onMessage(message);
    if (message.type === "welcome") {
      const first = this.initial();
      if (first) this.send(first);
    }
  }

  /** Send one message; false when the socket is not open. */
  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, ...message }));
    return true;
  }

  startPing() {
    window.clearInterval(this.pingTimer);
    this.pingTimer = window.setInterval(() => this.send({ type: "ping" }), PING_MS);
  }

  closed(ws, code) {
    if (ws !== this.ws) return;
    window.clearInterval(this.pingTimer);
    this.ws = null;
    if (this.stopped) return;
    if (isFatalClose(code)) {
      this.stopped = true;
      this.onStatus("closed", code);
      return;
    }
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt += 1;
    this.onStatus("reconnecting", code);
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.ws) return;
    window.clearTimeout(this.retryTimer);
    this.connect();
  }

  /** Close for good (no reconnection). */
  stop() {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000);
  }
}

/** Standard wiring of a socket's status to the connection line and the screen reader. */
export function connectionStatus(state, code) {
  if (state === "open") {
    showConnection(null);
  } else if (state === "reconnecting") {
    showConnection(msg("js.conn.reconnecting"));
  } else if (state === "closed" && code === CLOSE_SIGNED_OUT) {
    // Logged out elsewhere, deactivated or given another role: to the login page.
    showConnection(msg("js.conn.signed_out"));
    announce(msg("js.conn.signed_out"));
    window.setTimeout(() => window.location.assign("/staff/login"), 3000);
  } else if (state === "closed" && code === CLOSE_SUPERSEDED) {
    showConnection(msg("js.conn.superseded"));
    announce(msg("js.conn.superseded"));
  } else if (state === "closed") {
    showConnection(msg("js.conn.closed"));
    announce(msg("js.conn.closed"));
  }
}

/**
 * `fetch` a JSON API route of this site with the session's CSRF token. Resolves to
 * `{ok, status, body}` (body: the parsed JSON or {}); a network failure gives status 0.
 * The request body is never logged: it may hold a PIN or a password.
 */
export async function fetchJson(path, { method = "GET", body } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
  };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = config().csrf || "";
    init.body = JSON.stringify(body || {});
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    return { ok: false, status: 0, body: {} };
  }
  let parsed = {};
  try {
    parsed = await response.json();
  } catch (err) {
    parsed = {};
  }
  return { ok: response.ok, status: response.status, body: parsed || {} };
}

/** A date/time in the page's language ("" for a missing or unreadable value). */
export function dateTimeText(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return "";
  return date.toLocaleString(config().lang, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
}
