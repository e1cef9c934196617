"""The auditors' review: automatic flags at close, search, the case record, and four-eyes verdicts
— what an auditor would see and be refused, on the real SQL store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from itertools import product
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cases import review as review_module
from cases.errors import CaseNotFound, InvalidTransition
from cases.review import (
    REVIEW_MOVES,
    CaseFilter,
    RecordingGone,
    RecordingNotFound,
    ReviewDesk,
    ReviewInputError,
    ReviewRefused,
    ReviewState,
    next_review_state,
)
from cases.states import CaseState
from cases.store import CaseStore
from store.blobs import LocalBlobStore
from store.models import (
    AuditEvent,
    Case,
    ChatMessage,
    Recording,
    ReviewVerdict,
    Staff,
    VerificationAttempt,
)
from tests.banking.world import World, now


async def _auditor(world: World, name: str) -> int:
    async with world.db.session() as s, s.begin():
        row = Staff(
            username=name,
            display_name=f"Auditor {name}",
            password_hash="x",
            role="auditor",
            active=True,
            created_at=now(),
        )
        s.add(row)
        await s.flush()
        return row.id


async def _public_id(world: World, case_id: int) -> str:
    async with world.db.session() as s:
        public_id = await s.scalar(select(Case.public_id).where(Case.id == case_id))
    assert public_id is not None
    return public_id


async def _close(world: World, case_id: int) -> str:
    public_id = await _public_id(world, case_id)
    async with world.db.session() as s, s.begin():
        await s.execute(
            update(Case)
            .where(Case.id == case_id)
            .values(advisor_id=world.staff, call_started_at=now() - timedelta(minutes=3))
        )
    await CaseStore(world.db).move(public_id, CaseState.CLOSED, ended_by="advisor")
    return public_id


async def _events(world: World, action: str) -> list[AuditEvent]:
    async with world.db.session() as s:
        rows = await s.scalars(select(AuditEvent).where(AuditEvent.action == action))
        return list(rows.all())


async def _add_recording(world: World, case_id: int, side: str, **values: object) -> None:
    async with world.db.session() as s, s.begin():
        s.add(
            Recording(
                case_id=case_id,
                side=side,
                blob_key=values.get("blob_key", "ab" * 32),
                content_type="video/webm",
                size=1000,
                duration_ms=60_000,
                offset_ms=int(values.get("offset_ms", 0)),  # type: ignore[call-overload]
                clock_zero=values.get("clock_zero", now() - timedelta(minutes=3)),
                video_frames=1800,
                audio_frames=3000,
                dropped_frames=0,
                recovered=bool(values.get("recovered", False)),
                stored_at=now(),
                deleted_at=values.get("deleted_at"),
            )
        )


def test_every_move_of_the_review_table_and_every_other_is_refused() -> None:
    for state, verdict, second in product(ReviewState, ("confirm", "flag"), (False, True)):
        wanted = REVIEW_MOVES.get((state, verdict, second))  # type: ignore[arg-type]
        if wanted is not None:
            assert next_review_state(state, verdict, second) is wanted  # type: ignore[arg-type]
        else:
            with pytest.raises(InvalidTransition, match=f'state "{state.value}"'):
                next_review_state(state, verdict, second)  # type: ignore[arg-type]


async def test_a_passed_check_the_advisor_declined_is_flagged_when_the_case_closes(
    world: World,
) -> None:
    async with world.db.session() as s, s.begin():
        await s.execute(
            update(VerificationAttempt)
            .where(VerificationAttempt.id == world.attempt)
            .values(review="declined", review_reason="looks like someone else")
        )
    public_id = await _close(world, world.case)
    auditor = await _auditor(world, "a1")
    detail = await ReviewDesk(world.db).detail(auditor, public_id)
    assert detail.summary.review_state is ReviewState.AUTO_FLAGGED
    assert "disagreement" in detail.summary.flags
    assert "recording_missing" in detail.summary.flags  # a call without recordings
    flagged = await _events(world, "review.auto_flagged")
    assert [e.case_id for e in flagged] == [world.case]


async def test_a_case_nobody_disagreed_on_is_unreviewed_and_one_auditor_confirms_it(
    world: World,
) -> None:
    public_id = await _close(world, world.case)
    await _add_recording(world, world.case, "customer")
    a1, a2, a3 = (
        await _auditor(world, "a1"),
        await _auditor(world, "a2"),
        await _auditor(world, "a3"),
    )
    desk = ReviewDesk(world.db)
    assert (await desk.detail(a1, public_id)).summary.review_state is ReviewState.UNREVIEWED
    assert await desk.decide(a1, public_id, "confirm", "") is ReviewState.CONFIRMED
    detail = await desk.detail(a1, public_id)
    assert not detail.may_decide and detail.decide_blocked
    with pytest.raises(ReviewRefused) as refused:
        await desk.decide(a1, public_id, "confirm", "again")
    assert refused.value.code == "already_confirmed"
    # Another auditor may still flag a confirmed case; then a third decides.
    assert await desk.decide(a2, public_id, "flag", "face hidden at 01:12") is (
        ReviewState.SECOND_REVIEW
    )
    with pytest.raises(ReviewRefused) as refused:
        await desk.decide(a2, public_id, "confirm", "")
    assert refused.value.code == "second_auditor_required"
    # Nor may the auditor who confirmed it clear the flag raised against that (issue 12).
    with pytest.raises(ReviewRefused) as refused:
        await desk.decide(a1, public_id, "confirm", "I stand by it")
    assert refused.value.code == "second_auditor_required"
    assert not (await desk.detail(a1, public_id)).may_decide
    assert await desk.decide(a3, public_id, "flag", "agreed") is ReviewState.UPHELD
    verdicts = [e for e in await _events(world, "audit.verdict") if e.case_id == world.case]
    assert [json.loads(e.detail)["state"] for e in verdicts] == [
        "confirmed",
        "second_review",
        "upheld",
    ]


async def test_a_flag_needs_a_comment_and_a_second_auditor(world: World) -> None:
    public_id = await _close(world, world.case)
    a1, a2 = await _auditor(world, "a1"), await _auditor(world, "a2")
    desk = ReviewDesk(world.db)
    with pytest.raises(ReviewRefused) as refused:
        await desk.decide(a1, public_id, "flag", "   ")
    assert refused.value.code == "comment_required"
    with pytest.raises(ReviewRefused) as refused:
        await desk.decide(a1, public_id, "approve", "")
    assert refused.value.code == "bad_verdict"
    with pytest.raises(ReviewRefused) as refused:
        await desk.decide(a1, public_id, "flag", "x" * 2001)
    assert refused.value.code == "comment_too_long"
    async with world.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(ReviewVerdict)) == 0
    assert await desk.decide(a1, public_id, "flag", "advisor skipped a step") is (
        ReviewState.SECOND_REVIEW
    )
    with pytest.raises(ReviewRefused) as refused:
        await desk.decide(a1, public_id, "confirm", "")
    assert refused.value.code == "second_auditor_required"
    assert await desk.decide(a2, public_id, "confirm", "step done off camera") is (
        ReviewState.CLEARED
    )
    with pytest.raises(ReviewRefused) as refused:
        await desk.decide(a2, public_id, "flag", "changed my mind")
    assert refused.value.code == "review_finished"
    detail = await desk.detail(a2, public_id)
    assert [(v.auditor_name, v.verdict) for v in detail.verdicts] == [
        ("Auditor a1", "flag"),
        ("Auditor a2", "confirm"),
    ]


async def test_an_automatic_flag_needs_two_auditors(world: World) -> None:
    async with world.db.session() as s, s.begin():
        await s.execute(
            update(VerificationAttempt)
            .where(VerificationAttempt.id == world.attempt)
            .values(review="declined", review_reason="different person")
        )
    public_id = await _close(world, world.case)
    a1, a2 = await _auditor(world, "a1"), await _auditor(world, "a2")
    desk = ReviewDesk(world.db)
    assert await desk.decide(a1, public_id, "confirm", "") is ReviewState.SECOND_REVIEW
    assert await desk.decide(a2, public_id, "confirm", "") is ReviewState.CLEARED


async def test_only_closed_cases_are_reviewed(world: World) -> None:
    auditor = await _auditor(world, "a1")
    open_case = await _public_id(world, world.other_case)  # still in a call
    desk = ReviewDesk(world.db)
    with pytest.raises(CaseNotFound):
        await desk.detail(auditor, open_case)
    with pytest.raises(CaseNotFound):
        await desk.decide(auditor, open_case, "confirm", "")
    assert (await desk.search(auditor, CaseFilter())).total == 0


async def test_search_filters_and_is_itself_audited(world: World) -> None:
    auditor = await _auditor(world, "a1")
    async with world.db.session() as s, s.begin():
        await s.execute(
            update(VerificationAttempt)
            .where(VerificationAttempt.id == world.attempt)
            .values(review="declined", review_reason="no")
        )
        await s.execute(update(Case).where(Case.id == world.bob_case).values(service="card_loss"))
    alice = await _close(world, world.case)
    bob = await _close(world, world.bob_case)
    desk = ReviewDesk(world.db)

    async def found(**fields: Any) -> list[str]:
        result = await desk.search(auditor, CaseFilter(**fields))
        return [item.public_id for item in result.items]

    assert await found() == [bob, alice]  # newest closed first
    assert await found(service="card_loss") == [bob]
    assert await found(outcome="passed") == [alice]
    assert await found(outcome="none") == [bob]
    assert await found(flag="disagreement") == [alice]
    assert await found(state=ReviewState.AUTO_FLAGGED) == [alice]
    assert await found(state=ReviewState.UNREVIEWED) == [bob]
    today = datetime.now(UTC).date()
    assert await found(date_from=today + timedelta(days=1)) == []
    assert await found(date_to=today) == [bob, alice]
    assert await found(date_to=date.max - timedelta(days=1)) == [bob, alice]
    assert await found(advisor_id=world.staff) == [bob, alice]
    assert await found(advisor_id=world.staff + 100) == []
    result = await desk.search(auditor, CaseFilter())
    first = result.items[1]
    assert (first.customer_name, first.advisor_name, first.outcome) == (
        "Alice Wang",
        "Advisor",
        "passed",
    )
    assert first.call_seconds is not None and 170 <= first.call_seconds <= 190
    searches = await _events(world, "audit.searched")
    assert searches and all(e.actor_id == auditor for e in searches)
    assert json.loads(searches[1].detail)["filter"] == {"service": "card_loss"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"date_from": date(2026, 2, 2), "date_to": date(2026, 2, 1)}, "date_to"),
        ({"date_to": date.max}, "date_to"),  # the day after it is no date
        ({"advisor_id": 0}, "advisor"),
        ({"page": 0}, "page"),
    ],
)
def test_a_filter_that_does_not_fit_together_names_its_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(ReviewInputError) as err:
        CaseFilter(**fields)
    assert err.value.field == field


async def test_the_case_record_puts_events_chat_and_evidence_on_the_recordings_clock(
    world: World, blobs: LocalBlobStore
) -> None:
    zero = now() - timedelta(minutes=3)
    evidence = {
        "timeline": [
            {"t": 0.0, "event": "challenge", "challenge": "turn_left", "detail": None},
            {"t": 1.5, "event": "met", "challenge": "turn_left", "detail": "yaw -25"},
        ]
    }
    key = await blobs.put(json.dumps(evidence).encode())
    async with world.db.session() as s, s.begin():
        await s.execute(
            update(VerificationAttempt)
            .where(VerificationAttempt.id == world.attempt)
            .values(evidence_blob_key=key, started_at=zero + timedelta(seconds=40))
        )
        s.add(
            ChatMessage(
                case_id=world.case,
                sender="customer",
                text="hello",
                sent_at=zero + timedelta(seconds=10),
            )
        )
    await _add_recording(world, world.case, "customer", clock_zero=zero, offset_ms=300)
    await _add_recording(world, world.case, "advisor", clock_zero=zero, offset_ms=120)
    public_id = await _close(world, world.case)
    auditor = await _auditor(world, "a1")
    detail = await ReviewDesk(world.db, blobs).detail(auditor, public_id)
    assert detail.clock_zero == zero
    assert [(r.side, r.offset_ms) for r in detail.recordings] == [
        ("advisor", 120),
        ("customer", 300),
    ]
    assert detail.recordings[0].url == f"/audit/cases/{public_id}/recordings/advisor"
    assert detail.chat[0].t_ms == 10_000
    (attempt,) = detail.evidence
    assert attempt.t_ms == 40_000
    assert [(e["t_ms"], e["challenge"]) for e in attempt.timeline] == [
        (40_000, "turn_left"),
        (41_500, "turn_left"),
    ]
    closed = [e for e in detail.timeline if e.action == "case.closed"]
    assert closed and closed[0].t_ms is not None and 170_000 < closed[0].t_ms < 200_000
    viewed = await _events(world, "audit.case_viewed")
    assert [(e.actor_id, e.case_id) for e in viewed] == [(auditor, world.case)]


async def test_recordings_are_found_gone_or_missing_and_playback_is_audited(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add_recording(world, world.case, "customer")
    await _add_recording(
        world, world.case, "advisor", blob_key="cd" * 32, deleted_at=now() - timedelta(days=1)
    )
    public_id = await _close(world, world.case)
    auditor = await _auditor(world, "a1")
    desk = ReviewDesk(world.db)
    found = await desk.recording(auditor, public_id, "customer")
    assert (found.blob_key, found.content_type) == ("ab" * 32, "video/webm")
    (viewed,) = await _events(world, "audit.recording_viewed")
    assert json.loads(viewed.detail) == {"sha256": "ab" * 32, "side": "customer"}
    # The browser's further range requests belong to the same view ...
    await desk.recording(auditor, public_id, "customer")
    assert len(await _events(world, "audit.recording_viewed")) == 1
    # ... another auditor's are another view, and so is a request after VIEW_MINUTES.
    await desk.recording(await _auditor(world, "a2"), public_id, "customer")
    monkeypatch.setattr(review_module, "VIEW_MINUTES", 0)
    await desk.recording(auditor, public_id, "customer")
    assert len(await _events(world, "audit.recording_viewed")) == 3
    with pytest.raises(RecordingGone):
        await desk.recording(auditor, public_id, "advisor")
    with pytest.raises(RecordingNotFound):
        await desk.recording(auditor, public_id, "screen")
