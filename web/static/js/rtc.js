// Camera/microphone capture and the browser side of a call: one RTCPeerConnection to the server,
// a non-trickle offer (ICE gathered first, at most 3 s), the server's answer.

const ICE_WAIT_MS = 3000;
const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } };

/** A capture failure, with the catalogue key of the sentence to show. */
export class MediaProblem extends Error {
  constructor(key, cause) {
    super(key);
    this.name = "MediaProblem";
    this.key = key;
    this.cause = cause;
  }
}

/** The message key that explains a getUserMedia failure to a customer. */
export function mediaErrorKey(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "js.media.not_allowed";
    case "NotFoundError":
    case "OverconstrainedError":
      return "js.media.not_found";
    case "NotReadableError":
    case "AbortError":
      return "js.media.in_use";
    case "TypeError":
      return "js.media.unsupported";
    default:
      return "js.media.failed";
  }
}

/** Camera + microphone (or what `constraints` asks); throws MediaProblem. */
export async function getMedia(constraints = { video: VIDEO, audio: true }) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MediaProblem("js.media.unsupported");
  }
  try {
    return await navigator.mediaDevices.getUserMedia(constraints);
  } catch (err) {
    throw new MediaProblem(mediaErrorKey(err), err);
  }
}

export function stopStream(stream) {
  if (stream) stream.getTracks().forEach((track) => track.stop());
}

function isLoopbackCandidate(line) {
  // a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
  return line.split(" ")[4] === "127.0.0.1";
}

/** The SDP without any `a=candidate` line whose address is not 127.0.0.1. */
export function keepLoopbackCandidates(sdp) {
  const eol = sdp.includes("\r\n") ? "\r\n" : "\n";
  return sdp
    .split(eol)
    .filter((line) => !line.startsWith("a=candidate") || isLoopbackCandidate(line))
    .join(eol);
}

/** Resolve when ICE gathering is complete or after `ms`, whichever comes first. */
export function waitForIce(pc, ms = ICE_WAIT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      window.clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = window.setTimeout(done, ms);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * One side of a call. `send(message)` goes to the WebSocket; `onFailed()` is called when the
 * connection to the server fails; `onPlayBlocked()` when the browser refuses to play sound.
 */
export class RtcCall {
  constructor({ send, iceServers, loopbackOnly, localVideo, remoteVideo, onFailed, onPlayBlocked }) {
    this.send = send;
    this.iceServers = iceServers || [];
    this.loopbackOnly = Boolean(loopbackOnly);
    this.localVideo = localVideo;
    this.remoteVideo = remoteVideo;
    this.onFailed = onFailed || (() => {});
    this.onPlayBlocked = onPlayBlocked || (() => {});
    this.pc = null;
    this.stream = null;
  }

  /** Capture (again), make a new peer connection and send its offer. Throws MediaProblem. */
  async start() {
    this.closePeer();
    stopStream(this.stream);
    this.stream = null;
    this.stream = await getMedia();
    this.localVideo.srcObject = this.stream;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const remote = new MediaStream();
    this.remoteVideo.srcObject = remote;
    pc.addEventListener("track", (event) => this.addRemote(remote, event.track));
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc === pc && pc.connectionState === "failed") this.onFailed();
    });
    this.stream.getTracks().forEach((track) => pc.addTrack(track, this.stream));
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    if (this.pc !== pc) return;
    let sdp = pc.localDescription.sdp;
    if (this.loopbackOnly) sdp = keepLoopbackCandidates(sdp);
    this.send({ type: "webrtc.offer", sdp });
  }

  /** Apply the server's answer to our latest offer. */
  async applyAnswer(sdp) {
    if (!this.pc || this.pc.signalingState !== "have-local-offer") return;
    await this.pc.setRemoteDescription({ type: "answer", sdp });
  }

  addRemote(remote, track) {
    remote.addTrack(track);
    const playing = this.remoteVideo.play();
    if (playing) playing.catch(() => this.onPlayBlocked());
  }

  closePeer() {
    if (this.pc) this.pc.close();
    this.pc = null;
  }

  /** End the call: close the connection, release the camera and microphone. */
  close() {
    this.closePeer();
    stopStream(this.stream);
    this.stream = null;
    this.localVideo.srcObject = null;
    this.remoteVideo.srcObject = null;
  }
}
