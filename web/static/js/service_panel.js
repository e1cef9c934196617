// The customer's service panel on /call: the step of the service (from GET /api/case/service and
// service-state messages), "block my card now", the secure pad and the receipt.
//
// The pad's secrets (PIN, U-key password, one-time code) leave the page only in the body of the
// final POST: nothing listens to their keystrokes, nothing sends them over the WebSocket, nothing
// logs them; the inputs are cleared as soon as a submission has read them, so a secret never
// stays in the DOM while the request runs or after it.

import { $, announce, dateTimeText, fetchJson, msg } from "./common.js";
import {
  blockedText,
  detailItems,
  keyIn,
  receiptWhat,
  SERVICE_STATE,
  serviceTitle,
  stepText,
} from "./service_text.js";

const API = "/api/case";

// Refusals after which the form cannot simply be tried again: shown above the pad, not in it.
const ENDS_FORM = new Set([
  "otp_failed",
  "otp_expired",
  "no_otp",
  "grant_refused",
  "no_grant",
  "wrong_service",
  "no_card",
  "no_ukey",
  "no_lost_card",
  "customer_not_found",
  "csrf",
  "bad_state",
  "unauthorized",
  "conflict",
]);

// Per service and step: the route of the secure form and which input gives which JSON field.
const FORMS = {
  pin_change: { ready: { path: "/pin", fields: { pin: "pad-pin", confirm: "pad-pin-confirm" } } },
  ukey_reset: {
    ready: { path: "/ukey", fields: { password: "pad-password", confirm: "pad-password-confirm" } },
  },
  phone_change: {
    ready: { path: "/phone", fields: { phone: "pad-phone" } },
    code: { path: "/phone/confirm", fields: { code: "pad-code" } },
  },
  card_loss: { ready: { path: "/reissue", fields: {} } },
};

// The input an error's `field` names, per service.
const FIELD_INPUTS = {
  pin_change: { pin: "pad-pin", confirm: "pad-pin-confirm" },
  ukey_reset: { password: "pad-password", confirm: "pad-password-confirm" },
  phone_change: { phone: "pad-phone", new_phone: "pad-phone", code: "pad-code" },
  card_loss: {},
};

// The sentence for each refusal code of the /api/case routes, and for some, per reason.
const ERRORS = {
  generic: "service.error.generic",
  network: "service.error.network",
  csrf: "service.error.csrf",
  rate_limited: "service.error.rate_limited",
  not_found: "service.error.not_found",
  pin_format: "service.error.pin_format",
  mismatch: "service.error.mismatch",
  pin_weak: "service.error.pin_weak",
  no_card: "service.error.no_card",
  phone_invalid: "service.error.phone_invalid",
  phone_same: "service.error.phone_same",
  otp_wrong: "service.error.otp_wrong",
  otp_failed: "service.error.otp_failed",
  otp_expired: "service.error.otp_expired",
  no_otp: "service.error.no_otp",
  password_weak: "service.error.password_weak",
  no_ukey: "service.error.no_ukey",
  no_lost_card: "service.error.no_lost_card",
  customer_not_found: "service.error.customer_not_found",
  missing_field: "service.error.missing_field",
  bad_json: "service.error.bad_json",
  bad_state: "service.error.bad_state",
  unauthorized: "service.error.unauthorized",
  conflict: "service.error.conflict",
  no_grant: "service.error.no_grant",
  wrong_service: "service.error.wrong_service",
  grant_refused: "service.error.grant_refused",
};
const REASONS = {
  pin_weak: {
    same_digits: "service.error.pin_weak.same_digits",
    sequence: "service.error.pin_weak.sequence",
    birth_date: "service.error.pin_weak.birth_date",
    id_number: "service.error.pin_weak.id_number",
    last_pin: "service.error.pin_weak.last_pin",
  },
  password_weak: {
    equals_pin: "service.error.password_weak.equals_pin",
    length: "service.error.password_weak.length",
    charset: "service.error.password_weak.charset",
    classes: "service.error.password_weak.classes",
  },
  grant_refused: {
    expired: "service.error.grant_refused.expired",
    used: "service.error.grant_refused.used",
    revoked: "service.error.grant_refused.revoked",
  },
};

