// The advisor's side of the identity check: start and stop it, then the best frame beside the
// photo on file, the scores and the reasons.

import { $, hasMsg, msg } from "./common.js";
import { VerifyUI } from "./verify_ui.js";

function labelled(prefix, code) {
  return hasMsg(`${prefix}.${code}`) ? msg(`${prefix}.${code}`) : code;
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
    $("verify-scores").replaceChildren(
      ...Object.entries(m.scores || {}).flatMap(([name, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = labelled("verify.score", name);
        const dd = document.createElement("dd");
        dd.textContent = Number(value).toFixed(3);
        return [dt, dd];
      }),
    );
    $("verify-reasons").replaceChildren(
      ...(m.reasons || []).map((code) => {
        const li = document.createElement("li");
        li.textContent = labelled("verify.reason", code);
        return li;
      }),
    );
    $("verify-cancel").hidden = true;
    $("verify-start").hidden = m.attempts_left <= 0;
    $("verify-start").disabled = false;
  }
}
