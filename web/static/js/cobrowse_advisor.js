// Co-browsing on the advisor console: ask to see the customer's page, replay it live (rrweb
// live mode, view only), and point, highlight and draw on it — sent to the customer's overlay.
// The replay is a sandboxed iframe without scripts; the advisor never acts on the customer's page.

import { $, msg } from "./common.js";
import { loadRrweb } from "./cobrowse_load.js";

// The replay runs this far behind each batch's arrival (it absorbs the jitter of rrweb's frame
// timer). Events are re-timed on arrival (see `feed`), so neither the customer's clock nor the
// time rrweb took to load on this page adds to the delay; bench/cobrowse.py measures the result.
const BUFFER_MS = 60;
const POINTER_MS = 80;
const MAX_PENDING = 5000;
const MAX_STROKE = 64;

// Why co-browsing went off (the `reason` of `cobrowse.state`).
const REASONS = {
  declined: "js.cobrowse.declined",
  stopped_by_customer: "js.cobrowse.stopped_by_customer",
  stopped_by_advisor: "js.cobrowse.stopped_by_advisor",
  call_ended: "js.cobrowse.call_ended",
};

const STATUS = {
  off: "js.cobrowse.off",
  requested: "js.cobrowse.requested",
  on: "js.cobrowse.on",
};

export class CobrowseAdvisor {
  constructor(send) {
    this.send = send;
    this.state = "off";
    this.inCall = false;
    this.replayer = null;
    this.live = false;
    this.lastStamp = 0;
    this.pending = [];
    this.size = { width: 1, height: 1 };
    this.lastPointer = 0;
    this.stroke = null;
    this.generation = 0;
    $("cobrowse-request").addEventListener("click", () => {
      $("cobrowse-request").disabled = true;
      this.send({ type: "cobrowse.request" });
    });
    $("cobrowse-end").addEventListener("click", () => this.send({ type: "cobrowse.stop" }));
    this.bindGlass($("cobrowse-glass"));
  }

