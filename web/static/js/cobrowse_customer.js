// Co-browsing on the customer's /call page: the advisor's request, the banner while the page is
// shared, the recorder and the advisor's pointer, highlights and strokes in an overlay.
//
// Privacy: rrweb records with `maskAllInputs` (every typed value becomes "*") and blockClass
// `cb-block` (the secure pad and this overlay are sent as empty boxes). Passing our own
// `maskInputOptions` would *replace* rrweb's default (docs: NOTES "masking traps"): never do it.
// The server checks every event again and drops any that carries a value.
// No remote control: nothing here clicks, focuses or types on behalf of the advisor.

import { $, announce, msg } from "./common.js";
import { loadRrweb } from "./cobrowse_load.js";

const FLUSH_MS = 100;
const MAX_BATCH_EVENTS = 100; // the server takes at most 200 per message
const MAX_BATCH_CHARS = 512 * 1024; // the server takes at most 1 MiB per message
const SNAPSHOT_GAP_MS = 1000;
const MARK_MS = 4000;
const RESIZE_SNAPSHOT_MS = 250;

export class CobrowseCustomer {
  constructor(socket) {
    this.socket = socket;
    this.state = "off";
    this.advisor = "";
    this.stopRecording = null; // rrweb's stop function while recording
    this.recording = false;
    this.buffer = [];
    this.timer = null;
    this.lastSnapshot = 0;
    this.pointer = null;
    this.resizeWatch = null;
    this.resizeTimer = null;
    $("cobrowse-accept").addEventListener("click", () => this.answer("cobrowse.accept"));
    $("cobrowse-decline").addEventListener("click", () => this.answer("cobrowse.decline"));
    $("cobrowse-stop").addEventListener("click", () => this.stop());
  }

  /** Handle a co-browse message; false when `m` is not one. */
  handle(m) {
    switch (m.type) {
      case "cobrowse.state":
        this.changed(m);
        return true;
      case "cobrowse.snapshot":
        this.snapshot();
        return true;
      case "cobrowse.pointer":
        this.showPointer(m);
        return true;
      case "cobrowse.highlight":
        this.showHighlight(m);
        return true;
      case "cobrowse.draw":
        this.showStroke(m);
        return true;
      case "error":
        // A late batch after "stop" is refused: nothing the customer needs to read.
        return typeof m.ref === "string" && m.ref.startsWith("cobrowse.");
      default:
        return false;
    }
  }

  changed(m) {
    const was = this.state;
    this.state = m.state;
    this.advisor = m.advisor_name || this.advisor;
    if (m.state === "requested") {
      this.ask();
    } else if (m.state === "on") {
      $("cobrowse-prompt").hidden = true;
      this.start();
    } else {
      $("cobrowse-prompt").hidden = true;
      this.halt();
      if (was === "on") announce(msg("js.cobrowse.customer_off"));
    }
  }

  ask() {
    $("cobrowse-prompt-who").textContent = msg("js.cobrowse.asked", { name: this.advisor });
    $("cobrowse-accept").disabled = false;
    $("cobrowse-decline").disabled = false;
    $("cobrowse-prompt").hidden = false;
    $("cobrowse-prompt-title").focus();
    announce(msg("js.cobrowse.asked", { name: this.advisor }));
  }

  answer(type) {
    $("cobrowse-accept").disabled = true;
    $("cobrowse-decline").disabled = true;
    if (!this.socket.send({ type })) announce(msg("js.chat.not_sent"));
  }

  async start() {
    if (this.recording) return;
    this.recording = true;
    $("cobrowse-banner").hidden = false;
    announce(msg("js.cobrowse.customer_on", { name: this.advisor }));
    let rrweb;
    try {
      rrweb = await loadRrweb();
    } catch (err) {
      console.warn("co-browse:", err);
      this.stop();
      announce(msg("js.cobrowse.unavailable"));
      return;
    }
    if (!this.recording) return; // stopped while rrweb was loading
    this.timer = window.setInterval(() => this.flush(), FLUSH_MS);
    this.lastSnapshot = Date.now();
    this.stopRecording = rrweb.record({
      emit: (event) => this.queue(event),
      maskAllInputs: true,
      blockClass: "cb-block",
      recordCanvas: false,
      collectFonts: false,
      inlineImages: false,
    });
    this.watchBlocks();
    $("cobrowse-stop").focus();
  }

