// The call UI shared by the customer page and the advisor console: videos, chat, hang-up,
// the ended panel and the camera-error box with its retry button.

import { $, announce, config, hasMsg, msg } from "./common.js";
import { MediaProblem, RtcCall } from "./rtc.js";

function timeOf(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString(config().lang, { hour: "2-digit", minute: "2-digit" });
}

export class CallUI {
  /** `role` is "customer" or "advisor"; hooks: onStarted(m), onEnded(m). */
  constructor(socket, { role, onStarted, onEnded }) {
    this.socket = socket;
    this.role = role;
    this.onStarted = onStarted || (() => {});
    this.onEnded = onEnded || (() => {});
    this.welcomeMsg = { ice_servers: [], ice_loopback_only: false };
    this.rtc = null;
    this.caseId = null;
    this.bind();
  }

  bind() {
    $("chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendChat();
    });
    $("hangup").addEventListener("click", () => this.hangup());
    $("media-retry").addEventListener("click", () => this.startMedia());
    $("remote-play").addEventListener("click", () => {
      $("remote-play").hidden = true;
      $("remote-video").play().catch(() => {});
    });
  }

  get inCall() {
    return this.caseId !== null;
  }

  /** Handle a call message; false when `m` is not one. */
  handle(m) {
    switch (m.type) {
      case "welcome":
        this.welcomeMsg = m;
        return true;
      case "call.started":
        this.started(m);
        return true;
      case "webrtc.answer":
        if (this.rtc) this.rtc.applyAnswer(m.sdp).catch((err) => this.showMediaError(err));
        return true;
      case "chat.message":
        this.addChat(m);
        return true;
      case "call.ended":
        this.ended(m);
        return true;
      default:
        return false;
    }
  }

  started(m) {
    const restart = this.caseId === m.case_id;
    this.caseId = m.case_id;
    $("ended-panel").hidden = true;
    $("call-panel").hidden = false;
    $("peer-name").textContent = msg(`js.call.peer_${this.role}`, { name: m.peer_name });
    if (!restart) {
      $("chat-log").replaceChildren();
      announce(msg(`js.call.started_${this.role}`, { name: m.peer_name }));
      $("call-title").focus();
    }
    this.onStarted(m);
    this.startMedia();
  }

  async startMedia() {
    $("media-error").hidden = true;
    if (this.rtc) this.rtc.close();
    this.rtc = new RtcCall({
      send: (message) => this.socket.send(message),
      iceServers: this.welcomeMsg.ice_servers,
      loopbackOnly: this.welcomeMsg.ice_loopback_only,
      localVideo: $("local-video"),
      remoteVideo: $("remote-video"),
      onFailed: () => this.showMediaError(new MediaProblem("js.call.connection_failed")),
      onPlayBlocked: () => {
        $("remote-play").hidden = false;
      },
    });
    try {
      await this.rtc.start();
      if (this.role === "customer") this.reportCamera();
    } catch (err) {
      this.showMediaError(err);
    }
  }

  /** Tell the server the camera's name: a virtual camera is a (weak) sign of injected video. */
  reportCamera() {
    const track = this.rtc && this.rtc.stream && this.rtc.stream.getVideoTracks()[0];
    const label = track ? track.label.slice(0, 200) : "";
    this.socket.send({ type: "device.info", camera_label: label });
  }

  showMediaError(err) {
    const key = err instanceof MediaProblem ? err.key : "js.media.failed";
    if (!(err instanceof MediaProblem)) console.warn("call media error", err);
    $("media-error-text").textContent = msg(key);
    $("media-error").hidden = false;
  }

  sendChat() {
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    if (this.socket.send({ type: "chat.send", text: text.slice(0, 2000) })) {
      input.value = "";
    } else {
      announce(msg("js.chat.not_sent"));
    }
    input.focus();
  }

  addChat(m) {
    const item = document.createElement("li");
    item.className = m.sender === this.role ? "chat-msg from-self" : "chat-msg from-peer";
    const meta = document.createElement("span");
    meta.className = "chat-meta";
    const who = m.sender === this.role ? msg("js.chat.you") : m.sender_name;
    meta.textContent = `${who} · ${timeOf(m.sent_at)}`;
    const text = document.createElement("span");
    text.className = "chat-text";
    text.textContent = m.text;
    item.append(meta, text);
    const log = $("chat-log");
    log.append(item);
    log.scrollTop = log.scrollHeight;
  }

  hangup() {
    if (!this.socket.send({ type: "call.hangup" })) announce(msg("js.chat.not_sent"));
  }

  endedText(m) {
    let text = msg("js.ended.system");
    if (m.ended_by === this.role) text = msg("js.ended.self");
    else if (m.ended_by !== "system") text = msg(`js.ended.by_${m.ended_by}`);
    const reasonKey = `js.ended.reason.${m.reason}`;
    return hasMsg(reasonKey) ? `${text} ${msg(reasonKey)}` : text;
  }

  ended(m) {
    if (this.rtc) this.rtc.close();
    this.rtc = null;
    this.caseId = null;
    $("call-panel").hidden = true;
    $("media-error").hidden = true;
    $("remote-play").hidden = true;
    $("ended-reason").textContent = this.endedText(m);
    $("ended-panel").hidden = false;
    $("ended-title").focus();
    announce(this.endedText(m));
    this.onEnded(m);
  }
}