/** The sentence for an API error body `{error, reason, tries_left}` (status 0: no network):
 * what went wrong and what to do. A refusal that leaves tries says how many. */
export function errorMessage(status, body) {
  const data = body || {};
  let code = data.error;
  if (status === 0) code = "network";
  else if (!code) code = status === 403 ? "csrf" : "generic";
  const key =
    (data.reason ? keyIn(REASONS[code] || {}, data.reason) : null) ||
    keyIn(ERRORS, code) ||
    "service.error.generic";
  const tries = data.tries_left;
  if (tries === null || tries === undefined) return msg(key);
  if (msg(key).includes("{tries}")) return msg(key, { tries });
  return `${msg(key)} ${msg("service.error.tries_left", { tries })}`;
}

export class ServicePanel {
  constructor() {
    this.panel = $("service-panel");
    this.service = this.panel ? this.panel.dataset.service : null;
    this.status = null;
    this.shownStep = null; // the pad step on screen ("ready" / "code"), or null
    this.override = null; // "ready" while the customer asks for a new code (phone_change)
    this.busy = false;
    if (this.panel) this.bind();
  }

  bind() {
    $("secure-pad").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    // Controls that only some services have are found by their data-action.
    const block = this.control("block");
    if (block) block.addEventListener("click", () => this.block());
    const again = this.control("code-again");
    if (again) {
      again.addEventListener("click", () => {
        this.override = "ready";
        this.render();
      });
    }
  }

  control(action) {
    return this.panel.querySelector(`[data-action="${action}"]`);
  }

  /** Handle a service message; false when `m` is not one. */
  handle(m) {
    if (m.type !== SERVICE_STATE) return false;
    if (this.panel && m.status) this.show(m.status);
    return true;
  }

  /** Ask the server where the service stands (on load and after every reconnection). */
  async load() {
    if (!this.panel) return;
    const res = await fetchJson(`${API}/service`);
    if (res.ok && res.body && res.body.step) {
      this.show(res.body);
    } else if (!this.status) {
      $("service-step").textContent = msg("service.step.unavailable");
      // A lost card must be blockable even when the status cannot be read: blocking is safe.
      if (this.control("block")) this.control("block").closest(".block-area").hidden = false;
    }
  }

  show(status) {
    const before = this.status;
    this.status = status;
    const changed = !before || before.step !== status.step;
    if (changed) this.override = null;
    this.render();
    if (changed && before && status.step === "done") $("receipt-title").focus();
  }

  render() {
    const status = this.status;
    if (!status) return;
    if (status.step === "none") {
      this.panel.hidden = true;
      return;
    }
    this.panel.hidden = false;
    const text = stepText(status, "customer");
    if ($("service-step").textContent !== text) $("service-step").textContent = text;
    this.renderNote(status);
    const block = this.control("block");
    if (block) block.closest(".block-area").hidden = status.step !== "block";
    const blocked = this.panel.querySelector(".service-blocked");
    if (blocked) {
      blocked.hidden = !status.blocked;
      blocked.textContent = status.blocked ? blockedText(status.blocked) : "";
    }
    this.renderPad(status);
    this.renderReceipt(status);
  }

  renderNote(status) {
    const note = $("service-note");
    let text = "";
    if (status.step === "declined" && status.declined_reason) {
      text = msg("service.declined_reason", { reason: status.declined_reason });
    } else if (status.step === "rejected" && status.approval && status.approval.reason) {
      text = msg("service.rejected_reason", { reason: status.approval.reason });
    }
    note.textContent = text;
    note.hidden = !text;
  }

  /** The pad step to show now, or null when the pad is closed. */
  padStep(status) {
    const forms = FORMS[this.service] || {};
    const step = this.override || status.step;
    return forms[step] && (status.step === "ready" || status.step === "code") ? step : null;
  }