  /**
   * rrweb sends a blocked element (the secure pad) as an empty box of its size at snapshot time
   * and never records its changes: when the pad opens or closes, the replay's layout would drift
   * from the page. A new full snapshot after such a change gives the box its new size.
   */
  watchBlocks() {
    this.resizeWatch = new ResizeObserver(() => {
      if (Date.now() - this.lastSnapshot < 2 * RESIZE_SNAPSHOT_MS) return; // the first report
      window.clearTimeout(this.resizeTimer);
      this.resizeTimer = window.setTimeout(() => {
        if (!this.recording || !this.stopRecording) return;
        this.lastSnapshot = Date.now();
        window.rrweb.record.takeFullSnapshot(true);
      }, RESIZE_SNAPSHOT_MS);
    });
    for (const el of document.querySelectorAll(".cb-block")) {
      if (el.id !== "cobrowse-overlay") this.resizeWatch.observe(el);
    }
  }

  queue(event) {
    if (!this.recording) return;
    this.buffer.push(event);
    if (this.buffer.length >= MAX_BATCH_EVENTS) this.flush();
  }

  flush() {
    while (this.buffer.length > 0) {
      let batch = this.buffer.splice(0, MAX_BATCH_EVENTS);
      while (batch.length > 1 && JSON.stringify(batch).length > MAX_BATCH_CHARS) {
        const half = Math.ceil(batch.length / 2);
        this.buffer.unshift(...batch.slice(half));
        batch = batch.slice(0, half);
      }
      this.socket.send({ type: "cobrowse.events", events: batch });
    }
  }

  snapshot() {
    if (!this.recording || !window.rrweb || !this.stopRecording) return;
    if (Date.now() - this.lastSnapshot < SNAPSHOT_GAP_MS) return;
    this.lastSnapshot = Date.now();
    window.rrweb.record.takeFullSnapshot(true);
  }

  /** The customer's "Stop sharing": recording ends now, then the server and advisor hear it. */
  stop() {
    const sharing = this.recording || this.state !== "off";
    this.halt();
    this.state = "off";
    if (sharing) this.socket.send({ type: "cobrowse.stop" });
    announce(msg("js.cobrowse.customer_off"));
  }

  /** Stop recording and drop what was not sent; hide the banner and the advisor's marks. */
  halt() {
    this.recording = false;
    if (this.stopRecording) this.stopRecording();
    this.stopRecording = null;
    window.clearInterval(this.timer);
    this.timer = null;
    if (this.resizeWatch) this.resizeWatch.disconnect();
    this.resizeWatch = null;
    window.clearTimeout(this.resizeTimer);
    this.buffer = [];
    $("cobrowse-banner").hidden = true;
    $("cobrowse-overlay").replaceChildren();
    this.pointer = null;
  }

  /** The call ended (co-browsing ends with it). */
  reset() {
    this.halt();
    this.state = "off";
    $("cobrowse-prompt").hidden = true;
  }

  // ---- the advisor's marks ------------------------------------------------------------------

  showPointer(m) {
    if (!this.recording) return;
    if (!this.pointer) {
      this.pointer = document.createElement("div");
      this.pointer.className = "cobrowse-pointer";
      this.pointer.id = "cobrowse-pointer";
      const label = document.createElement("span");
      label.className = "cobrowse-pointer-label";
      this.pointer.append(label);
      $("cobrowse-overlay").append(this.pointer);
    }
    this.pointer.firstChild.textContent = msg("js.cobrowse.pointer_label", { name: m.name });
    this.pointer.style.left = `${m.x * window.innerWidth}px`;
    this.pointer.style.top = `${m.y * window.innerHeight}px`;
  }

  showHighlight(m) {
    if (!this.recording) return;
    let target = null;
    if (m.node_id && window.rrweb) target = window.rrweb.record.mirror.getNode(m.node_id);
    else if (m.selector) target = document.querySelector(m.selector);
    if (!(target instanceof Element) || !target.isConnected) return;
    const rect = target.getBoundingClientRect();
    const box = document.createElement("div");
    box.className = "cobrowse-highlight";
    box.dataset.who = m.name;
    box.style.left = `${rect.left - 6}px`;
    box.style.top = `${rect.top - 6}px`;
    box.style.width = `${rect.width + 12}px`;
    box.style.height = `${rect.height + 12}px`;
    this.mark(box);
  }

  showStroke(m) {
    if (!this.recording) return;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "cobrowse-draw");
    svg.setAttribute("viewBox", `0 0 ${window.innerWidth} ${window.innerHeight}`);
    const line = document.createElementNS(ns, "polyline");
    const points = m.points.map(([x, y]) => `${x * window.innerWidth},${y * window.innerHeight}`);
    line.setAttribute("points", points.join(" "));
    svg.append(line);
    this.mark(svg);
  }

  mark(el) {
    $("cobrowse-overlay").append(el);
    window.setTimeout(() => el.remove(), MARK_MS);
  }
}
