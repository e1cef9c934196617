// The advisor's side of the identity check: start and stop it, then the best frame beside the
// photo on file, the match score beside its thresholds, the reasons as sentences marked by how
// much they weigh (fail / refer / note), the attempts left and whether verification is locked.

import { $, config, hasMsg, msg } from "./common.js";
import { count, VerifyUI } from "./verify_ui.js";

const SEVERITY_RANK = { fail: 0, refer: 1, note: 2 };

function labelled(prefix, code) {
  return hasMsg(`${prefix}.${code}`) ? msg(`${prefix}.${code}`) : code;
}

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

function formatter(digits) {
  return new Intl.NumberFormat(config().lang || undefined, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** `value` and `others` as text, with as few decimals (2 to 4) as keep a score that differs
 * from a threshold looking different from it (0.4391 against 0.4393 is not "0.44 — pass at
 * 0.44"). */
export function figures(value, others = []) {
  for (const digits of [2, 3]) {
    const f = formatter(digits);
    const clash = others.some((o) => o !== value && f.format(o) === f.format(value));
    if (!clash) return [value, ...others].map((x) => f.format(x));
  }
  const f = formatter(4);
  return [value, ...others].map((x) => f.format(x));
}

/** The sentence for a reason code; an unknown code still reads as a sentence, with the code. */
export function reasonText(code) {
  const key = `verify.reason.${code}`;
  if (hasMsg(key)) return msg(key);
  return hasMsg("verify.reason.unknown") ? msg("verify.reason.unknown", { code }) : String(code);
}

/** The match score beside its thresholds: "0.52 — pass at 0.44, refer at 0.37". */
export function scoreText(name, value, thresholds) {
  const pass = thresholds && thresholds.pass;
  const refer = thresholds && thresholds.refer;
  if (name === "match" && isNumber(pass) && isNumber(refer)) {
    const [s, p, r] = figures(value, [pass, refer]);
    return msg("verify.staff.score_thresholds", { score: s, pass: p, refer: r });
  }
  if (name === "match" && isNumber(pass)) {
    const [s, p] = figures(value, [pass]);
    return msg("verify.staff.score_pass", { score: s, pass: p });
  }
  return formatter(3).format(value);
}

/** The reasons with their severity: `details` when the server sent them (codes it left out
 * follow, severity unknown), fail first, then refer, then note, in the server's order within. */
export function reasonItems(m) {
  const details = Array.isArray(m.details) ? m.details.filter((d) => d && d.code) : [];
  const known = new Set(details.map((d) => d.code));
  const rest = (m.reasons || []).filter((code) => !known.has(code));
  const all = [...details, ...rest.map((code) => ({ code, severity: null }))];
  const rank = (d) => SEVERITY_RANK[d.severity] ?? 3;
  return all.map((d, i) => [d, i]).sort(([a, i], [b, j]) => rank(a) - rank(b) || i - j).map(([d]) => d);
}

function reasonItem(d) {
  const li = document.createElement("li");
  li.className = "verify-reason";
  li.dataset.code = d.code;
  if (SEVERITY_RANK[d.severity] !== undefined) {
    li.dataset.severity = d.severity;
    const badge = document.createElement("span");
    badge.className = `severity-badge severity-${d.severity}`;
    badge.textContent = msg(`verify.staff.severity.${d.severity}`);
    li.append(badge, " ");
  }
  const text = document.createElement("span");
  text.className = "reason-text";
  text.textContent = reasonText(d.code);
  li.append(text);
  if (isNumber(d.score) && isNumber(d.threshold)) {
    const [score, threshold] = figures(d.score, [d.threshold]);
    const numbers = document.createElement("span");
    numbers.className = "reason-figures";
    numbers.textContent = msg("verify.staff.reason_figures", { score, threshold });
    li.append(" ", numbers);
  }
  return li;
}

function attemptsText(left) {
  if (left === 0) return msg("verify.staff.attempts_left.none");
  if (left === 1) return msg("verify.staff.attempts_left.one");
  return msg("verify.staff.attempts_left.many", { count: left });
}

function show(id, text) {
  $(id).textContent = text || "";
  $(id).hidden = !text;
}

export class AdvisorVerifyUI extends VerifyUI {
  /** `send(message)` goes to the WebSocket. */
  constructor(send) {
    super();
    $("verify-start").addEventListener("click", () => {
      $("verify-start").disabled = true;
      send({ type: "verify.start" });
    });
    $("verify-cancel").addEventListener("click", () => send({ type: "verify.cancel" }));
  }

  /** The call began or ended: show or hide the start button. */
  setInCall(inCall) {
    $("verify-start").hidden = !inCall;
    $("verify-start").disabled = false;
    $("verify-cancel").hidden = true;
    if (!inCall) $("verify-panel").hidden = true;
  }

  /** A refused start (error message) makes the button usable again. */
  refused() {
    $("verify-start").disabled = false;
  }

  started(m) {
    super.started(m);
    $("verify-start").hidden = true;
    $("verify-cancel").hidden = false;
  }

  result(m) {
    super.result(m);
    for (const [id, url] of [
      ["verify-best", m.best_frame_url],
      ["verify-reference", m.reference_url],
    ]) {
      $(id).hidden = !url;
      if (url) $(id).src = url;
    }
    const scores = Object.entries(m.scores || {}).filter(([, value]) => isNumber(value));
    $("verify-scores").replaceChildren(
      ...scores.flatMap(([name, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = labelled("verify.score", name);
        const dd = document.createElement("dd");
        dd.textContent = scoreText(name, value, m.thresholds);
        return [dt, dd];
      }),
    );
    const reasons = reasonItems(m);
    $("verify-reasons").replaceChildren(...reasons.map(reasonItem));
    $("verify-reasons-title").hidden = reasons.length === 0;
    const left = Number.isInteger(m.attempts_left) ? count(m.attempts_left) : null;
    show("verify-attempts", left === null ? "" : attemptsText(left));
    let note = "";
    if (m.outcome === "undecided") note = msg("verify.staff.undecided");
    else if (m.counted === false) note = msg("verify.staff.not_counted");
    show("verify-note", note);
    show("verify-locked", m.locked ? msg("verify.staff.locked") : "");
    $("verify-cancel").hidden = true;
    $("verify-start").hidden = left === 0 || !!m.locked;
    $("verify-start").disabled = false;
  }
}
