"""The auditors' console: case search, the case page, the recordings (with HTTP ranges) and the
verdict API. Translates requests and errors only; the review's rules live in ``cases.review``.

Only staff with the role ``auditor`` get anything here. Pages refuse others as every staff page
does (``current_staff``: to the login, or 403); the media and JSON routes answer 401/403 JSON.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from cases.attempts import AttemptStore
from cases.errors import CaseNotFound
from cases.review import (
    FLAG_CODES,
    OUTCOMES,
    VERDICTS,
    CaseDetail,
    CaseFilter,
    EvidenceView,
    RecordingGone,
    RecordingNotFound,
    ReviewInputError,
    ReviewRefused,
    ReviewState,
    TimelineEntry,
)
from cases.services import SERVICES
from store.errors import BlobCorrupt, BlobNotFound, StoreError
from web import params
from web.accounts import StaffRef, get_staff
from web.keys import BLOBS, CATALOG, DB, REQ_LANG, REVIEW, session_of
from web.middleware import json_error, wants_json
from web.pages import current_staff
from web.params import BadParam
from web.render import render

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
AUDITOR_ROLES = frozenset({"auditor"})
MAX_COMMENT = 2000
MAX_BODY = 16 * 1024
MAX_PAGE = 100_000
CHUNK = 1024 * 1024
SIDES = ("customer", "advisor")
# ASCII digits, at most 18 (\d takes other scripts' digits, and int() refuses 4,301).
_RANGE_RE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})", re.ASCII)


# ---- pure helpers -------------------------------------------------------------------------


def clock_text(t_ms: int | None) -> str:
    """A position on the recordings' common clock as ``mm:ss`` (``""`` when there is none)."""
    if t_ms is None:
        return ""
    seconds = max(t_ms, 0) // 1000
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def duration_text(seconds: int | None) -> str:
    """A call length as ``m:ss`` (or ``h:mm:ss``)."""
    if seconds is None:
        return ""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


SEVERITIES = ("fail", "refer", "note")  # how much a reason weighed, most first
_THRESHOLD_FIGURES = frozenset({"code", "severity", "score", "pass", "refer", "threshold"})
Translate = Callable[..., str]


def figure_texts(value: float, others: Sequence[float] = ()) -> list[str]:
    """``value`` and ``others`` with as few decimals (2 to 4) as keep a score that differs
    from a threshold looking different from it (0.4391 is not shown as "pass at 0.44")."""
    for digits in (2, 3):
        text = [f"{x:.{digits}f}" for x in (value, *others)]
        if all(o == value or t != text[0] for o, t in zip(others, text[1:], strict=True)):
            return text
    return [f"{x:.4f}" for x in (value, *others)]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def score_text(t: Translate, score: float, limits: Mapping[str, object]) -> str:
    """A match score beside its thresholds: "0.52 — pass at 0.44, refer at 0.37"."""
    accept, refer = _number(limits.get("pass")), _number(limits.get("refer"))
    if accept is not None and refer is not None:
        s, a, r = figure_texts(score, (accept, refer))
        return t("verify.staff.score_thresholds", score=s, **{"pass": a, "refer": r})
    if accept is not None:
        s, a = figure_texts(score, (accept,))
        return t("verify.staff.score_pass", score=s, **{"pass": a})
    return f"{score:.3f}"


def figures_text(t: Translate, item: Mapping[str, object]) -> str:
    """The figures a reason rests on: the score against its threshold(s), then the others."""
    parts = []
    score, threshold = _number(item.get("score")), _number(item.get("threshold"))
    if score is not None and threshold is not None:
        s, th = figure_texts(score, (threshold,))
        parts.append(t("verify.staff.reason_figures", score=s, threshold=th))
    elif score is not None:
        parts.append(score_text(t, score, item))
    for name, value in item.items():
        if name in _THRESHOLD_FIGURES or value is None or isinstance(value, dict | list):
            continue
        number = _number(value)
        parts.append(f"{name} {number:.4g}" if number is not None else f"{name} {str(value)[:80]}")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class ReasonLine:
    """One reason of an attempt as the auditor reads it."""

    code: str
    severity: str | None  # fail | refer | note; None when the evidence does not say
    severity_text: str
    text: str
    figures: str


