// The customer's side of the identity check: the face-oval guide over their own video, every
// instruction spoken aloud (the text is also in an ARIA live region), a word before the check
// that leaving counts as a failed attempt, and at the end the outcome with what to do next in
// plain words: shown large, spoken and announced. It never says why a check failed.

import { $, announce, hasMsg, msg } from "./common.js";
import { outcomeText, speak, VerifyUI } from "./verify_ui.js";

// The advice when the server sent none (or one this page does not know).
const ADVICE_FOR = {
  pass: "verify.advice.passed",
  fail: "verify.advice.not_confirmed",
  refer: "verify.advice.refer",
  aborted: "verify.advice.stopped",
  undecided: "verify.advice.busy",
};

/** The advice in words: the server's `verify.advice.<kind>` key, else one for the outcome. */
export function adviceText(m) {
  const key = m.advice;
  if (typeof key === "string" && key.startsWith("verify.advice.") && hasMsg(key)) return msg(key);
  const fallback = ADVICE_FOR[m.outcome] || ADVICE_FOR.fail;
  return msg(fallback);
}

export class CustomerVerifyUI extends VerifyUI {
  constructor() {
    super();
    this.lastSpoken = "";
    this.before = ""; // said once, with the first instruction of an attempt
  }

  started(m) {
    $("face-guide").hidden = false;
    this.before = msg("verify.customer.before");
    $("verify-notice").textContent = this.before;
    $("verify-notice").hidden = false;
    announce(this.before);
    super.started(m);
  }

  instruct(text) {
    super.instruct(text);
    if (text !== this.lastSpoken) {
      this.lastSpoken = text;
      // One utterance: speaking the instruction alone would cut the word before it short.
      speak(this.before ? `${this.before} ${text}` : text);
      this.before = "";
    }
  }

  result(m) {
    $("face-guide").hidden = true;
    $("verify-notice").hidden = true;
    this.before = "";
    super.result(m);
    const advice = adviceText(m);
    const locked = m.locked ? msg("verify.customer.locked") : "";
    $("verify-advice").textContent = advice;
    $("verify-locked").textContent = locked;
    const words = [outcomeText(m.outcome), advice, locked].filter(Boolean).join(" ");
    speak(words);
    announce(words);
    this.lastSpoken = "";
  }
}
