"""The auditors' review of closed cases: search, the case's whole record, and verdicts.

A closed case gets a review row when it closes (:func:`open_review`), with automatic flags
computed from what happened in it. The review is a state machine (:class:`ReviewState`, one
table of moves): one auditor may confirm a case nobody flagged; a flagged case — flagged by an
auditor, or automatically because the machine and the advisor disagreed — is decided by a
second, different auditor; an automatic flag needs two auditors. Every search, case view,
recording playback and verdict is itself an audit event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Literal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from cases.artifacts import COBROWSE_STORED, TOMBSTONE, streams
from cases.errors import CaseError, CaseNotFound, InvalidTransition
from cases.states import CaseState
from store.audit import add_event
from store.blobs import BlobStore
from store.db import Database
from store.errors import StoreError
from store.models import (
    AuditEvent,
    Case,
    CaseReview,
    ChatMessage,
    Customer,
    Recording,
    ReviewVerdict,
    Staff,
    VerificationAttempt,
)


class ReviewState(StrEnum):
    """Where the auditors' review of a case stands."""

    UNREVIEWED = "unreviewed"  # closed, no verdict yet
    AUTO_FLAGGED = "auto_flagged"  # the machine and the advisor disagreed: two auditors decide
    SECOND_REVIEW = "second_review"  # flagged: a different auditor must decide
    CONFIRMED = "confirmed"  # one auditor confirmed and nothing was flagged
    CLEARED = "cleared"  # a second auditor cleared the flag (final)
    UPHELD = "upheld"  # a second auditor upheld the flag (final)


Verdict = Literal["confirm", "flag"]
VERDICTS: tuple[Verdict, ...] = ("confirm", "flag")

# (state, verdict, by a second auditor?) -> next state. A move not in the table is refused.
REVIEW_MOVES: dict[tuple[ReviewState, Verdict, bool], ReviewState] = {
    (ReviewState.UNREVIEWED, "confirm", False): ReviewState.CONFIRMED,
    (ReviewState.UNREVIEWED, "flag", False): ReviewState.SECOND_REVIEW,
    (ReviewState.AUTO_FLAGGED, "confirm", False): ReviewState.SECOND_REVIEW,
    (ReviewState.AUTO_FLAGGED, "flag", False): ReviewState.SECOND_REVIEW,
    (ReviewState.SECOND_REVIEW, "confirm", True): ReviewState.CLEARED,
    (ReviewState.SECOND_REVIEW, "flag", True): ReviewState.UPHELD,
    (ReviewState.CONFIRMED, "flag", False): ReviewState.SECOND_REVIEW,
    (ReviewState.CONFIRMED, "flag", True): ReviewState.SECOND_REVIEW,
}
FINAL_STATES = frozenset({ReviewState.CLEARED, ReviewState.UPHELD})

FLAG_CODES: tuple[str, ...] = (
    "disagreement",
    "verification_failed",
    "operation_refused",
    "recording_missing",
    "recording_recovered",
    "multiple_attempts",
)
OUTCOMES: tuple[str, ...] = ("passed", "failed", "referred", "aborted", "none")
PAGE_SIZE = 50
VIEW_MINUTES = 10  # range requests of one recording by one auditor within this are one view
MAX_COMMENT = 2000
REVIEWED_CASE_STATES = (CaseState.CLOSED.value,)


class ReviewRefused(CaseError):
    """A verdict the review's rules refuse; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ReviewInputError(ValueError):
    """A search filter that cannot be read; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RecordingNotFound(CaseError):
    """The case has no recording of that side."""


class RecordingGone(CaseError):
    """The recording was deleted by the retention policy (a tombstone event says when)."""


def next_review_state(state: ReviewState, verdict: Verdict, second_auditor: bool) -> ReviewState:
    """The state a verdict leads to; :class:`InvalidTransition` when the table has no move."""
    move = REVIEW_MOVES.get((state, verdict, second_auditor))
    if move is None:
        raise InvalidTransition("review", state.value, f"{verdict} by a {_who(second_auditor)}")
    return move


def _who(second: bool) -> str:
    return "second auditor" if second else "first auditor"