def reason_lines(
    t: Translate, has: Callable[[str], bool], stored: object, codes: Sequence[str]
) -> list[ReasonLine]:
    """The reasons of an attempt as sentences, most severe first (the evidence's order
    within). ``stored``: the evidence document's ``reasons`` ({code, severity, …figures});
    ``codes``: the attempt's reason codes, for what the evidence does not hold."""
    items = [r for r in stored if isinstance(r, dict)] if isinstance(stored, list) else []
    items = [r for r in items if isinstance(r.get("code"), str)]
    known = {r["code"] for r in items}
    items += [{"code": code} for code in codes if code not in known]
    lines = []
    for item in items:
        code, severity = str(item["code"]), item.get("severity")
        severity = severity if severity in SEVERITIES else None
        key = f"verify.reason.{code}"
        lines.append(
            ReasonLine(
                code=code,
                severity=severity,
                severity_text=t(f"verify.staff.severity.{severity}")
                if severity
                else t("audit.evidence.reason_unknown_severity"),
                text=t(key) if has(key) else t("verify.reason.unknown", code=code),
                figures=figures_text(t, item),
            )
        )
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(lines, key=lambda line: rank.get(line.severity or "", len(SEVERITIES)))


class Unsatisfiable(ValueError):
    """The Range header asks for bytes the file does not have (HTTP 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` asked for by a ``Range`` header, or ``None`` for the whole file.

    A header that is not one ``bytes=`` range is ignored (RFC 9110 allows serving it whole);
    ``Unsatisfiable`` when the range starts past the end (or asks for an empty suffix).
    """
    found = _RANGE_RE.fullmatch(header.strip()) if header else None
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first, last = found.group(1), found.group(2)
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(size - length, 0), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise Unsatisfiable(header)
    return start, end


# ---- access -------------------------------------------------------------------------------


def _json_refusal(status: int, code: str, message: str) -> web.HTTPException:
    cls = web.HTTPUnauthorized if status == 401 else web.HTTPForbidden
    body = json.dumps({"error": code, "message": message})
    return cls(text=body, content_type="application/json")


async def auditor_for_api(request: web.Request) -> StaffRef:
    """The logged-in auditor; 401 JSON without a staff session, 403 JSON for other roles."""
    session = session_of(request)
    if session is None or session.kind != "staff" or session.staff_id is None:
        raise _json_refusal(401, "unauthorized", "sign in as an auditor first")
    staff = await get_staff(request.app[DB], session.staff_id)
    if staff is None:
        raise _json_refusal(401, "unauthorized", "sign in as an auditor first")
    if staff.role not in AUDITOR_ROLES:
        raise _json_refusal(403, "forbidden", f"the role {staff.role!r} may not audit cases")
    return staff


# ---- pages --------------------------------------------------------------------------------


def _filter_options(advisors: list[tuple[int, str]]) -> dict[str, Any]:
    return {
        "services": list(SERVICES),
        "outcomes": OUTCOMES,
        "flags": ("any", *FLAG_CODES),
        "states": [s.value for s in ReviewState],
        "advisors": advisors,
    }


def case_filter(query: params.Params) -> CaseFilter:
    """The search's filter from its URL parameters; :class:`BadParam` names a bad one."""
    state = params.choice(query, "state", [s.value for s in ReviewState])
    try:
        return CaseFilter(
            date_from=params.day(query, "date_from"),
            date_to=params.day(query, "date_to"),
            service=params.choice(query, "service", SERVICES),
            outcome=params.choice(query, "outcome", OUTCOMES),
            advisor_id=params.integer(query, "advisor"),
            flag=params.choice(query, "flag", (*FLAG_CODES, "any")),
            state=ReviewState(state) if state else None,
            page=params.integer(query, "page", hi=MAX_PAGE) or 1,
        )
    except ReviewInputError as err:
        raise BadParam(err.field, "out_of_range", err.message) from err


def _page_link(f: CaseFilter, page: int) -> str:
    query = f.to_query(page=page if page > 1 else None)
    return "/audit?" + urlencode(query) if query else "/audit"


@routes.get("/audit")
async def search_page(request: web.Request) -> web.Response:
    """The auditors' search: a GET filter form and one page of closed cases. A bad filter is
    shown beside its field (400); asked for JSON, the 400 is JSON naming the field."""
    staff = await current_staff(request, AUDITOR_ROLES)
    desk = request.app[REVIEW]
    values: Mapping[str, str] = request.query
    errors: dict[str, str] = {}
    result = None
    try:
        f = case_filter(values)
    except BadParam as err:
        if wants_json(request):
            raise
        errors[err.field] = f"audit.filter.error.{err.field}"
        f = CaseFilter()
    else:
        result = await desk.search(staff.id, f)
    return render(
        request,
        "audit_search.html",
        status=400 if errors else 200,
        staff_name=staff.display_name,
        staff_role=staff.role,
        values=values,
        errors=errors,
        result=result,
        options=_filter_options(await desk.advisors()),
        prev_link=_page_link(f, result.page - 1) if result and result.page > 1 else None,
        next_link=_page_link(f, result.page + 1) if result and result.page < result.pages else None,
        duration_text=duration_text,
    )


def _action_text(request: web.Request, action: str) -> str:
    """The audit action in words; the code itself when the catalogue has no words for it."""
    catalog, lang = request.app[CATALOG], request[REQ_LANG]
    key = "audit.action." + action
    return catalog.translate(lang, key) if catalog.has("en", key) else action


