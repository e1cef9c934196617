"""The verification desk with the real engine (worker process), real database and real clips.

The customer's camera is a real clip played at real time through our own ``CustomerVideo``
seam (the call's media is tested on its own in tests/media and tests/e2e).
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from av import VideoFrame
from sqlalchemy import select

from banking.core import NewCustomer, StoredTemplate
from banking.identity import luhn_check_digit, prc_id_check_char
from banking.sql import SqlCoreBanking
from cases.attempts import AttemptStore
from cases.store import CaseStore
from cases.verify import VerifyDesk, VerifyRefused, VerifyTarget
from signaling.messages import VerifyProgress, VerifyResult, VerifyStarted
from store.blobs import LocalBlobStore
from store.config import StoreConfig
from store.db import Database, open_database
from store.models import VerificationAttempt
from tests.verification.conftest import read_clip, to_640x480
from verification.config import VerificationConfig, build_engine
from verification.engine import encode_jpeg
from verification.evaluation.attacks import GenuinePresenter, load_clip, person, photo_of
from verification.policy import load_policy
from verification.service import EngineService
from verification.types import Image
from web.accounts import create_staff

CLIP = "liveness_video/liveportrait/d9.mp4"
SAMPLE_FPS = 10.0


class ClipVideo:
    """A clip played at its frame rate, looping: what a camera would deliver, latest only."""

    def __init__(self, frames: list[VideoFrame], fps: float = 25.0) -> None:
        self._frames = frames
        self._fps = fps
        self._t0: float | None = None

    def latest_customer_frame(self) -> VideoFrame | None:
        now = asyncio.get_running_loop().time()
        self._t0 = now if self._t0 is None else self._t0
        return self._frames[int((now - self._t0) * self._fps) % len(self._frames)]


def _video_frames(frames: list[Image]) -> list[VideoFrame]:
    return [VideoFrame.from_ndarray(f, format="rgb24") for f in frames]


def _load(path: Path) -> tuple[list[VideoFrame], list[VideoFrame], bytes]:
    frames = [to_640x480(f) for f in read_clip(path, 0, 75)]
    # A photo held up to a camera: the same picture in every frame, with the sensor's noise.
    rng = np.random.default_rng(7)
    photo = frames[10].astype(np.int16)
    still = [
        np.clip(photo + rng.integers(-2, 3, photo.shape), 0, 255).astype(np.uint8)
        for _ in range(25)
    ]
    return _video_frames(frames), _video_frames(still), encode_jpeg(frames[0])


@dataclass
class Sent:
    messages: list[Any] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    deciding: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, case_id: str, msg: Any) -> None:
        self.messages.append(msg)
        if isinstance(msg, VerifyProgress) and msg.phase == "analysing":
            self.deciding.set()
        if isinstance(msg, VerifyResult):
            self.done.set()


@dataclass
class Rig:
    db: Database
    banking: SqlCoreBanking
    desk: VerifyDesk
    sent: Sent
    attempts: AttemptStore
    blobs: LocalBlobStore
    moving: list[VideoFrame]
    still: list[VideoFrame]
    photo: bytes
    customer_id: int
    case_id: int


@pytest.fixture
async def rig(tmp_path: Path, shared_data: Path) -> AsyncIterator[Rig]:
    db = await open_database(StoreConfig(f"sqlite+aiosqlite:///{tmp_path / 'db'}", tmp_path / "b"))
    blobs = LocalBlobStore(tmp_path / "b")
    banking = SqlCoreBanking(db, blobs, "pepper")
    moving, still, photo = await asyncio.to_thread(_load, shared_data / CLIP)
    engine = EngineService(functools.partial(build_engine, "dlib"), workers=1)
    await engine.start()
    template = await engine.enrol(photo)
    body = "11010519491231002"
    customer = await banking.add_customer(
        NewCustomer(
            "Ada Lovelace",
            body + prc_id_check_char(body),
            "622202020011223" + luhn_check_digit("622202020011223"),
            photo,
            "image/jpeg",
        ),
        [StoredTemplate(template.model_key, template.to_bytes(), template.crop_jpeg)],
    )
    case = await CaseStore(db).open(customer.id, "pin_change", "en", False)
    await create_staff(db, "advisor1", "Advisor Wang", "advisor-password", "advisor")
    sent = Sent()
    attempts = AttemptStore(db)
    # A still photo's time-outs are failures however fast this machine analyses (the rule that
    # makes them undecided on a server too slow to see a blink has its tests in test_attempt).
    cfg = VerificationConfig(
        challenge_seconds=3.0,
        vocabulary=("blink", "smile", "turn_left"),
        min_blink_fps=0.0,
        min_pose_fps=0.0,
    )
    desk = VerifyDesk(engine, banking, attempts, blobs, load_policy(), cfg, sent)
    yield Rig(db, banking, desk, sent, attempts, blobs, moving, still, photo, customer.id, case.id)
    await desk.shutdown()
    await engine.close()
    await db.close()


def target(rig: Rig, frames: list[VideoFrame], customer_id: int | None = None) -> VerifyTarget:
    return VerifyTarget(
        "case-1", rig.case_id, customer_id or rig.customer_id, 1, "pin_change", ClipVideo(frames)
    )


async def test_a_held_up_still_photo_is_refused_with_evidence(rig: Rig) -> None:
    # The enrolled person's own picture, held up to the camera.
    await rig.desk.start(target(rig, rig.still))
    await asyncio.wait_for(rig.sent.done.wait(), 30)
    kinds = [type(m) for m in rig.sent.messages]
    assert kinds[0] is VerifyStarted and VerifyProgress in kinds
    started = rig.sent.messages[0]
    # Only how many: the page never holds the plan (each challenge is revealed when shown).
    assert started.total >= 3 and not hasattr(started, "challenges")
    result = rig.sent.messages[-1]
    assert result.outcome == "fail"
    assert "liveness.challenge_timeout" in result.reasons
    async with rig.db.session() as s:
        row = (await s.scalars(select(VerificationAttempt))).one()
    assert row.state == "failed" and row.evidence_blob_key
    evidence = json.loads(await rig.blobs.get(row.evidence_blob_key))
    assert evidence["nonce"] and evidence["policy_version"] and evidence["frame_hashes"]
    events = [e["event"] for e in evidence["timeline"]]
    assert events[0] == "baseline_started" and "challenge_shown" in events
    assert result.attempts_left == 2


async def test_no_reference_refuses_and_records_nothing(rig: Rig, shared_data: Path) -> None:
    body = "31010119850615004"
    other = await rig.banking.add_customer(
        NewCustomer(
            "Grace Hopper",
            body + prc_id_check_char(body),
            "622202020055667" + luhn_check_digit("622202020055667"),
            rig.photo,
            "image/jpeg",
        )
    )
    with pytest.raises(VerifyRefused) as refused:
        await rig.desk.start(target(rig, rig.moving, other.id))
    assert refused.value.code == "no_reference"
    assert await rig.attempts.count_for_case(rig.case_id) == 0
    assert rig.sent.messages == []


async def test_cancel_is_stored_as_aborted_and_limits_hold(rig: Rig) -> None:
    for _ in range(3):
        rig.sent.done.clear()
        await rig.desk.start(target(rig, rig.moving))
        with pytest.raises(VerifyRefused) as busy:
            await rig.desk.start(target(rig, rig.moving))
        assert busy.value.code == "bad_state"  # one attempt at a time
        await rig.desk.cancel("case-1")
        await asyncio.wait_for(rig.sent.done.wait(), 5)
        assert rig.sent.messages[-1].outcome == "aborted"
    with pytest.raises(VerifyRefused) as limit:
        await rig.desk.start(target(rig, rig.moving))
    assert limit.value.code == "limit"


async def test_five_failures_in_a_day_lock_the_customer(rig: Rig) -> None:
    for _ in range(5):
        attempt_id = await rig.attempts.create(rig.case_id + 0, rig.customer_id, 1, "n" * 16, [])
        from cases.attempts import Finished

        await rig.attempts.finish(attempt_id, Finished("failed"))
    rig.desk.config = VerificationConfig(
        max_attempts_per_case=99, challenge_seconds=1.0, vocabulary=("blink", "smile", "turn_left")
    )
    # The next failure crosses the line: verification locks.
    await rig.desk.start(target(rig, rig.still))
    await asyncio.wait_for(rig.sent.done.wait(), 30)
    assert await rig.attempts.is_locked(rig.customer_id)
    with pytest.raises(VerifyRefused) as locked:
        await rig.desk.start(target(rig, rig.moving))
    assert locked.value.code == "locked"


class PresenterVideo:
    """A real person's clip answering the challenge the desk currently shows (like a customer
    watching their screen): the simulator's honest genuine presenter, behind our camera seam."""

    def __init__(self, desk: VerifyDesk, case_id: str, presenter: GenuinePresenter) -> None:
        self._desk, self._case, self._presenter = desk, case_id, presenter
        self._reads = 0

    def latest_customer_frame(self) -> VideoFrame | None:
        # The person's clock advances one sampling period per frame the server reads, so a busy
        # test machine slows the person down with the server instead of skipping their blink.
        self._reads += 1
        current = self._desk.current_challenge(self._case)
        image = self._presenter.frame(self._reads / SAMPLE_FPS, current)
        return VideoFrame.from_ndarray(image, format="rgb24")