# ---- view objects --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """What the auditor searches for; every field optional. The web layer reads it from URL
    parameters (``web.audit.case_filter``); it checks that its fields fit together."""

    date_from: date | None = None  # closed on or after (UTC date)
    date_to: date | None = None  # closed on or before
    service: str | None = None
    outcome: str | None = None  # the latest verification attempt's state, or "none"
    advisor_id: int | None = None
    flag: str | None = None  # one of FLAG_CODES, or "any"
    state: ReviewState | None = None
    page: int = 1

    def __post_init__(self) -> None:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ReviewInputError("date_to", "is before date_from")
        if self.date_to is not None and self.date_to >= date.max:
            raise ReviewInputError("date_to", "is past the last day a search can end on")
        if self.page < 1:
            raise ReviewInputError("page", "must be at least 1")
        if self.advisor_id is not None and self.advisor_id < 1:
            raise ReviewInputError("advisor", "must be at least 1")

    def to_query(self, **changes: object) -> dict[str, str]:
        """The filter as URL parameters (empty fields left out), with ``changes`` applied."""
        values: dict[str, object] = {
            "date_from": self.date_from,
            "date_to": self.date_to,
            "service": self.service,
            "outcome": self.outcome,
            "advisor": self.advisor_id,
            "flag": self.flag,
            "state": self.state,
            "page": self.page if self.page != 1 else None,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v is not None and v != ""}

    def to_detail(self) -> dict[str, object]:
        """The filter for the audit event (no personal data in it)."""
        return {k: v for k, v in self.to_query().items()}


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """One row of the search results."""

    public_id: str
    service: str
    customer_name: str
    advisor_id: int | None
    advisor_name: str
    closed_at: datetime | None
    call_seconds: int | None
    outcome: str
    review_state: ReviewState
    flags: tuple[str, ...]
    recordings: int


@dataclass(frozen=True, slots=True)
class CaseList:
    """A page of search results."""

    items: list[CaseSummary]
    total: int
    page: int
    pages: int


@dataclass(frozen=True, slots=True)
class RecordingView:
    """One party's recording as the case page plays it."""

    side: str
    url: str
    sha256: str
    size: int
    duration_ms: int
    offset_ms: int
    recovered: bool
    deleted: bool


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One audit event on the case's timeline."""

    seq: int
    at: datetime
    t_ms: int | None  # position on the recordings' common clock; None without one
    actor: str
    action: str
    outcome: str
    detail: dict[str, object]


@dataclass(frozen=True, slots=True)
class EvidenceView:
    """One verification attempt's evidence."""

    attempt_id: str
    state: str
    reasons: tuple[str, ...]
    scores: dict[str, float]
    policy_version: str | None
    challenges: tuple[str, ...]
    t_ms: int | None
    best_frame_url: str | None
    reference_url: str
    timeline: list[dict[str, object]]
    advisor_review: str | None
    advisor_review_reason: str | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class CobrowseView:
    """One stored co-browse stream (rrweb events as JSON lines) of the case."""

    sha256: str
    events: int
    size: int
    started_at: datetime | None
    t_ms: int | None
    url: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class ChatView:
    """One chat message."""

    sender: str
    text: str
    at: datetime
    t_ms: int | None


@dataclass(frozen=True, slots=True)
class VerdictView:
    """One auditor's verdict."""

    auditor_name: str
    verdict: str
    comment: str
    at: datetime
    state_after: ReviewState


@dataclass(frozen=True, slots=True)
class CaseDetail:
    """Everything the case page shows."""

    summary: CaseSummary
    id_number_masked: str
    lang: str
    created_at: datetime
    call_started_at: datetime | None
    call_ended_at: datetime | None
    ended_by: str | None
    receipt: dict[str, object] | None
    clock_zero: datetime | None
    recordings: list[RecordingView]
    timeline: list[TimelineEntry]
    evidence: list[EvidenceView]
    chat: list[ChatView]
    verdicts: list[VerdictView]
    cobrowse: list[CobrowseView]
    may_decide: bool
    decide_blocked: str | None


@dataclass(frozen=True, slots=True)
class RecordingBlob:
    """Where a recording's bytes are."""

    blob_key: str
    size: int
    content_type: str


# ---- helpers -------------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _maybe_aware(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _t_ms(at: datetime, zero: datetime | None) -> int | None:
    if zero is None:
        return None
    return round((_aware(at) - zero).total_seconds() * 1000)