def _player_config(detail: CaseDetail) -> dict[str, Any]:
    recordings = [
        {
            "side": r.side,
            "url": r.url,
            "offsetMs": r.offset_ms,
            "durationMs": r.duration_ms,
            "deleted": r.deleted,
        }
        for r in detail.recordings
    ]
    cobrowse = [
        {"url": c.url, "tMs": c.t_ms, "events": c.events}
        for c in detail.cobrowse
        if not c.deleted and c.t_ms is not None
    ]
    return {
        "publicId": detail.summary.public_id,
        "verdictUrl": f"/api/audit/cases/{detail.summary.public_id}/verdict",
        "recordings": recordings,
        "cobrowse": cobrowse,
        "clockZeroMs": (
            round(detail.clock_zero.timestamp() * 1000) if detail.clock_zero is not None else None
        ),
        "rrwebUrl": "/vendor/rrweb/rrweb.min.js",
        "totalMs": max((r.offset_ms + r.duration_ms for r in detail.recordings), default=0),
    }


@dataclass(frozen=True, slots=True)
class _Line:
    """A timeline entry as the page shows it: ``t_ms`` only from the recordings' zero on."""

    entry: TimelineEntry
    t_ms: int | None
    clock: str
    action: str


@dataclass(frozen=True, slots=True)
class _Evidence:
    """An attempt's evidence in words: its result, the advisor's decision, the reasons, the
    scores (beside their thresholds) and the challenge timeline's events."""

    state: str
    review: str
    reasons: list[ReasonLine]
    scores: list[tuple[str, str]]
    events: dict[str, str]


async def _evidence_doc(request: web.Request, ev: EvidenceView) -> dict[str, Any]:
    """The attempt's stored evidence document ({} when deleted, missing or unreadable)."""
    if ev.deleted:
        return {}
    row = await AttemptStore(request.app[DB]).get(ev.attempt_id)
    if row is None or not row.evidence_blob_key:
        return {}
    try:
        doc = json.loads(await request.app[BLOBS].get(row.evidence_blob_key))
    except (StoreError, ValueError):
        log.warning("evidence unreadable", extra={"attempt_id": ev.attempt_id})
        return {}
    return doc if isinstance(doc, dict) else {}


def _worded(request: web.Request, key: str, fallback: str) -> str:
    catalog, lang = request.app[CATALOG], request[REQ_LANG]
    return catalog.translate(lang, key) if catalog.has("en", key) else fallback


async def _evidence_words(request: web.Request, ev: EvidenceView) -> _Evidence:
    catalog, lang = request.app[CATALOG], request[REQ_LANG]
    t = catalog.translator(lang)
    doc = await _evidence_doc(request, ev)
    limits = doc.get("thresholds")
    limits = limits if isinstance(limits, dict) else {}
    scores = [
        (
            _worded(request, f"verify.score.{name}", name),
            score_text(t, value, limits) if name == "match" else f"{value:.3f}",
        )
        for name, value in sorted(ev.scores.items())
    ]
    kinds = {str(step["event"]) for step in ev.timeline}
    review = ev.advisor_review or ""
    return _Evidence(
        state=_worded(request, f"audit.outcome.{ev.state}", ev.state),
        review=_worded(request, f"audit.evidence.review.{review}", review) if review else "",
        reasons=reason_lines(t, lambda key: catalog.has("en", key), doc.get("reasons"), ev.reasons),
        scores=scores,
        events={kind: _worded(request, f"audit.evidence.event.{kind}", kind) for kind in kinds},
    )


def _line(request: web.Request, e: TimelineEntry) -> _Line:
    t_ms = e.t_ms if e.t_ms is not None and e.t_ms >= 0 else None
    return _Line(e, t_ms, clock_text(t_ms), _action_text(request, e.action))


@routes.get("/audit/cases/{public_id}")
async def case_page(request: web.Request) -> web.Response:
    """One closed case: both recordings in sync, the timeline, evidence, chat, verdicts."""
    staff = await current_staff(request, AUDITOR_ROLES)
    try:
        detail = await request.app[REVIEW].detail(staff.id, request.match_info["public_id"])
    except CaseNotFound as err:
        raise web.HTTPNotFound(text="no such case") from err
    sides = {r.side: r for r in detail.recordings}
    lines = [_line(request, e) for e in detail.timeline]
    return render(
        request,
        "audit_case.html",
        staff_name=staff.display_name,
        staff_role=staff.role,
        detail=detail,
        case=detail.summary,
        sides=[(side, sides.get(side)) for side in SIDES],
        lines=lines,
        words={ev.attempt_id: await _evidence_words(request, ev) for ev in detail.evidence},
        clock_text=clock_text,
        duration_text=duration_text,
        config=_player_config(detail),
    )