async def _katie(rig: Rig, shared_data: Path) -> VerifyTarget:
    """Katie Hill enrolled with her photo, answering the desk's challenges from her clip."""
    who = person("sadtalker-katiehill")
    clip = await asyncio.to_thread(load_clip, shared_data / who.clip)
    photo = await asyncio.to_thread(encode_jpeg, photo_of(who, clip))
    template = await rig.desk.engine.enrol(photo)
    body = "44030519870712002"
    katie = await rig.banking.add_customer(
        NewCustomer(
            "Katie Hill",
            body + prc_id_check_char(body),
            "622202020077889" + luhn_check_digit("622202020077889"),
            photo,
            "image/jpeg",
        ),
        [StoredTemplate(template.model_key, template.to_bytes(), template.crop_jpeg)],
    )
    rig.desk.config = VerificationConfig(
        vocabulary=who.vocabulary, challenge_seconds=8.0, sample_fps=SAMPLE_FPS
    )
    presenter = GenuinePresenter(who, clip, random.Random(3))
    video = PresenterVideo(rig.desk, "case-1", presenter)
    return VerifyTarget("case-1", rig.case_id, katie.id, 1, "pin_change", video)


async def test_a_genuine_customer_passes_through_the_server_path(
    rig: Rig, shared_data: Path
) -> None:
    await rig.desk.start(await _katie(rig, shared_data))
    await asyncio.wait_for(rig.sent.done.wait(), 60)
    result = rig.sent.messages[-1]
    assert result.outcome == "pass", result.reasons
    assert result.scores["match"] > 0.6
    progress = [m for m in rig.sent.messages if isinstance(m, VerifyProgress)]
    assert [p.met for p in progress][-1] == 3


