// Identity verification inside the call, the part both sides share: the instruction, the
// guidance, the steps and progress, and the outcome. verify_customer.js and verify_advisor.js
// add what only one side has.

import { $, config, hasMsg, msg } from "./common.js";

export function challengeText(code) {
  return msg(`verify.challenge.${code}`);
}

function guidanceText(key) {
  return key && hasMsg(key) ? msg(key) : "";
}

/** Speak `text` in the page's language (silently skipped where speech is unavailable). */
export function speak(text) {
  if (!text || !("speechSynthesis" in window)) return;
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.lang = config().lang;
  utterance.rate = 0.9;
  window.speechSynthesis.cancel();
  window.speechSynthesis.speak(utterance);
}

export class VerifyUI {
  constructor() {
    this.attempt = null;
  }

  /** Handle a verification message; false when `m` is not one. */
  handle(m) {
    switch (m.type) {
      case "verify.started":
        this.started(m);
        return true;
      case "verify.progress":
        this.progress(m);
        return true;
      case "verify.result":
        this.result(m);
        return true;
      default:
        return false;
    }
  }

  started(m) {
    this.attempt = m;
    $("verify-panel").hidden = false;
    $("verify-result").hidden = true;
    $("verify-progress").value = 0;
    $("verify-steps").replaceChildren(
      ...m.challenges.map((code) => {
        const li = document.createElement("li");
        li.textContent = challengeText(code);
        return li;
      }),
    );
    this.instruct(msg("verify.instruction.baseline"));
  }

  progress(m) {
    if (!this.attempt || m.attempt_id !== this.attempt.attempt_id) return;
    const total = this.attempt.challenges.length;
    $("verify-progress").value = total ? m.met / total : 0;
    [...$("verify-steps").children].forEach((li, i) => {
      li.classList.toggle("done", i < m.met);
      li.classList.toggle("current", m.phase === "challenge" && i === m.index);
    });
    $("verify-guidance").textContent = guidanceText(m.guidance);
    if (m.phase === "baseline") this.instruct(msg("verify.instruction.baseline"));
    else if (m.phase === "hold") this.instruct(msg("verify.instruction.hold"));
    else if (m.phase === "challenge" && m.challenge) this.instruct(challengeText(m.challenge));
    else if (m.phase === "analysing") this.instruct(msg("verify.instruction.analysing"));
  }

  /** Show the current instruction (the customer's side also speaks it). */
  instruct(text) {
    $("verify-instruction").textContent = text;
  }

  result(m) {
    if (m.outcome === "pass") $("verify-progress").value = 1;
    $("verify-instruction").textContent = "";
    $("verify-guidance").textContent = "";
    $("verify-result").hidden = false;
    $("verify-outcome").textContent = msg(`verify.outcome.${m.outcome}`);
    $("verify-outcome").dataset.outcome = m.outcome;
    this.attempt = null;
  }
}
