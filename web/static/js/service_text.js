// Texts of a case's service status (cases.grants.ServiceStatus), shared by the customer's service
// panel and the advisor's case panel. Every text comes from the catalogue; a status carries only
// masked values (card 6222 **** **** 1234, phone 138****5678, U-key serial), never a secret.
//
// The keys are listed in full (not built from the status) so that tests/web/test_i18n.py can check
// that each one exists in both catalogues.

import { dateTimeText, hasMsg, msg } from "./common.js";

// The type of the server's status message. Built, not written out: it is not a catalogue key,
// and tests/web/test_i18n.py reads every "service.…" string literal as one.
export const SERVICE_STATE = ["service", "state"].join(".");

// The customer's instruction per step, then per service where it says more.
const CUSTOMER_STEPS = {
  block: "service.step.block",
  verify: "service.step.verify",
  confirm: "service.step.confirm",
  approval: "service.step.approval",
  ready: "service.step.ready",
  code: "service.step.code",
  done: "service.step.done",
  declined: "service.step.declined",
  rejected: "service.step.rejected",
};
const CUSTOMER_SERVICE_STEPS = {
  card_loss: { verify: "service.step.card_loss.verify", ready: "service.step.card_loss.ready" },
  pin_change: { ready: "service.step.pin_change.ready" },
  phone_change: { ready: "service.step.phone_change.ready" },
  ukey_reset: { ready: "service.step.ukey_reset.ready" },
};
// What the advisor reads per step ({reason}: why it was declined or rejected).
const STAFF_STEPS = {
  none: "service.staff_step.none",
  block: "service.staff_step.block",
  verify: "service.staff_step.verify",
  confirm: "service.staff_step.confirm",
  approval: "service.staff_step.approval",
  ready: "service.staff_step.ready",
  code: "service.staff_step.code",
  done: "service.staff_step.done",
  declined: "service.staff_step.declined",
  rejected: "service.staff_step.rejected",
};
const STAFF_SERVICE_STEPS = {
  card_loss: { verify: "service.staff_step.card_loss.verify" },
};
const APPROVALS = {
  pending: "service.approval.pending",
  approved: "service.approval.approved",
  rejected: "service.approval.rejected",
};
// Why the server refused a staff decision: an `error` (code grant_refused) whose text starts
// with the reason code ("not_passed: …", cases/grants.py).
const REFUSED = {
  not_passed: "service.refused.not_passed",
  attempt_too_old: "service.refused.attempt_too_old",
  not_latest: "service.refused.not_latest",
  already_reviewed: "service.refused.already_reviewed",
  awaiting_approval: "service.refused.awaiting_approval",
  not_your_case: "service.refused.not_your_case",
  no_authorisation_needed: "service.refused.no_authorisation_needed",
  wrong_customer: "service.refused.wrong_customer",
  reason_required: "service.refused.reason_required",
  not_found: "service.refused.not_found",
  already_decided: "service.refused.already_decided",
  four_eyes: "service.refused.four_eyes",
  bad_state: "service.refused.bad_state",
};
const APPROVALS_WITH_REASON = {
  approved: "service.approval.approved_reason",
  rejected: "service.approval.rejected_reason",
};
// What was done: the receipt's `what` is one of these keys (cases/operations.py); a receipt
// with another falls back to its service's sentence.
const DONE = {
  reissue_ordered: "service.done.reissue_ordered",
  pin_changed: "service.done.pin_changed",
  phone_changed: "service.done.phone_changed",
  ukey_reset: "service.done.ukey_reset",
};
const DONE_BY_SERVICE = {
  card_loss: "service.done.reissue_ordered",
  pin_change: "service.done.pin_changed",
  phone_change: "service.done.phone_changed",
  ukey_reset: "service.done.ukey_reset",
};
// Labels of the receipt's details (masked values only).
const DETAILS = {
  card: "service.receipt.detail.card",
  new_card: "service.receipt.detail.new_card",
  replaces: "service.receipt.detail.replaces",
  phone: "service.receipt.detail.phone",
  cooling_off_until: "service.receipt.detail.cooling_off_until",
  ukey: "service.receipt.detail.ukey",
};

// The customer's records as staff see them (`status.account`, masked).
const CARD_STATUS = {
  active: "service.card_status.active",
  lost: "service.card_status.lost",
  reissue_ordered: "service.card_status.reissue_ordered",
};
const UKEY_STATUS = {
  active: "service.ukey_status.active",
  locked: "service.ukey_status.locked",
};