async def test_hanging_up_while_the_server_decides_keeps_the_pass(
    rig: Rig, shared_data: Path
) -> None:
    # The customer met every challenge; the call ends while the server is still deciding.
    await rig.desk.start(await _katie(rig, shared_data))

    await asyncio.wait_for(rig.sent.deciding.wait(), 60)
    await rig.desk.cancel("case-1")  # the hang-up
    assert rig.sent.done.is_set()  # cancel waited for the stored decision
    result = rig.sent.messages[-1]
    assert result.outcome == "pass", result.reasons
    async with rig.db.session() as s:
        row = (await s.scalars(select(VerificationAttempt))).one()
    assert row.state == "passed"


async def test_leaving_an_attempt_counts_as_a_failure_towards_the_lock(rig: Rig) -> None:
    from cases.attempts import Finished

    for _ in range(4):
        attempt_id = await rig.attempts.create(rig.case_id, rig.customer_id, 1, "n" * 16, [])
        await rig.attempts.finish(attempt_id, Finished("failed"))
    rig.desk.config = VerificationConfig(
        max_attempts_per_case=99, challenge_seconds=3.0, vocabulary=("blink", "turn_left")
    )
    # Walking away from a failing attempt (hang-up, closed page) must not dodge the lock.
    await rig.desk.start(target(rig, rig.moving))
    await rig.desk.cancel("case-1")
    result = rig.sent.messages[-1]
    assert result.outcome == "aborted" and result.counted and result.locked
    assert await rig.attempts.is_locked(rig.customer_id)