  /** Handle a co-browse message; false when `m` is not one. */
  handle(m) {
    switch (m.type) {
      case "cobrowse.state":
        this.changed(m);
        return true;
      case "cobrowse.events":
        this.received(m.events);
        return true;
      case "error":
        if (typeof m.ref === "string" && m.ref.startsWith("cobrowse.")) {
          if (m.ref === "cobrowse.request") $("cobrowse-request").disabled = false;
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  /** A call started (`true`) or ended (`false`): a fresh panel either way. */
  setInCall(inCall) {
    this.inCall = inCall;
    this.clearView();
    this.state = "off";
    $("cobrowse-status").textContent = inCall ? msg(STATUS.off) : "";
    $("cobrowse-request").disabled = !inCall;
    $("cobrowse-request").hidden = false;
    $("cobrowse-end").hidden = true;
  }

  changed(m) {
    this.state = m.state;
    const reason = m.state === "off" && REASONS[m.reason];
    $("cobrowse-status").textContent = msg(reason || STATUS[m.state]);
    $("cobrowse-request").hidden = m.state !== "off";
    $("cobrowse-request").disabled = m.state !== "off";
    $("cobrowse-end").hidden = m.state === "off";
    if (m.state === "on") this.openView();
    else this.clearView();
  }

  async openView() {
    if (this.replayer) return;
    const generation = ++this.generation;
    let rrweb;
    try {
      rrweb = await loadRrweb();
    } catch (err) {
      console.warn("co-browse:", err);
      $("cobrowse-status").textContent = msg("js.cobrowse.unavailable");
      return;
    }
    if (generation !== this.generation || this.state !== "on") return;
    $("cobrowse-view").hidden = false;
    const stage = $("cobrowse-stage");
    this.replayer = new rrweb.Replayer([], {
      root: stage,
      liveMode: true,
      mouseTail: false,
      showWarning: false,
    });
    this.replayer.on("resize", (size) => this.fit(size));
    this.replayer.on("fullsnapshot-rebuilded", () => this.styleReplay());
    this.live = false;
    const early = this.pending;
    this.pending = [];
    this.feed(early);
    // A late join (or the events before the view was ready): ask for a fresh full snapshot.
    this.send({ type: "cobrowse.snapshot" });
  }

  received(events) {
    if (!this.replayer) {
      if (this.state === "on" && this.pending.length + events.length <= MAX_PENDING) {
        this.pending.push(...events);
      }
      return;
    }
    this.feed(events);
  }

  /**
   * Re-time a batch to this page's clock: its last event "happened" now, the others keep their
   * spacing before it, and times never go backwards (rrweb's timer would reorder mutations).
   * The customer's clock may be off by seconds; only differences within a batch are used.
   */
  feed(events) {
    if (events.length === 0) return;
    const now = Date.now();
    const last = events[events.length - 1].timestamp;
    if (!this.live) {
      this.replayer.startLive(now - BUFFER_MS);
      this.live = true;
    }
    for (const event of events) {
      const stamp = Math.max(this.lastStamp, now - (last - event.timestamp));
      this.lastStamp = stamp;
      this.replayer.addEvent({ ...event, timestamp: stamp });
    }
  }

  /**
   * Our own stylesheets in the replay: the recorded ones are inline CSS, which CSP refuses, and
   * the customer's page uses the same files. They are adopted as constructed sheets, at once:
   * a `<link>` would load later, and scroll events replayed meanwhile would be clamped to the
   * shorter unstyled page.
   */
  styleReplay() {
    const frame = this.replayer && this.replayer.iframe;
    const doc = frame && frame.contentDocument;
    if (!doc || !doc.head) return;
    try {
      const sheet = new frame.contentWindow.CSSStyleSheet();
      sheet.replaceSync(this.ownCss());
      doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
    } catch (err) {
      console.warn("co-browse: no constructed stylesheet, linking ours", err);
      for (const own of document.querySelectorAll('link[rel="stylesheet"]')) {
        const link = doc.createElement("link");
        link.rel = "stylesheet";
        link.href = own.href;
        doc.head.append(link);
      }
    }
  }

  ownCss() {
    if (this.css === undefined) {
      const origin = window.location.origin;
      const sheets = [...document.styleSheets].filter((s) => s.href && s.href.startsWith(origin));
      this.css = sheets.map((s) => [...s.cssRules].map((r) => r.cssText).join("\n")).join("\n");
    }
    return this.css;
  }

  fit(size) {
    this.size = size;
    const stage = $("cobrowse-stage");
    const scale = Math.min(1, stage.clientWidth / size.width || 1);
    const wrapper = stage.querySelector(".replayer-wrapper");
    if (wrapper) wrapper.style.transform = `scale(${scale})`;
    stage.style.height = `${Math.round(size.height * scale)}px`;
  }

  /** The view goes at once: nothing of the customer's page stays on the console. */
  clearView() {
    this.generation += 1;
    if (this.replayer) {
      try {
        this.replayer.destroy();
      } catch (err) {
        console.warn("co-browse: replayer destroy", err);
      }
    }
    this.replayer = null;
    this.live = false;
    this.lastStamp = 0;
    this.pending = [];
    $("cobrowse-stage").replaceChildren();
    $("cobrowse-view").hidden = true;
  }

  // ---- gestures -----------------------------------------------------------------------------

  fraction(event) {
    const rect = $("cobrowse-stage").getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    const x = (event.clientX - rect.left) / rect.width;
    const y = (event.clientY - rect.top) / rect.height;
    return [clamp(x), clamp(y)];
  }

  bindGlass(glass) {
    glass.addEventListener("mousemove", (event) => {
      const [x, y] = this.fraction(event);
      if (this.stroke) {
        if (this.stroke.length < MAX_STROKE) this.stroke.push([x, y]);
        return;
      }
      const now = Date.now();
      if (now - this.lastPointer < POINTER_MS || this.state !== "on") return;
      this.lastPointer = now;
      this.send({ type: "cobrowse.pointer", x, y });
    });
    glass.addEventListener("mousedown", (event) => {
      if (event.shiftKey) this.stroke = [this.fraction(event)];
    });
    glass.addEventListener("mouseup", () => {
      const stroke = this.stroke;
      this.stroke = null;
      if (stroke && stroke.length >= 2 && this.state === "on") {
        this.send({ type: "cobrowse.draw", points: stroke });
      }
    });
    glass.addEventListener("click", (event) => {
      if (event.shiftKey || this.state !== "on") return;
      const [x, y] = this.fraction(event);
      this.send({ type: "cobrowse.pointer", x, y });
      const id = this.nodeAt(x, y);
      if (id) this.send({ type: "cobrowse.highlight", node_id: id });
    });
  }

  /** The rrweb id of the replayed element under a point (fractions of the viewport). */
  nodeAt(x, y) {
    const doc = this.replayer && this.replayer.iframe.contentDocument;
    if (!doc) return null;
    const el = doc.elementFromPoint(x * this.size.width, y * this.size.height);
    if (!el || el === doc.documentElement || el === doc.body) return null;
    const id = this.replayer.getMirror().getId(el);
    return id > 0 ? id : null;
  }
}
