// Loads rrweb (served from node_modules, see web/app.py) once, on first use: the customer's
// page only fetches it after the customer agreed to share, the console when a session starts.

import { config } from "./common.js";

let loading = null;

/** Resolves to the global `rrweb` (record + Replayer). */
export function loadRrweb() {
  if (window.rrweb) return Promise.resolve(window.rrweb);
  if (loading) return loading;
  loading = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = config().rrwebUrl || "/vendor/rrweb/rrweb.min.js";
    script.addEventListener("load", () => resolve(window.rrweb));
    script.addEventListener("error", () => {
      loading = null;
      reject(new Error("rrweb could not be loaded"));
    });
    document.head.append(script);
  });
  return loading;
}