def _call_seconds(case: Case) -> int | None:
    if case.call_started_at is None or case.call_ended_at is None:
        return None
    return max(
        0, round((_aware(case.call_ended_at) - _aware(case.call_started_at)).total_seconds())
    )


async def compute_flags(s: AsyncSession, case_id: int, had_call: bool) -> list[str]:
    """The automatic flags of a case, from its attempts, events and recordings."""
    attempts = (
        await s.execute(
            select(VerificationAttempt.state, VerificationAttempt.review).where(
                VerificationAttempt.case_id == case_id
            )
        )
    ).all()
    flags: list[str] = []
    if any(state == "passed" and review == "declined" for state, review in attempts):
        flags.append("disagreement")
    if any(state == "failed" for state, _ in attempts):
        flags.append("verification_failed")
    refused = await s.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.case_id == case_id, AuditEvent.outcome == "refused")
    )
    if refused:
        flags.append("operation_refused")
    recordings = (
        await s.execute(select(Recording.recovered).where(Recording.case_id == case_id))
    ).all()
    if had_call and not recordings:
        flags.append("recording_missing")
    if any(recovered for (recovered,) in recordings):
        flags.append("recording_recovered")
    if len(attempts) > 1:
        flags.append("multiple_attempts")
    return flags


async def open_review(s: AsyncSession, case: Case) -> CaseReview:
    """Create (or refresh, while nobody has decided) the review row of a closed case.

    Called inside the transaction that closes the case; an automatic flag is an audit event.
    """
    flags = await compute_flags(s, case.id, case.call_started_at is not None)
    row = await s.get(CaseReview, case.id)
    now = datetime.now(UTC)
    state = ReviewState.AUTO_FLAGGED if "disagreement" in flags else ReviewState.UNREVIEWED
    if row is None:
        row = CaseReview(case_id=case.id, state=state.value, flags=json.dumps(flags))
        row.updated_at = now
        s.add(row)
    elif row.state in (ReviewState.UNREVIEWED, ReviewState.AUTO_FLAGGED):
        row.state, row.flags, row.updated_at = state.value, json.dumps(flags), now
    else:
        return row
    if state is ReviewState.AUTO_FLAGGED:
        await add_event(
            s,
            action="review.auto_flagged",
            outcome="ok",
            actor_kind="system",
            case_id=case.id,
            detail={"flags": flags},
        )
    await s.flush()
    return row


async def _review_of(s: AsyncSession, case: Case) -> CaseReview:
    row = await s.get(CaseReview, case.id)
    return row if row is not None else await open_review(s, case)


# ---- the desk ------------------------------------------------------------------------------


_Advisor = aliased(Staff)


