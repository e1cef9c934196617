// The supervisor's approvals page: the requests waiting for a second member of staff, pushed live
// (`approvals.pending`), each with the best frame of the video beside the photo on file; approve
// or reject (with a reason) sends `approval.decide`.

import {
  $,
  announce,
  config,
  connectionStatus,
  dateTimeText,
  errorText,
  msg,
  showPageError,
  SocketClient,
} from "./common.js";
import { refusalText, serviceTitle } from "./service_text.js";

const state = { rendered: false, sent: new Set() };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function fact(label, value) {
  return [el("dt", { textContent: label }), el("dd", { textContent: value })];
}

function face(className, url, caption) {
  const img = el("img", { className, src: url || "", alt: caption });
  img.hidden = !url;
  return el("figure", {}, img, el("figcaption", { textContent: caption }));
}

function itemFor(a) {
  const id = String(a.id);
  const titleId = `approval-${id}-title`;
  const reasonId = `approval-reason-${id}`;
  const errorId = `approval-error-${id}`;
  const service = serviceTitle(a.service);
  const facts = el("dl", { className: "approval-facts" });
  facts.append(
    ...fact(msg("js.approvals.customer"), a.customer),
    ...fact(msg("js.approvals.service"), service),
    ...fact(msg("js.approvals.advisor"), a.advisor),
    ...fact(msg("js.approvals.requested"), dateTimeText(a.requested_at)),
  );
  const faces = el(
    "div",
    { className: "verify-faces approval-faces" },
    face("approval-best", a.best_frame_url, msg("js.approvals.best", { name: a.customer })),
    face("approval-reference", a.reference_url, msg("js.approvals.reference")),
  );
  const reason = el("input", { type: "text", id: reasonId, className: "approval-reason" });
  reason.maxLength = 200;
  reason.autocomplete = "off";
  reason.setAttribute("aria-describedby", errorId);
  const error = el("p", { id: errorId, className: "field-error" });
  error.hidden = true;
  const approve = el("button", {
    type: "button",
    className: "btn primary approve-btn",
    textContent: msg("js.approvals.approve"),
  });
  approve.setAttribute("aria-describedby", titleId);
  const reject = el("button", {
    type: "button",
    className: "btn danger reject-btn",
    textContent: msg("js.approvals.reject"),
  });
  reject.setAttribute("aria-describedby", titleId);
  const article = el(
    "article",
    { className: "panel approval" },
    el("h2", { id: titleId, textContent: msg("js.approvals.case", { case: a.case, service }) }),
    facts,
    faces,
    el(
      "div",
      { className: "field" },
      el("label", { htmlFor: reasonId, textContent: msg("js.approvals.reason") }),
      reason,
      error,
    ),
    el("div", { className: "actions" }, approve, reject),
  );
  article.setAttribute("aria-labelledby", titleId);
  const item = el("li", { className: "approval-item" }, article);
  item.dataset.approvalId = id;
  return item;
}

/** Show the pending list; items still pending keep their element (and a reason being typed). */
function render(items) {
  const list = $("approvals-list");
  const existing = new Map(
    [...list.querySelectorAll(".approval-item")].map((li) => [li.dataset.approvalId, li]),
  );
  const fresh = items.filter((a) => !existing.has(String(a.id)));
  const nodes = items.map((a) => existing.get(String(a.id)) || itemFor(a));
  const focusedGone =
    document.activeElement && list.contains(document.activeElement) &&
    !nodes.some((li) => li.contains(document.activeElement));
  list.replaceChildren(...nodes);
  $("approvals-empty").hidden = items.length > 0;
  $("approvals-status").textContent = msg("js.approvals.count", { count: items.length });
  if (fresh.length > 0 && state.rendered) {
    announce(msg("js.approvals.new", { count: items.length }));
  }
  if (focusedGone) $("main").focus();
  const pending = new Set(items.map((a) => String(a.id)));
  for (const id of [...state.sent]) if (!pending.has(id)) state.sent.delete(id);
  state.rendered = true;
}

function itemError(item, text) {
  const error = item.querySelector(".field-error");
  error.textContent = text || "";
  error.hidden = !text;
  item.querySelector(".approval-reason").toggleAttribute("aria-invalid", !!text);
}

function decide(item, approve) {
  const input = item.querySelector(".approval-reason");
  const reason = input.value.trim().slice(0, 200);
  if (!approve && !reason) {
    itemError(item, msg("js.approvals.reason_required"));
    input.focus();
    return;
  }
  itemError(item, null);
  const sent = socket.send({
    type: "approval.decide",
    approval_id: Number(item.dataset.approvalId),
    approve,
    reason,
  });
  if (!sent) {
    itemError(item, msg("js.chat.not_sent"));
    return;
  }
  state.sent.add(item.dataset.approvalId);
  for (const button of item.querySelectorAll("button")) button.disabled = true;
  announce(msg("js.approvals.sent"));
}

/** A refused decision: its buttons work again. */
function refused(m) {
  showPageError(refusalText(m, errorText(m.code)));
  for (const id of state.sent) {
    const item = document.querySelector(`.approval-item[data-approval-id="${id}"]`);
    if (item) for (const button of item.querySelectorAll("button")) button.disabled = false;
  }
  state.sent.clear();
}

function handle(m) {
  switch (m.type) {
    case "approvals.pending":
      showPageError(null);
      render(m.items || []);
      break;
    case "error":
      if (m.ref === "approval.decide") refused(m);
      else showPageError(errorText(m.code));
      break;
    default:
      break;
  }
}

const socket = new SocketClient({
  path: config().wsPath,
  initial: () => null,
  onMessage: handle,
  onStatus: connectionStatus,
});

$("approvals-list").addEventListener("click", (event) => {
  const button = event.target.closest(".approve-btn, .reject-btn");
  if (!button || button.disabled) return;
  decide(button.closest(".approval-item"), button.classList.contains("approve-btn"));
});

socket.connect();
