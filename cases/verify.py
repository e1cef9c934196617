"""Identity verification in a call: starting attempts, their limits, evidence and results.

The advisor starts an attempt; the desk checks the limits (3 per case, a customer locked after 5
failures in 24 hours), draws the plan, records the attempt and hands it to a
:class:`~cases.verify_run.VerifyRun`, which owns it until its decision. The desk then stores the
evidence and the outcome and tells both pages. Nothing here runs face inference on the loop.

What counts: a failed attempt and an attempt started and not completed (hang-up, page closed,
the advisor stopped it; the customer is told so when it starts) count towards both limits; an
*undecided* one (the server fell behind, or it stopped) counts for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from banking.core import CoreBanking
from cases.attempts import AttemptStore, Finished
from cases.errors import CaseError
from cases.verify_result import (
    advice,
    bound_evidence,
    details,
    reason_codes,
    thresholds,
    wire_outcome,
)
from cases.verify_run import (
    AttemptClock,
    CustomerVideo,
    Phase,
    RunContext,
    RunOutcome,
    VerifyRun,
)
from signaling.messages import VerifyResult, VerifyStarted
from store.blobs import BlobStore
from verification.attempt import Attempt, AttemptConfig
from verification.challenges import draw_challenges
from verification.config import VerificationConfig
from verification.engine import Template, encode_jpeg
from verification.errors import BadTemplate
from verification.policy import Policy
from verification.service import EngineService

log = logging.getLogger(__name__)

Send = Callable[[str, Any], None]  # (case public id, message) → both pages get their copy
STOP_WAIT_SECONDS = 15.0  # a stopped run's decision and storing, at most
SHUTDOWN = "attempt.server_shutdown"

__all__ = ["CustomerVideo", "VerifyDesk", "VerifyRefused", "VerifyTarget"]


class VerifyRefused(CaseError):
    """An attempt cannot start: ``code`` says why (sent to the advisor as an error)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class VerifyTarget:
    """The call an attempt belongs to."""

    case_public_id: str
    case_id: int
    customer_id: int
    advisor_id: int
    service: str
    video: CustomerVideo


@dataclass(slots=True)
class _Live:
    target: VerifyTarget
    run: VerifyRun
    template: Template
    task: asyncio.Task[None] | None = None


