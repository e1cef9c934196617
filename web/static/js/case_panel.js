// The advisor's case panel: the service and its step, "Confirm identity" / "Decline" on a passed
// attempt and "Decline" (with its required reason) on one that failed, was referred or was
// stopped (sent as grant.confirm / grant.decline over the console's socket), the supervisor's
// approval and the outcome. Everything shown comes from the server's service-state messages
// (masked values only); which attempt just ended comes from the identity check's panel.

import { $, announce, errorText, msg } from "./common.js";
import {
  accountItems,
  approvalText,
  blockedText,
  detailItems,
  receiptWhat,
  refusalText,
  SERVICE_STATE,
  serviceTitle,
  stepText,
} from "./service_text.js";
import { VERIFY_EVENT } from "./verify_ui.js";

// Outcomes of an attempt the advisor may decline without a pass (an undecided one does not
// count: the check is simply run again).
const DECLINABLE = new Set(["fail", "refer", "aborted"]);

export class CasePanel {
  /** `send(message)` goes to the WebSocket. */
  constructor(send) {
    this.send = send;
    this.status = null;
    this.approvalSeen = null; // the case's approval as last seen (the status may drop it)
    this.pending = false; // a decision was sent; waiting for the server's answer
    this.unpassed = null; // the attempt that just ended without a pass (id), while declinable
    document.addEventListener(VERIFY_EVENT, (event) => this.verifyChanged(event.detail || {}));
    $("grant-confirm").addEventListener("click", () => this.confirm());
    $("grant-decline").addEventListener("click", () => this.decline());
    $("decline-reason").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.decline();
      }
    });
  }

  /** The call ended: forget its case (the next call's status replaces everything). */
  reset() {
    this.status = null;
    this.approvalSeen = null;
    this.pending = false;
    this.unpassed = null;
    for (const id of ["case-service", "case-step", "case-approval", "case-outcome-text"]) {
      $(id).textContent = "";
    }
    $("case-outcome-details").replaceChildren();
    $("case-account").replaceChildren();
    $("case-account-box").hidden = true;
    $("case-approval-label").hidden = true;
    $("case-approval").hidden = true;
    $("case-outcome").hidden = true;
    $("decline-reason").value = "";
    $("decline-reason").removeAttribute("aria-invalid");
    this.showError(null);
    this.updateButtons();
  }

  /** A call started: show its service until the server's status for it arrives. */
  started(m) {
    if (this.status) return; // the status came first (or this is a media restart)
    $("case-service").textContent = serviceTitle(m.service);
    $("grant-actions").hidden = m.service === "consultation";
    this.updateButtons();
  }

  /** Handle a service message; false when `m` is not one. */
  handle(m) {
    if (m.type !== SERVICE_STATE || !m.status) return false;
    this.show(m.status);
    return true;
  }

  show(status) {
    const before = this.status;
    this.status = status;
    this.pending = false;
    const changed = !before || before.step !== status.step;
    $("case-service").textContent = serviceTitle(status.service);
    $("case-step").textContent = stepText(status, "staff");
    const approval = this.approvalOf(status);
    $("case-approval-label").hidden = !approval;
    $("case-approval").hidden = !approval;
    if (approval) $("case-approval").textContent = approvalText(approval);
    this.showOutcome(status);
    this.showAccount(status.account);
    $("grant-actions").hidden = status.step === "none";
    if (changed) {
      this.showError(null);
      if (status.step !== "declined") $("decline-reason").value = "";
      if (status.step === "confirm") announce(stepText(status, "staff"));
    }
    this.updateButtons();
  }

  /** The approval to show. The status names it while it is pending or rejected; once a
   * supervisor approved, the step moves on (ready, code, done) and the status may drop it. */
  approvalOf(status) {
    if (status.approval) {
      this.approvalSeen = status.approval;
      return status.approval;
    }
    if (status.step === "approval") {
      this.approvalSeen = { state: "pending" };
      return this.approvalSeen;
    }
    const after = ["ready", "code", "done"].includes(status.step);
    if (after && this.approvalSeen && this.approvalSeen.state === "pending") {
      this.approvalSeen = { state: "approved" };
    }
    return after ? this.approvalSeen : null;
  }

  /** The customer's records (masked), as they are now: a block or a change shows at once. */
  showAccount(account) {
    const items = account ? accountItems(account) : [];
    $("case-account-box").hidden = items.length === 0;
    $("case-account").replaceChildren(...items);
  }

  /** What was done: the receipt, and a loss report's blocked cards. */
  showOutcome(status) {
    const receipt = status.receipt;
    const lines = [];
    if (status.blocked) lines.push(blockedText(status.blocked));
    if (receipt) lines.push(receiptWhat(receipt));
    $("case-outcome").hidden = lines.length === 0;
    $("case-outcome-text").textContent = lines.join(" ");
    $("case-outcome-details").replaceChildren(...(receipt ? detailItems(receipt) : []));
  }

  /** An identity check started (nothing to decline until it ends) or ended. */
  verifyChanged(detail) {
    const ended = detail.phase === "result" && DECLINABLE.has(detail.outcome);
    this.unpassed = ended && detail.attempt_id ? detail.attempt_id : null;
    if (this.unpassed) this.showError(null);
    this.updateButtons();
  }

  get canConfirm() {
    const s = this.status;
    return !!s && s.step === "confirm" && !!s.attempt_id && !this.pending;
  }

  /** The attempt a decline would be about: the passed one waiting for confirmation, or the
   * one that just ended without a pass (the status then still asks for a check). */
  get declineTarget() {
    const s = this.status;
    if (!s || this.pending) return null;
    if (s.step === "confirm" && s.attempt_id) return s.attempt_id;
    if (s.step === "verify" && this.unpassed) return this.unpassed;
    return null;
  }

  updateButtons() {
    const target = this.declineTarget;
    $("grant-confirm").disabled = !this.canConfirm;
    $("grant-decline").disabled = !target;
    $("decline-reason").disabled = !target;
    const unpassed = !!target && target === this.unpassed && !this.canConfirm;
    $("grant-hint").textContent = msg(
      unpassed ? "service.case.decline_hint" : "service.case.confirm_hint",
    );
  }

  confirm() {
    if (!this.canConfirm) return;
    this.decided({ type: "grant.confirm", attempt_id: this.status.attempt_id });
  }

  decline() {
    const target = this.declineTarget;
    if (!target) return;
    const reason = $("decline-reason").value.trim().slice(0, 200);
    if (!reason) {
      this.showError(msg("service.case.reason_required"));
      $("decline-reason").setAttribute("aria-invalid", "true");
      $("decline-reason").focus();
      return;
    }
    $("decline-reason").removeAttribute("aria-invalid");
    this.decided({ type: "grant.decline", attempt_id: target, reason });
  }

  decided(message) {
    this.showError(null);
    if (!this.send(message)) {
      this.showError(msg("js.chat.not_sent"));
      return;
    }
    this.pending = true;
    this.updateButtons();
    announce(msg("service.case.sent"));
  }

  /** An `error` answering a decision (code `grant_refused`, the reason in `message`). */
  refused(m) {
    this.pending = false;
    this.showError(refusalText(m, errorText(m.code)));
    this.updateButtons();
    $("grant-error").focus();
  }

  showError(text) {
    $("grant-error").textContent = text || "";
    $("grant-error").hidden = !text;
  }
}