# ---- recordings ---------------------------------------------------------------------------


@routes.get("/audit/cases/{public_id}/recordings/{side}")
async def recording(request: web.Request) -> web.StreamResponse:
    """One party's WebM, with byte ranges so the browser can seek (``Accept-Ranges: bytes``)."""
    staff = await auditor_for_api(request)
    side = request.match_info["side"]
    if side not in SIDES:
        return json_error(404, "no_recording", f"no recording side {side!r}")
    header = request.headers.get("Range")
    try:
        blob = await request.app[REVIEW].recording(staff.id, request.match_info["public_id"], side)
        size = await request.app[BLOBS].size(blob.blob_key)
    except CaseNotFound:
        return json_error(404, "no_case", "no such case")
    except RecordingNotFound:
        return json_error(404, "no_recording", f"the case has no {side} recording")
    except RecordingGone:
        return json_error(410, "recording_deleted", "the recording was deleted by retention")
    except BlobNotFound:
        log.error("recording blob missing", extra={"side": side})
        return json_error(404, "no_recording", "the recording is missing from the blob store")
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": blob.content_type or "video/webm",
        "Cache-Control": "private, no-store",
    }
    try:
        span = byte_range(header, size)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=headers)
    start, end = span if span is not None else (0, size)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    await _send(request, response, blob.blob_key, start, end)
    await response.write_eof()
    return response


async def _send(
    request: web.Request, response: web.StreamResponse, key: str, start: int, end: int
) -> None:
    blobs = request.app[BLOBS]
    position = start
    while position < end:
        # A blob deleted meanwhile raises here: the headers are sent, the connection is cut.
        chunk = await blobs.read_range(key, position, min(position + CHUNK, end))
        if not chunk:
            break
        await response.write(chunk)
        position += len(chunk)


@routes.get("/audit/cases/{public_id}/cobrowse/{sha256}")
async def cobrowse_stream(request: web.Request) -> web.StreamResponse:
    """One stored co-browse stream of the case: rrweb events as JSON lines (auditors only)."""
    staff = await auditor_for_api(request)
    try:
        key = await request.app[REVIEW].cobrowse_stream(
            staff.id, request.match_info["public_id"], request.match_info["sha256"]
        )
        data = await request.app[BLOBS].get(key)  # hash-checked: a changed stream is refused
    except CaseNotFound:
        return json_error(404, "no_case", "no such case")
    except RecordingNotFound:
        return json_error(404, "no_stream", "the case has no such co-browse stream")
    except RecordingGone:
        return json_error(410, "stream_deleted", "the stream was deleted by retention")
    except BlobNotFound:
        return json_error(404, "no_stream", "the stream is missing from the blob store")
    except BlobCorrupt:
        return json_error(409, "stream_damaged", "the stream no longer matches its SHA-256")
    return web.Response(
        body=data,
        content_type="application/x-ndjson",
        headers={"Cache-Control": "private, no-store"},
    )


# ---- verdicts -----------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, field: str | None, code: str, message: str) -> None:
        super().__init__(message)
        self.field, self.code, self.message = field, code, message


async def _verdict_body(request: web.Request) -> tuple[str, str]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _Bad(None, "too_large", f"the body must be at most {MAX_BODY} bytes")
    try:
        body = await request.json()
    except ValueError as err:
        raise _Bad(None, "bad_json", "the body must be a JSON object") from err
    if not isinstance(body, dict):
        raise _Bad(None, "bad_json", "the body must be a JSON object")
    verdict = body.get("verdict")
    if verdict not in VERDICTS:
        raise _Bad("verdict", "bad_verdict", 'verdict must be "confirm" or "flag"')
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise _Bad("comment", "bad_comment", "comment must be text")
    if len(comment) > MAX_COMMENT:
        raise _Bad("comment", "comment_too_long", f"comment: at most {MAX_COMMENT} characters")
    return str(verdict), comment.strip()


@routes.post("/api/audit/cases/{public_id}/verdict")
async def verdict(request: web.Request) -> web.Response:
    """``{"verdict": "confirm" | "flag", "comment"}`` → ``{"state"}`` (the review's new state)."""
    staff = await auditor_for_api(request)
    try:
        choice, comment = await _verdict_body(request)
    except _Bad as err:
        body = {"error": err.code, "message": err.message, "field": err.field}
        return web.json_response(body, status=400)
    try:
        state = await request.app[REVIEW].decide(
            staff.id, request.match_info["public_id"], choice, comment
        )
    except CaseNotFound:
        return json_error(404, "no_case", "no such case")
    except ReviewRefused as err:
        return json_error(409, err.code, str(err))
    log.info("audit verdict %s", choice, extra={"staff_id": staff.id})
    return web.json_response({"state": str(state)})