class ReviewDesk:
    """Search, case record and verdicts for auditors (the web layer checks the role)."""

    def __init__(self, db: Database, blobs: BlobStore | None = None) -> None:
        self._db = db
        self._blobs = blobs

    async def advisors(self) -> list[tuple[int, str]]:
        """Advisors (id, display name) for the search filter, by name."""
        async with self._db.session() as s:
            rows = await s.execute(
                select(Staff.id, Staff.display_name)
                .where(Staff.role == "advisor")
                .order_by(Staff.display_name)
            )
            return [(r[0], r[1]) for r in rows.all()]

    async def search(self, auditor_id: int, f: CaseFilter) -> CaseList:
        """Closed cases matching ``f``, newest first; the search is an audit event."""
        latest = (
            select(
                VerificationAttempt.case_id.label("case_id"),
                func.max(VerificationAttempt.id).label("attempt_id"),
            )
            .group_by(VerificationAttempt.case_id)
            .subquery()
        )
        last_attempt = aliased(VerificationAttempt)
        rec_count = (
            select(func.count())
            .select_from(Recording)
            .where(Recording.case_id == Case.id)
            .scalar_subquery()
        )
        query = (
            select(
                Case,
                Customer.name,
                _Advisor.display_name,
                last_attempt.state,
                CaseReview.state,
                CaseReview.flags,
                rec_count,
            )
            .join(Customer, Customer.id == Case.customer_id)
            .outerjoin(_Advisor, _Advisor.id == Case.advisor_id)
            .outerjoin(latest, latest.c.case_id == Case.id)
            .outerjoin(last_attempt, last_attempt.id == latest.c.attempt_id)
            .outerjoin(CaseReview, CaseReview.case_id == Case.id)
            .where(Case.state.in_(REVIEWED_CASE_STATES))
        )
        conditions = []
        if f.date_from is not None:
            conditions.append(Case.closed_at >= datetime.combine(f.date_from, time(), UTC))
        if f.date_to is not None:
            end = datetime.combine(f.date_to + timedelta(days=1), time(), UTC)
            conditions.append(Case.closed_at < end)
        if f.service is not None:
            conditions.append(Case.service == f.service)
        if f.outcome == "none":
            conditions.append(last_attempt.id.is_(None))
        elif f.outcome is not None:
            conditions.append(last_attempt.state == f.outcome)
        if f.advisor_id is not None:
            conditions.append(Case.advisor_id == f.advisor_id)
        if f.state is ReviewState.UNREVIEWED:
            conditions.append(
                or_(CaseReview.state.is_(None), CaseReview.state == ReviewState.UNREVIEWED.value)
            )
        elif f.state is not None:
            conditions.append(CaseReview.state == f.state.value)
        if f.flag == "any":
            conditions.append(and_(CaseReview.flags.is_not(None), CaseReview.flags != "[]"))
        elif f.flag is not None:
            conditions.append(CaseReview.flags.like(f'%"{f.flag}"%'))
        if conditions:
            query = query.where(and_(*conditions))
        async with self._db.session() as s, s.begin():
            total = int(await s.scalar(select(func.count()).select_from(query.subquery())) or 0)
            pages = max(1, math.ceil(total / PAGE_SIZE))
            page = min(f.page, pages)
            rows = (
                await s.execute(
                    query.order_by(Case.closed_at.desc(), Case.id.desc())
                    .limit(PAGE_SIZE)
                    .offset((page - 1) * PAGE_SIZE)
                )
            ).all()
            items = [
                _summary(case, name, advisor, outcome, state, flags, count)
                for case, name, advisor, outcome, state, flags, count in rows
            ]
            await add_event(
                s,
                action="audit.searched",
                outcome="ok",
                actor_kind="staff",
                actor_id=auditor_id,
                detail={"filter": f.to_detail(), "results": total},
            )
        return CaseList(items, total, page, pages)

    async def detail(self, auditor_id: int, public_id: str) -> CaseDetail:
        """The whole record of one closed case; the view is an audit event."""
        async with self._db.session() as s, s.begin():
            case, customer = await _closed_case(s, public_id)
            review = await _review_of(s, case)
            staff = (await s.execute(select(Staff.id, Staff.display_name, Staff.role))).all()
            names = {r.id: r.display_name for r in staff}
            staff_roles = {r.id: r.role for r in staff}
            recordings = (
                await s.scalars(
                    select(Recording).where(Recording.case_id == case.id).order_by(Recording.side)
                )
            ).all()
            zero = _clock_zero(case, recordings)
            attempts = (
                await s.scalars(
                    select(VerificationAttempt)
                    .where(VerificationAttempt.case_id == case.id)
                    .order_by(VerificationAttempt.id)
                )
            ).all()
            chat = (
                await s.scalars(
                    select(ChatMessage)
                    .where(ChatMessage.case_id == case.id)
                    .order_by(ChatMessage.id)
                )
            ).all()
            verdicts = (
                await s.scalars(
                    select(ReviewVerdict)
                    .where(ReviewVerdict.case_id == case.id)
                    .order_by(ReviewVerdict.id)
                )
            ).all()
            events = (
                await s.scalars(
                    select(AuditEvent).where(AuditEvent.case_id == case.id).order_by(AuditEvent.seq)
                )
            ).all()
            blocked = _blocked(review, verdicts, auditor_id)
            summary = _summary(
                case,
                customer.name,
                names.get(case.advisor_id, "") if case.advisor_id else "",
                attempts[-1].state if attempts else None,
                review.state,
                review.flags,
                len(recordings),
            )
            detail = CaseDetail(
                summary=summary,
                id_number_masked=customer.id_number_masked,
                lang=case.lang,
                created_at=_aware(case.created_at),
                call_started_at=_maybe_aware(case.call_started_at),
                call_ended_at=_maybe_aware(case.call_ended_at),
                ended_by=case.ended_by,
                receipt=json.loads(case.outcome) if case.outcome else None,
                clock_zero=zero,
                recordings=[_recording_view(public_id, r) for r in recordings],
                timeline=[_entry(e, zero, names, staff_roles) for e in events],
                evidence=[_evidence_view(a, zero, []) for a in attempts],
                chat=[
                    ChatView(m.sender, m.text, _aware(m.sent_at), _t_ms(m.sent_at, zero))
                    for m in chat
                ],
                verdicts=[
                    VerdictView(
                        names.get(v.auditor_id, f"#{v.auditor_id}"),
                        v.verdict,
                        v.comment,
                        _aware(v.at),
                        ReviewState(v.state_after),
                    )
                    for v in verdicts
                ],
                cobrowse=_cobrowse_views(public_id, events, zero),
                may_decide=blocked is None,
                decide_blocked=blocked,
            )
            # Last in the transaction: appending holds the chain's lock until the commit.
            await add_event(
                s,
                action="audit.case_viewed",
                outcome="ok",
                actor_kind="staff",
                actor_id=auditor_id,
                case_id=case.id,
            )
        # Blobs are read after the commit, outside the database transaction.
        evidence = [
            replace(view, timeline=await self._challenge_timeline(row, zero))
            for view, row in zip(detail.evidence, attempts, strict=True)
        ]
        return replace(detail, evidence=evidence)

    async def _challenge_timeline(
        self, row: VerificationAttempt, zero: datetime | None
    ) -> list[dict[str, object]]:
        if self._blobs is None or not row.evidence_blob_key or row.evidence_deleted_at:
            return []
        try:
            doc = json.loads(await self._blobs.get(row.evidence_blob_key))
        except (StoreError, ValueError):
            return [
                {"t_ms": None, "event": "evidence_unreadable", "challenge": None, "detail": None}
            ]
        return _timeline(doc, _t_ms(row.started_at, zero))

    async def recording(self, auditor_id: int, public_id: str, side: str) -> RecordingBlob:
        """Where one side's recording is. A view is an audit event: the first request of any
        byte range is logged, and the browser's further range requests (seeking, buffering)
        belong to the same view for :data:`VIEW_MINUTES`; after that a request is a new view."""
        async with self._db.session() as s, s.begin():
            case, _ = await _closed_case(s, public_id, lock=True)  # one view, not one per range
            row = await s.scalar(
                select(Recording).where(Recording.case_id == case.id, Recording.side == side)
            )
            if row is None:
                raise RecordingNotFound(f"no {side} recording in case {public_id}")
            if row.deleted_at is not None:
                raise RecordingGone(f"the {side} recording was deleted by the retention policy")
            if not await _viewing(s, case.id, auditor_id, side):
                await add_event(
                    s,
                    action="audit.recording_viewed",
                    outcome="ok",
                    actor_kind="staff",
                    actor_id=auditor_id,
                    case_id=case.id,
                    detail={"side": side, "sha256": row.blob_key},
                )
            return RecordingBlob(row.blob_key, row.size, row.content_type)

    async def cobrowse_stream(self, auditor_id: int, public_id: str, sha256: str) -> str:
        """The blob key of one co-browse stream of the case (checked to belong to it); the
        view is an audit event. :class:`RecordingNotFound` / :class:`RecordingGone`."""
        async with self._db.session() as s, s.begin():
            case, _ = await _closed_case(s, public_id)
            events = (
                await s.scalars(
                    select(AuditEvent).where(
                        AuditEvent.case_id == case.id,
                        AuditEvent.action.in_((COBROWSE_STORED, TOMBSTONE)),
                    )
                )
            ).all()
            views = {v.sha256: v for v in _cobrowse_views(public_id, events, None)}
            view = views.get(sha256.lower())
            if view is None:
                raise RecordingNotFound(f"no such co-browse stream in case {public_id}")
            if view.deleted:
                raise RecordingGone("the co-browse stream was deleted by the retention policy")
            await add_event(
                s,
                action="audit.cobrowse_viewed",
                outcome="ok",
                actor_kind="staff",
                actor_id=auditor_id,
                case_id=case.id,
                detail={"sha256": view.sha256},
            )
            return view.sha256

    async def decide(
        self, auditor_id: int, public_id: str, verdict: str, comment: str
    ) -> ReviewState:
        """Record a verdict ("confirm" or "flag"); the rules above decide the new state."""
        if verdict not in VERDICTS:
            raise ReviewRefused("bad_verdict", "the verdict must be confirm or flag")
        comment = comment.strip()
        if len(comment) > MAX_COMMENT:
            raise ReviewRefused(
                "comment_too_long", f"keep the comment under {MAX_COMMENT} characters"
            )
        if verdict == "flag" and not comment:
            raise ReviewRefused("comment_required", "say why you flag the case")
        async with self._db.session() as s, s.begin():
            case, _ = await _closed_case(s, public_id, lock=True)
            review = await _review_of(s, case)
            verdicts = (
                await s.scalars(select(ReviewVerdict).where(ReviewVerdict.case_id == case.id))
            ).all()
            blocked = _blocked(review, verdicts, auditor_id)
            if blocked is not None:
                raise ReviewRefused(_blocked_code(review), blocked)
            current = ReviewState(review.state)
            second = current is ReviewState.SECOND_REVIEW or (
                current is ReviewState.CONFIRMED
                and any(v.auditor_id != auditor_id for v in verdicts)
            )
            try:
                new = next_review_state(current, verdict, second)
            except InvalidTransition as err:
                code = "already_confirmed" if current is ReviewState.CONFIRMED else "bad_verdict"
                raise ReviewRefused(code, str(err)) from err
            now = datetime.now(UTC)
            if new is ReviewState.SECOND_REVIEW:
                review.first_auditor_id = auditor_id
            review.state, review.updated_at = new.value, now
            s.add(
                ReviewVerdict(
                    case_id=case.id,
                    auditor_id=auditor_id,
                    verdict=verdict,
                    comment=comment,
                    state_after=new.value,
                    at=now,
                )
            )
            await add_event(
                s,
                action="audit.verdict",
                outcome="ok",
                actor_kind="staff",
                actor_id=auditor_id,
                case_id=case.id,
                detail={"verdict": verdict, "state": new.value, "comment": comment},
            )
        return new