/** `table[name]` when the catalogue has that key, else null (never a key built from input). */
export function keyIn(table, name) {
  const key = Object.prototype.hasOwnProperty.call(table, name) ? table[name] : null;
  return key && hasMsg(key) ? key : null;
}

export function serviceTitle(code) {
  const key = `service.${code}.title`;
  return hasMsg(key) ? msg(key) : code || "";
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** One value of a receipt's details, as shown: lists joined, times in the page's language. */
export function detailText(value) {
  if (Array.isArray(value)) return value.map(detailText).join(", ");
  if (typeof value === "boolean") return msg(value ? "service.yes" : "service.no");
  if (value === null || value === undefined) return "";
  const text = String(value);
  return ISO_TIME.test(text) ? dateTimeText(text) : text;
}

/** What the receipt says was done ("Your card PIN has been changed."). */
export function receiptWhat(receipt) {
  const details = Object.fromEntries(
    Object.entries(receipt.details || {}).map(([k, v]) => [k, detailText(v)]),
  );
  const what = String(receipt.what || "");
  // `what` is one of the DONE keys, or the name of one (pin_changed).
  const key =
    (Object.values(DONE).includes(what) && hasMsg(what) ? what : null) ||
    keyIn(DONE, what) ||
    keyIn(DONE_BY_SERVICE, receipt.service) ||
    "service.done.generic";
  return msg(key, details);
}

/** The receipt's details as `<dt>`/`<dd>` pairs (labels from the catalogue). */
export function detailItems(receipt) {
  return Object.entries(receipt.details || {}).flatMap(([name, value]) => {
    const text = detailText(value);
    if (!text) return [];
    const label = keyIn(DETAILS, name);
    const dt = document.createElement("dt");
    dt.textContent = label ? msg(label) : name;
    const dd = document.createElement("dd");
    dd.textContent = text;
    return [dt, dd];
  });
}

/** The instruction for the customer (`audience` "customer") or the advisor ("staff"). */
export function stepText(status, audience) {
  const [general, special] =
    audience === "staff"
      ? [STAFF_STEPS, STAFF_SERVICE_STEPS]
      : [CUSTOMER_STEPS, CUSTOMER_SERVICE_STEPS];
  const reason = status.declined_reason || (status.approval && status.approval.reason) || "";
  const key = keyIn(special[status.service] || {}, status.step) || keyIn(general, status.step);
  return key ? msg(key, { reason }) : String(status.step || "");
}

/** A supervisor approval as the advisor reads it (`{id, state, reason}`). */
export function approvalText(approval) {
  if (!approval) return msg("service.approval.none");
  const key =
    (approval.reason ? keyIn(APPROVALS_WITH_REASON, approval.state) : null) ||
    keyIn(APPROVALS, approval.state);
  return key ? msg(key, { reason: approval.reason || "" }) : String(approval.state || "");
}

/** The cards a loss report blocked (`status.blocked`: masked numbers and the time). */
export function blockedText(blocked) {
  const cards = detailText(blocked.cards || []);
  const at = detailText(blocked.at || "");
  if (!cards) return msg("service.blocked.none", { at });
  const key = blocked.already_blocked ? "service.blocked.already" : "service.blocked.done";
  return msg(key, { cards, at });
}

/** The sentence for an `error` refusing a staff decision: the general text and the reason. */
export function refusalText(m, generalText) {
  const code = String(m.message || "").split(":")[0].trim();
  const key = keyIn(REFUSED, code);
  return key ? `${generalText} ${msg(key)}` : generalText;
}

function labelled(table, code) {
  const key = keyIn(table, code);
  return key ? msg(key) : String(code || "");
}

function pair(label, value, className) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  if (className) dd.className = className;
  return [dt, dd];
}

/** The customer's masked records as `<dt>`/`<dd>` pairs: cards, phone, cooling-off, U-keys. */
export function accountItems(account) {
  const items = [];
  for (const card of account.cards || []) {
    const text = `${card.number} · ${labelled(CARD_STATUS, card.status)}`;
    items.push(...pair(msg("service.account.card"), text, `card-${card.status}`));
  }
  if (account.phone) items.push(...pair(msg("service.account.phone"), account.phone));
  if (account.cooling_off_until) {
    const until = detailText(account.cooling_off_until);
    items.push(...pair(msg("service.account.cooling_off"), until, "cooling-off"));
  }
  for (const ukey of account.ukeys || []) {
    const text = `${ukey.serial} · ${labelled(UKEY_STATUS, ukey.status)}`;
    items.push(...pair(msg("service.account.ukey"), text));
  }
  return items;
}
