// Identity verification inside the call, the part both sides share: the instruction, the
// guidance, the steps and progress, and the outcome. verify_customer.js and verify_advisor.js
// add what only one side has.
//
// The page never holds the plan: `verify.started` says how many challenges there are
// (`total`), and each one is named only by the `verify.progress` that shows it
// (`phase: "challenge"`). The steps list starts as "Step 1 of 3" … and each step's text is
// filled in when its challenge is revealed.

import { $, config, hasMsg, msg } from "./common.js";

// Told to the rest of the page (the advisor's case panel) when an attempt starts or ends:
// `detail` is {phase: "started" | "result", attempt_id, outcome}.
export const VERIFY_EVENT = "cloudbranch:verify";

export function challengeText(code) {
  return msg(`verify.challenge.${code}`);
}

function guidanceText(key) {
  return key && hasMsg(key) ? msg(key) : "";
}

/** The outcome in words (an unknown outcome still shows something). */
export function outcomeText(outcome) {
  const key = `verify.outcome.${outcome}`;
  return hasMsg(key) ? msg(key) : msg("verify.outcome.fail");
}

/** A whole count from a message field, or `fallback` when it is missing or not a count. */
export function count(value, fallback = 0) {
  return Number.isInteger(value) && value >= 0 ? value : fallback;
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

function stepItem(index, total) {
  const li = document.createElement("li");
  li.dataset.index = String(index);
  const label = document.createElement("span");
  label.className = "step-number";
  label.textContent = msg("verify.step", { n: index + 1, total });
  const text = document.createElement("span");
  text.className = "step-text";
  li.append(label, text);
  return li;
}

export class VerifyUI {
  constructor() {
    this.attempt = null; // {attempt_id, total}
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
    // An older server sent the plan as `challenges`: only its length is used, never its codes.
    const total = count(m.total, Array.isArray(m.challenges) ? m.challenges.length : 0);
    this.attempt = { attempt_id: m.attempt_id, total };
    $("verify-panel").hidden = false;
    $("verify-result").hidden = true;
    $("verify-progress").value = 0;
    this.buildSteps(total);
    this.instruct(msg("verify.instruction.baseline"));
    this.tell("started", m);
  }

  /** The placeholders "Step 1 of N" … (kept when N does not change). */
  buildSteps(total) {
    const steps = $("verify-steps");
    if (steps.children.length === total && steps.dataset.total === String(total)) return;
    steps.dataset.total = String(total);
    steps.replaceChildren(...Array.from({ length: total }, (_, i) => stepItem(i, total)));
  }

  /** Fill in the text of step `index` now that its challenge is shown. */
  reveal(index, code) {
    const li = $("verify-steps").children[index];
    if (!li) return;
    li.querySelector(".step-text").textContent = challengeText(code);
    li.dataset.challenge = code;
  }

  progress(m) {
    if (!this.attempt || m.attempt_id !== this.attempt.attempt_id) return;
    const total = count(m.total, this.attempt.total);
    if (total !== this.attempt.total) {
      this.attempt.total = total;
      this.buildSteps(total);
    }
    const met = count(m.met);
    $("verify-progress").value = total ? Math.min(met / total, 1) : 0;
    if (m.phase === "challenge" && m.challenge) this.reveal(count(m.index), m.challenge);
    [...$("verify-steps").children].forEach((li, i) => {
      li.classList.toggle("done", i < met);
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
    $("verify-outcome").textContent = outcomeText(m.outcome);
    $("verify-outcome").dataset.outcome = m.outcome;
    $("verify-locked").hidden = !m.locked;
    this.attempt = null;
    this.tell("result", m);
  }

  tell(phase, m) {
    const detail = { phase, attempt_id: m.attempt_id, outcome: m.outcome || null };
    document.dispatchEvent(new CustomEvent(VERIFY_EVENT, { detail }));
  }
}