async def _viewing(s: AsyncSession, case_id: int, auditor_id: int, side: str) -> bool:
    """Whether the auditor's view of this recording began less than VIEW_MINUTES ago."""
    since = datetime.now(UTC) - timedelta(minutes=VIEW_MINUTES)
    details = await s.scalars(
        select(AuditEvent.detail).where(
            AuditEvent.case_id == case_id,
            AuditEvent.action == "audit.recording_viewed",
            AuditEvent.actor_id == auditor_id,
            AuditEvent.at >= since,
        )
    )
    return any(json.loads(d).get("side") == side for d in details)


def _cobrowse_views(
    public_id: str, events: Sequence[AuditEvent], zero: datetime | None
) -> list[CobrowseView]:
    stored, gone = streams((e.action, e.detail) for e in events)
    views = []
    for key, detail in stored.items():
        try:
            started: datetime | None = _aware(datetime.fromisoformat(str(detail["started_at"])))
        except (KeyError, ValueError):
            started = None
        views.append(
            CobrowseView(
                sha256=key,
                events=int(str(detail.get("events", 0))),
                size=int(str(detail.get("bytes", 0))),
                started_at=started,
                t_ms=None if started is None else _t_ms(started, zero),
                url=f"/audit/cases/{public_id}/cobrowse/{key}",
                deleted=key in gone,
            )
        )
    return views