  renderPad(status) {
    const step = this.padStep(status);
    const pad = $("secure-pad");
    if (!step) {
      this.clearInputs();
      this.clearFieldErrors();
      pad.hidden = true;
      this.shownStep = null;
      return;
    }
    for (const part of pad.querySelectorAll(".pad-step")) {
      part.hidden = part.dataset.step !== step;
    }
    pad.hidden = false;
    if (this.shownStep !== step) {
      this.shownStep = step;
      this.clearFieldErrors();
      const part = pad.querySelector(`.pad-step[data-step="${step}"]`);
      const first = part && part.querySelector("input, button");
      if (first) first.focus();
    }
  }

  renderReceipt(status) {
    const receipt = status.receipt;
    $("receipt").hidden = !receipt;
    if (!receipt) return;
    $("receipt-what").textContent = receiptWhat(receipt);
    $("receipt-case").textContent = receipt.case || "";
    $("receipt-service").textContent = serviceTitle(receipt.service || status.service);
    $("receipt-time").textContent = dateTimeText(receipt.at);
    $("receipt-time").setAttribute("datetime", receipt.at || "");
    $("receipt-details").replaceChildren(...detailItems(receipt));
  }

  /** Read the current form's inputs into a JSON body, then clear them at once. */
  readForm(form) {
    const body = {};
    for (const [key, id] of Object.entries(form.fields)) body[key] = $(id).value;
    this.clearInputs();
    return body;
  }

  clearInputs() {
    for (const input of $("secure-pad").querySelectorAll("input")) input.value = "";
  }

  clearFieldErrors() {
    for (const el of $("secure-pad").querySelectorAll(".field-error")) {
      el.textContent = "";
      el.hidden = true;
    }
    for (const input of $("secure-pad").querySelectorAll("input")) {
      input.removeAttribute("aria-invalid");
    }
  }

  /** The first empty input of `form`, if any (checked before anything is sent). */
  emptyInput(form) {
    return Object.values(form.fields).find((id) => !$(id).value);
  }

  async submit() {
    if (this.busy || !this.status) return;
    const step = this.padStep(this.status);
    const form = step && FORMS[this.service][step];
    if (!form) return;
    this.clearFieldErrors();
    this.showServiceError(null);
    const empty = this.emptyInput(form);
    if (empty) {
      this.clearInputs();
      this.fieldError(empty, msg("service.error.empty"));
      return;
    }
    let body = this.readForm(form);
    this.setBusy(true);
    const res = await fetchJson(API + form.path, { method: "POST", body });
    body = null;
    this.setBusy(false);
    if (res.ok && res.body && res.body.step) {
      this.override = null;
      this.show(res.body);
    } else {
      this.failed(res);
    }
  }

  async block() {
    if (this.busy) return;
    this.showServiceError(null);
    this.setBusy(true);
    const res = await fetchJson(`${API}/loss-report`, { method: "POST", body: {} });
    this.setBusy(false);
    if (res.ok && res.body && res.body.step) {
      this.show(res.body);
      $("service-title").focus();
    } else {
      this.failed(res);
    }
  }

  setBusy(busy) {
    this.busy = busy;
    for (const button of this.panel.querySelectorAll("button")) button.disabled = busy;
    if (busy) announce(msg("service.pad.sending"));
  }

  /** Show a refusal: next to its field when it names one on screen, else above the pad (where
   * it stays readable when the refusal also closes the pad, e.g. a third wrong code). */
  failed(res) {
    const text = errorMessage(res.status, res.body);
    const body = res.body || {};
    const id = body.field ? (FIELD_INPUTS[this.service] || {})[body.field] : null;
    const onScreen = id && $(id) && !$("secure-pad").hidden && !$(id).closest(".pad-step").hidden;
    if (onScreen && !ENDS_FORM.has(body.error)) {
      this.fieldError(id, text);
    } else {
      this.showServiceError(text);
      $("service-error").focus();
    }
  }

  fieldError(id, text) {
    const input = $(id);
    const error = $(`${id}-error`);
    if (error) {
      error.textContent = text;
      error.hidden = false;
    }
    input.setAttribute("aria-invalid", "true");
    input.focus();
    announce(text);
  }

  showServiceError(text) {
    const box = $("service-error");
    box.textContent = text || "";
    box.hidden = !text;
  }
}