async def _wait_or_cancel(task: asyncio.Task[None], seconds: float) -> None:
    """Wait for ``task`` to finish; cancel it after ``seconds`` (a wedged engine)."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# With replayable plans (a test setting) the fake camera loops a clip that performs its actions
# on its own schedule: no onset deadline, only the challenge's own time limit.
_REPLAYABLE_RULES = AttemptConfig(max_reaction=10.0)


class VerifyDesk:
    """Runs at most one attempt per call."""

    def __init__(
        self,
        engine: EngineService,
        banking: CoreBanking,
        attempts: AttemptStore,
        blobs: BlobStore,
        policy: Policy,
        config: VerificationConfig,
        send: Send,
    ) -> None:
        self.engine = engine
        self.banking = banking
        self.attempts = attempts
        self.blobs = blobs
        self.policy = policy
        self.config = config
        self._send = send
        self._live: dict[str, _Live] = {}
        self._labels: dict[str, str] = {}

    def note_camera(self, case_public_id: str, label: str) -> None:
        """Remember the browser's camera label for the passive checks (a weak hint)."""
        self._labels[case_public_id] = label

    def current_challenge(self, case_public_id: str) -> str | None:
        """The challenge on the customer's screen now, if any (from the published progress)."""
        live = self._live.get(case_public_id)
        return None if live is None else live.run.progress.challenge

    async def start(self, target: VerifyTarget) -> None:
        """Start an attempt, or raise :class:`VerifyRefused` naming why not."""
        if target.case_public_id in self._live:
            raise VerifyRefused("bad_state", "an attempt is already running")
        template = await self._checked_start(target)
        plan = draw_challenges(
            max(self.config.challenges, 3),
            self.config.actions(),
            time_limit=self.config.challenge_seconds,
            min_challenges=3,
            pause=self.config.pause,
            replayable=self.config.replayable_plans,
        )
        base = _REPLAYABLE_RULES if self.config.replayable_plans else AttemptConfig()
        # What the server must manage for a timeout to be the customer's, within the rates asked
        # for: two thirds of the camera rate in a blink window, of the sampling rate otherwise.
        cfg = self.config
        rules = dataclasses.replace(
            base,
            min_blink_fps=min(cfg.min_blink_fps, cfg.camera_fps * 2 / 3),
            min_pose_fps=min(cfg.min_pose_fps, cfg.sample_fps * 2 / 3),
        )
        if rules is not None:
            log.warning("verification plans without a head movement (a test setting)")
        challenges = [c.action.value for c in plan.challenges]
        attempt_id = await self.attempts.create(
            target.case_id, target.customer_id, target.advisor_id, plan.nonce, challenges
        )
        context = RunContext(
            self.engine,
            self.policy,
            self.config,
            target.service,
            template,
            self._labels.get(target.case_public_id),
            AttemptClock(max_stall=self.config.max_stall_seconds),
        )
        case = target.case_public_id
        run = VerifyRun(
            attempt_id, Attempt(plan, rules), target.video, context, lambda p: self._send(case, p)
        )
        live = _Live(target, run, template)
        self._live[case] = live
        log.info("verification started", extra={"case_id": case})
        # The plan stays on the server: the pages learn each challenge when it is shown.
        self._send(
            case,
            VerifyStarted(
                attempt_id=attempt_id,
                total=len(challenges),
                seconds_per_challenge=plan.challenges[0].time_limit,
            ),
        )
        live.task = asyncio.create_task(self._drive(live), name=f"verify:{attempt_id}")

    async def _checked_start(self, target: VerifyTarget) -> Template:
        # An attempt a crashed node never finished counts before the limits are read.
        await self.attempts.abandon_running(target.customer_id)
        if await self.attempts.is_locked(target.customer_id):
            raise VerifyRefused("locked", "verification is locked for this customer")
        if await self.attempts.count_for_case(target.case_id) >= self.config.max_attempts_per_case:
            raise VerifyRefused("limit", "no attempts left in this case")
        model_key = self.engine.models.get("embedder", "")
        stored = await self.banking.reference_template(target.customer_id, model_key)
        if stored is None:
            raise VerifyRefused("no_reference", "the customer has no reference for this engine")
        try:
            return Template.from_bytes(stored.data)
        except BadTemplate as err:
            raise VerifyRefused("no_reference", "the stored reference is unreadable") from err

    async def cancel(self, case_public_id: str, reason: str = "attempt.aborted") -> None:
        """Stop the attempt of a call (advisor's request, hang-up, page closed) and wait until
        it is stored. An attempt already deciding keeps its decision."""
        live = self._live.get(case_public_id)
        if live is None or live.task is None:
            return
        if not live.run.request_stop(reason):
            log.info("stop after the decision: the attempt keeps its outcome")
        await _wait_or_cancel(live.task, STOP_WAIT_SECONDS)

    async def shutdown(self) -> None:
        """Stop every attempt; one stopped by the shutdown itself is undecided."""
        await asyncio.gather(*(self.cancel(case, SHUTDOWN) for case in list(self._live)))

    # ---- one attempt, from its run to its stored result -----------------------------------

    async def _drive(self, live: _Live) -> None:
        case = live.target.case_public_id
        try:
            outcome = await live.run.run()
            live.run.move(Phase.STORING)
            # The outcome is decided: store it even if the call ends meanwhile.
            await asyncio.shield(self._store(live, outcome))
            live.run.move(Phase.DONE)
        except asyncio.CancelledError:
            await asyncio.shield(self._store_failure(live, "attempt.aborted"))
            raise
        except Exception:
            log.exception("verification failed", extra={"case_id": case})
            await self._store_failure(live, "attempt.internal_error")
        finally:
            self._live.pop(case, None)

    async def _store_failure(self, live: _Live, reason: str) -> None:
        """The run broke before a decision: stored as aborted, or undecided when it was the
        server's own fault (an internal error is never the customer's)."""
        state = "undecided" if reason == "attempt.internal_error" else "aborted"
        try:
            await self.attempts.finish(live.run.attempt_id, Finished(state, (reason,)))
        except CaseError:
            return  # already stored
        await self._tell(live, state, (reason,), None, None)

    async def _store(self, live: _Live, outcome: RunOutcome) -> None:
        run, target = live.run, live.target
        if outcome.reason == SHUTDOWN and outcome.state == "aborted":
            outcome = RunOutcome("undecided", SHUTDOWN, outcome.result)
        best_key = await self._best_frame(run, outcome)
        evidence_key = await self.blobs.put(self._evidence(live, outcome, best_key))
        decision = outcome.decision
        codes = reason_codes(outcome)
        scores = (
            {}
            if decision is None or decision.match_score is None
            else {"match": round(decision.match_score, 4)}
        )
        policy_version = None if decision is None else decision.policy_version
        await self.attempts.finish(
            run.attempt_id,
            Finished(outcome.state, codes, scores, policy_version, evidence_key, best_key),
        )
        log.info(
            "verification %s",
            outcome.state,
            extra={"case_id": target.case_public_id, "reasons": codes},
        )
        await self._tell(live, outcome.state, codes, outcome, best_key)

    async def _tell(
        self,
        live: _Live,
        state: str,
        codes: tuple[str, ...],
        outcome: RunOutcome | None,
        best_key: str | None,
    ) -> None:
        run, target = live.run, live.target
        locked = await self._maybe_lock(target) if state in ("failed", "aborted") else False
        decision = None if outcome is None else outcome.decision
        url = f"/staff/verification/{run.attempt_id}"
        self._send(
            target.case_public_id,
            VerifyResult(
                attempt_id=run.attempt_id,
                outcome=wire_outcome(state),
                reasons=list(codes),
                details=details(decision, codes),
                scores={}
                if decision is None or decision.match_score is None
                else {"match": round(decision.match_score, 4)},
                thresholds=thresholds(decision),
                best_frame_url=f"{url}/best.jpg" if best_key else None,
                reference_url=f"{url}/reference.jpg",
                attempts_left=await self._attempts_left(target),
                counted=state != "undecided",
                locked=locked,
                advice=advice(state, decision),
            ),
        )

    async def _best_frame(self, run: VerifyRun, outcome: RunOutcome) -> str | None:
        """The challenge frame most like the reference; when no face was compared (liveness
        stopped the attempt) the latest frame the attempt held, so that the advisor and the
        auditor still see who was in front of the camera."""
        best = None if outcome.scores is None else outcome.scores.best
        if best is not None and best.frame in run.images:
            image = run.images[best.frame][0]
        elif run.images:
            image = run.images[max(run.images)][0]
        else:
            return None
        return await self.blobs.put(await asyncio.to_thread(encode_jpeg, image))

    def _evidence(self, live: _Live, outcome: RunOutcome, best_key: str | None) -> bytes:
        run, result = live.run, outcome.result
        decision = outcome.decision
        start = result.started_at or 0.0
        timeline = [
            {
                "t": round(e.t - start, 3),
                "event": e.kind.value,
                "challenge": e.action.value if e.action else None,
                "detail": e.detail,
            }
            for e in result.events
        ]
        doc = {
            "attempt_id": run.attempt_id,
            "nonce": run.attempt.plan.nonce,
            "service": live.target.service,
            "challenges": [
                {"action": c.action.value, "pause_s": round(c.pause, 3), "limit_s": c.time_limit}
                for c in run.attempt.plan.challenges
            ],
            "timeline": timeline,
            "outcome": outcome.state,
            "reasons": [
                {"code": r.code, "severity": r.severity.value, **r.detail}
                for r in (decision.reasons if decision else ())
            ]
            or [{"code": c, "severity": "fail"} for c in reason_codes(outcome)],
            "scores": {}
            if decision is None or decision.match_score is None
            else {"match": round(decision.match_score, 4)},
            "thresholds": thresholds(decision),
            "bound_frames": bound_evidence(outcome),
            "policy_version": None if decision is None else decision.policy_version,
            "models": self.engine.models,
            "reference_model": live.template.model_key,
            "best_frame_blob": best_key,
            "frame_hashes": run.hashes,
            "camera_label": self._labels.get(live.target.case_public_id),
            "decision_ms": outcome.decision_ms,
            "server_stall_s": round(run.stalled, 3),
            "recorded_at": time.time(),
        }
        return json.dumps(doc, sort_keys=True).encode()

    async def _attempts_left(self, target: VerifyTarget) -> int:
        used = await self.attempts.count_for_case(target.case_id)
        return max(0, self.config.max_attempts_per_case - used)

    async def _maybe_lock(self, target: VerifyTarget) -> bool:
        """Lock the customer after too many failures; True when this result locked them."""
        customer = target.customer_id
        failures = await self.attempts.failures_since(customer, self.config.lock_window_hours)
        if failures < self.config.lock_after_failures:
            return False
        if not await self.attempts.lock(customer, "too_many_failures"):
            return False
        # The alert: the log line is the supervisors' alert for now.
        log.warning(
            "verification locked after %d failures", failures, extra={"customer_id": customer}
        )
        return True
