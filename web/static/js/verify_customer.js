// The customer's side of the identity check: the face-oval guide over their own video, and
// every instruction spoken aloud (the text is also in an ARIA live region).

import { $, announce, msg } from "./common.js";
import { speak, VerifyUI } from "./verify_ui.js";

export class CustomerVerifyUI extends VerifyUI {
  constructor() {
    super();
    this.lastSpoken = "";
  }

  started(m) {
    $("face-guide").hidden = false;
    super.started(m);
  }

  instruct(text) {
    super.instruct(text);
    if (text !== this.lastSpoken) {
      this.lastSpoken = text;
      speak(text);
    }
  }

  result(m) {
    $("face-guide").hidden = true;
    super.result(m);
    const outcome = msg(`verify.outcome.${m.outcome}`);
    speak(outcome);
    announce(outcome);
    this.lastSpoken = "";
  }
}