def _timeline(doc: object, start: int | None) -> list[dict[str, object]]:
    """The challenge timeline of an evidence document, placed on the common clock."""
    items = doc.get("timeline") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return []
    out: list[dict[str, object]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        t = item.get("t")
        offset = round(float(t) * 1000) if isinstance(t, int | float) else None
        out.append(
            {
                "t_ms": None if start is None or offset is None else start + offset,
                "event": str(item.get("event", "")),
                "challenge": item.get("challenge"),
                "detail": item.get("detail"),
            }
        )
    return out


async def _closed_case(
    s: AsyncSession, public_id: str, *, lock: bool = False
) -> tuple[Case, Customer]:
    query = (
        select(Case, Customer)
        .join(Customer, Customer.id == Case.customer_id)
        .where(Case.public_id == public_id, Case.state.in_(REVIEWED_CASE_STATES))
    )
    if lock:
        query = query.with_for_update()
    row = (await s.execute(query)).first()
    if row is None:
        raise CaseNotFound(f"no closed case {public_id!r}")
    return row[0], row[1]


def _blocked(review: CaseReview, verdicts: Sequence[ReviewVerdict], auditor_id: int) -> str | None:
    state = ReviewState(review.state)
    if state in FINAL_STATES:
        return "the review is finished"
    if state is ReviewState.SECOND_REVIEW and (
        review.first_auditor_id == auditor_id or any(v.auditor_id == auditor_id for v in verdicts)
    ):
        # Four eyes: the auditor who confirmed cannot clear the flag raised against that.
        return "an auditor who has given no verdict on this case must decide it"
    if state is ReviewState.CONFIRMED and any(v.auditor_id == auditor_id for v in verdicts):
        return "you confirmed this case; another auditor may still flag it"
    return None


def _blocked_code(review: CaseReview) -> str:
    state = ReviewState(review.state)
    if state in FINAL_STATES:
        return "review_finished"
    if state is ReviewState.CONFIRMED:
        return "already_confirmed"
    return "second_auditor_required"


def _summary(
    case: Case,
    customer_name: str,
    advisor_name: str | None,
    outcome: str | None,
    review_state: str | None,
    flags: str | None,
    recordings: int,
) -> CaseSummary:
    return CaseSummary(
        public_id=case.public_id,
        service=case.service,
        customer_name=customer_name,
        advisor_id=case.advisor_id,
        advisor_name=advisor_name or "",
        closed_at=_maybe_aware(case.closed_at),
        call_seconds=_call_seconds(case),
        outcome=outcome or "none",
        review_state=ReviewState(review_state or ReviewState.UNREVIEWED.value),
        flags=tuple(json.loads(flags)) if flags else (),
        recordings=int(recordings),
    )


def _clock_zero(case: Case, recordings: Sequence[Recording]) -> datetime | None:
    if recordings:
        return min(_aware(r.clock_zero) for r in recordings)
    return _maybe_aware(case.call_started_at)


def _recording_view(public_id: str, row: Recording) -> RecordingView:
    return RecordingView(
        side=row.side,
        url=f"/audit/cases/{public_id}/recordings/{row.side}",
        sha256=row.blob_key,
        size=row.size,
        duration_ms=row.duration_ms,
        offset_ms=row.offset_ms,
        recovered=row.recovered,
        deleted=row.deleted_at is not None,
    )


def _actor(event: AuditEvent, names: Mapping[int, str], roles: Mapping[int, str]) -> str:
    if event.actor_kind != "staff":
        return event.actor_kind
    if event.actor_id is None:
        return "staff"
    role = roles.get(event.actor_id, "staff")
    return f"{role} {names.get(event.actor_id, f'#{event.actor_id}')}"


def _entry(
    event: AuditEvent, zero: datetime | None, names: Mapping[int, str], roles: Mapping[int, str]
) -> TimelineEntry:
    return TimelineEntry(
        seq=event.seq,
        at=_aware(event.at),
        t_ms=_t_ms(event.at, zero),
        actor=_actor(event, names, roles),
        action=event.action,
        outcome=event.outcome,
        detail=json.loads(event.detail),
    )


def _evidence_view(
    row: VerificationAttempt, zero: datetime | None, timeline: list[dict[str, object]]
) -> EvidenceView:
    start = _t_ms(row.started_at, zero)
    return EvidenceView(
        attempt_id=row.public_id,
        state=row.state,
        reasons=tuple(json.loads(row.reasons or "[]")),
        scores={k: float(v) for k, v in json.loads(row.scores or "{}").items()},
        policy_version=row.policy_version,
        challenges=tuple(json.loads(row.challenges or "[]")),
        t_ms=start,
        best_frame_url=(
            f"/staff/verification/{row.public_id}/best.jpg"
            if row.best_frame_blob_key and row.evidence_deleted_at is None
            else None
        ),
        reference_url=f"/staff/verification/{row.public_id}/reference.jpg",
        timeline=timeline,
        advisor_review=row.review,
        advisor_review_reason=row.review_reason,
        deleted=row.evidence_deleted_at is not None,
    )
