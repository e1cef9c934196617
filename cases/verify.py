"""Identity verification in a call: the live attempt, its decision, evidence and limits.

The advisor starts an attempt; the server draws the challenges, taps the customer's incoming
video (latest frame only, ``sample_fps``), has the engine analyse each frame in its worker
processes, drives the attempt state machine, pushes progress to both sides, and at the end
embeds the best frames, runs the passive checks and decides with the policy. Evidence goes to
the blob store; the row records the outcome. Nothing here runs face inference on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from av import VideoFrame

from banking.core import CoreBanking
from cases.attempts import AttemptStore, Finished
from cases.errors import CaseError
from media.tap import TappedFrame, tap_or_idle
from signaling.messages import VerifyProgress, VerifyResult, VerifyStarted
from store.blobs import BlobStore
from verification.attempt import FINAL, Attempt, AttemptState, EventKind, FrameObservation
from verification.challenges import Action, draw_challenges
from verification.config import VerificationConfig
from verification.decision import Decision
from verification.engine import FrameAnalysis, Template, Tracker, encode_jpeg
from verification.errors import BadTemplate
from verification.policy import Policy
from verification.service import EngineService
from verification.types import Face, Image, Vector
from verification.verdict import BestFrames, FrameScores, judge

log = logging.getLogger(__name__)

Send = Callable[[str, Any], None]  # (side, message) → both pages get their copy


class VerifyRefused(CaseError):
    """An attempt cannot start: ``code`` says why (sent to the advisor as an error)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class CustomerVideo(Protocol):
    """Where the customer's frames come from (``media.CallMedia``)."""

    def latest_customer_frame(self) -> VideoFrame | None:
        """The latest decoded customer frame, or None."""
        ...


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
class _Running:
    target: VerifyTarget
    attempt_id: str
    attempt: Attempt
    template: Template
    task: asyncio.Task[None] | None = None
    best: BestFrames = field(default_factory=BestFrames)
    vectors: dict[int, Vector] = field(default_factory=dict)  # id(image) → embedding
    embedding: asyncio.Task[None] | None = None
    hashes: list[str] = field(default_factory=list)
    guidance: str | None = None
    camera_label: str | None = None
    concluded: bool = False  # its outcome is stored and sent
    decision_ms: float | None = None  # from the last frame's verdict to the decision


def _frame_hash(image: Image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()[:32]


def _progress(run: _Running) -> VerifyProgress:
    attempt = run.attempt
    state = attempt.state
    met = sum(1 for c in attempt.result().challenges if c.met_at is not None)
    current = attempt.current
    phase: Literal["baseline", "hold", "challenge", "analysing"] = (
        "baseline"
        if state in (AttemptState.CREATED, AttemptState.BASELINE)
        else "hold"
        if attempt.holding
        else "challenge"
        if state is AttemptState.CHALLENGE
        else "analysing"
    )
    return VerifyProgress(
        attempt_id=run.attempt_id,
        phase=phase,
        index=current[0] if current else met,
        challenge=current[1].value if current else None,
        met=met,
        guidance=run.guidance,
    )


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
        self._running: dict[str, _Running] = {}
        self._labels: dict[str, str] = {}
        self._vocabulary = tuple(Action(v) for v in config.vocabulary) or tuple(Action)

    def note_camera(self, case_public_id: str, label: str) -> None:
        """Remember the browser's camera label for the passive checks (a weak hint)."""
        self._labels[case_public_id] = label

    def current_challenge(self, case_public_id: str) -> str | None:
        """The challenge on the customer's screen now, if any."""
        run = self._running.get(case_public_id)
        current = None if run is None else run.attempt.current
        return None if current is None else current[1].value

    def reset_vocabulary(self) -> None:
        """Re-read the challenge vocabulary from ``config`` (after a settings change)."""
        self._vocabulary = tuple(Action(v) for v in self.config.vocabulary) or tuple(Action)

    async def start(self, target: VerifyTarget) -> None:
        """Start an attempt, or raise :class:`VerifyRefused` naming why not."""
        if target.case_public_id in self._running:
            raise VerifyRefused("bad_state", "an attempt is already running")
        template = await self._checked_start(target)
        plan = draw_challenges(
            max(self.config.challenges, 3),
            self._vocabulary,
            time_limit=self.config.challenge_seconds,
            min_challenges=3,
            pause=self.config.pause,
        )
        challenges = [c.action.value for c in plan.challenges]
        attempt_id = await self.attempts.create(
            target.case_id, target.customer_id, target.advisor_id, plan.nonce, challenges
        )
        run = _Running(target, attempt_id, Attempt(plan), template)
        run.camera_label = self._labels.get(target.case_public_id)
        self._running[target.case_public_id] = run
        log.info("verification started", extra={"case_id": target.case_public_id})
        self._send(
            target.case_public_id,
            VerifyStarted(
                attempt_id=attempt_id,
                challenges=challenges,
                seconds_per_challenge=plan.challenges[0].time_limit,
            ),
        )
        run.task = asyncio.create_task(self._run(run), name=f"verify:{attempt_id}")

    async def _checked_start(self, target: VerifyTarget) -> Template:
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

    async def cancel(self, case_public_id: str) -> None:
        """Stop the attempt of a call (advisor's request, hang-up); stored as aborted."""
        run = self._running.get(case_public_id)
        if run is None or run.task is None:
            return
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task
        if not run.concluded:  # cancelled before it ever ran
            self._running.pop(case_public_id, None)
            await self._aborted(run)

    async def shutdown(self) -> None:
        """Stop every attempt."""
        for case_public_id in list(self._running):
            await self.cancel(case_public_id)

    # ---- the attempt ---------------------------------------------------------------------

    async def _run(self, run: _Running) -> None:
        loop = asyncio.get_running_loop()
        try:
            run.attempt.start(loop.time())
            self._send(run.target.case_public_id, _progress(run))
            await self._observe(run, loop)
            observed = loop.time()
            decision = await self._decide(run, loop)
            run.decision_ms = round((loop.time() - observed) * 1000.0, 1)
            await self._finish(run, decision, loop)
        except asyncio.CancelledError:
            if run.attempt.state not in FINAL:
                run.attempt.abort(loop.time())
            await asyncio.shield(self._aborted(run))
            raise
        except Exception:
            log.exception("verification failed", extra={"case_id": run.target.case_public_id})
            if run.attempt.state not in FINAL:
                run.attempt.abort(loop.time(), "attempt.internal_error")
            await self._aborted(run)
        finally:
            self._running.pop(run.target.case_public_id, None)
            if run.embedding is not None and not run.embedding.done():
                run.embedding.cancel()
                await asyncio.gather(run.embedding, return_exceptions=True)

    async def _observe(self, run: _Running, loop: asyncio.AbstractEventLoop) -> None:
        tracker = Tracker()
        video = run.target.video
        async for tapped in tap_or_idle(video.latest_customer_frame, self.config.sample_fps):
            if tapped is None:
                events = await asyncio.to_thread(run.attempt.tick, loop.time())
            else:
                analysis, tracker = await self.engine.analyse(tapped.rgb, tracker)
                observation = await self._observation(run, tapped, analysis)
                # Pose solving and the detectors are CPU work: off the loop, one frame at a time.
                events = await asyncio.to_thread(run.attempt.observe, loop.time(), observation)
                if any(e.kind is EventKind.CHALLENGE_SHOWN for e in events):
                    self._embed_ahead(run)
                keys = analysis.quality.message_keys if analysis.issues else ()
                guidance = keys[0] if keys else run.attempt.baseline_guidance
                if guidance != run.guidance:
                    run.guidance = guidance
                    events = [*events, None]  # type: ignore[list-item]
            if run.attempt.state not in (AttemptState.BASELINE, AttemptState.CHALLENGE):
                if run.attempt.state is AttemptState.ANALYSING:
                    self._send(run.target.case_public_id, _progress(run))
                # Timed out or failed: no "checking…" step, the result follows at once.
                return
            if events:
                self._send(run.target.case_public_id, _progress(run))

    async def _observation(
        self, run: _Running, tapped: TappedFrame, analysis: FrameAnalysis
    ) -> FrameObservation:
        image = tapped.rgb
        digest = await asyncio.to_thread(_frame_hash, image)
        run.hashes.append(digest)
        face = analysis.face
        run.best.offer(analysis, image)
        return FrameObservation(
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            landmarks68=None if face is None else face.landmarks68,
            box=None if face is None else face.box,
            frame_hash=digest,
        )

    def _embed_ahead(self, run: _Running) -> None:
        """Embed the best frame not embedded yet, in the background, while the customer does
        the next challenge: the decision then only compares (it must come within 500 ms)."""
        if run.embedding is not None and not run.embedding.done():
            return
        pending = [(i, f) for i, f in run.best.frames if id(i) not in run.vectors]
        if pending:
            run.embedding = asyncio.create_task(self._embed_one(run, *pending[0]))

    async def _embed_one(self, run: _Running, image: Image, face: Face) -> None:
        (vector,) = await self.engine.embed([(image, face)])
        run.vectors[id(image)] = vector

    async def _scores(self, run: _Running) -> FrameScores | None:
        result_state = run.attempt.state
        best = run.best.frames
        if not best:
            return None
        if run.embedding is not None:
            await run.embedding
        pads: tuple[float, ...] = ()
        if self.engine.has_pad:
            pads = tuple(s for s in await self.engine.live_scores(best) if s is not None)
        if result_state is not AttemptState.ANALYSING:
            return FrameScores(run.template.model_key, pad=pads) if pads else None
        missing = [(i, f) for i, f in best if id(i) not in run.vectors]
        if missing:
            for (image, _), vector in zip(missing, await self.engine.embed(missing), strict=True):
                run.vectors[id(image)] = vector
        vectors = [run.vectors[id(i)] for i, _ in best]
        scores = await self.engine.frame_scores(run.template, vectors)
        return FrameScores(scores.model_key, scores.similarities, scores.identity, pads)

    async def _decide(self, run: _Running, loop: asyncio.AbstractEventLoop) -> Decision:
        scores = await self._scores(run)
        # The passive checks fit homographies over every sample: CPU work, off the loop.
        return await asyncio.to_thread(
            judge, run.target.service, run.attempt.result(), scores, self.policy, run.camera_label
        )

    async def _finish(
        self, run: _Running, decision: Decision, loop: asyncio.AbstractEventLoop
    ) -> None:
        if run.attempt.state is AttemptState.ANALYSING:
            run.attempt.conclude(loop.time(), decision.outcome.state, ",".join(decision.codes))
        best_key = None
        if run.best.frames:
            image = run.best.frames[0][0]
            best_key = await self.blobs.put(await asyncio.to_thread(encode_jpeg, image))
        scores = {} if decision.match_score is None else {"match": round(decision.match_score, 4)}
        evidence = self._evidence(run, decision, scores, best_key)
        evidence_key = await self.blobs.put(evidence)
        state = {"pass": "passed", "fail": "failed", "refer": "referred"}[decision.outcome.value]
        await self.attempts.finish(
            run.attempt_id,
            Finished(
                state, decision.codes, scores, decision.policy_version, evidence_key, best_key
            ),
        )
        left = await self._attempts_left(run)
        if state == "failed":
            await self._maybe_lock(run)
        log.info(
            "verification %s",
            decision.outcome.value,
            extra={"case_id": run.target.case_public_id, "reasons": decision.codes},
        )
        self._send(
            run.target.case_public_id,
            VerifyResult(
                attempt_id=run.attempt_id,
                outcome=decision.outcome.value,
                reasons=list(decision.codes),
                scores=scores,
                best_frame_url=f"/staff/verification/{run.attempt_id}/best.jpg"
                if best_key
                else None,
                reference_url=f"/staff/verification/{run.attempt_id}/reference.jpg",
                attempts_left=left,
            ),
        )

    def _evidence(
        self, run: _Running, decision: Decision, scores: dict[str, float], best_key: str | None
    ) -> bytes:
        result = run.attempt.result()
        timeline = [
            {
                "t": round(e.t - (result.started_at or e.t), 3),
                "event": e.kind.value,
                "challenge": e.action.value if e.action else None,
                "detail": e.detail,
            }
            for e in result.events
        ]
        doc = {
            "attempt_id": run.attempt_id,
            "nonce": run.attempt.plan.nonce,
            "service": run.target.service,
            "challenges": [
                {"action": c.action.value, "pause_s": round(c.pause, 3), "limit_s": c.time_limit}
                for c in run.attempt.plan.challenges
            ],
            "timeline": timeline,
            "outcome": decision.outcome.value,
            "reasons": [
                {"code": r.code, "severity": r.severity.value, **r.detail} for r in decision.reasons
            ],
            "scores": scores,
            "policy_version": decision.policy_version,
            "models": self.engine.models,
            "reference_model": run.template.model_key,
            "best_frame_blob": best_key,
            "frame_hashes": run.hashes,
            "camera_label": run.camera_label,
            "decision_ms": run.decision_ms,
            "recorded_at": time.time(),
        }
        return json.dumps(doc, sort_keys=True).encode()

    async def _attempts_left(self, run: _Running) -> int:
        used = await self.attempts.count_for_case(run.target.case_id)
        return max(0, self.config.max_attempts_per_case - used)

    async def _maybe_lock(self, run: _Running) -> None:
        customer = run.target.customer_id
        failures = await self.attempts.failures_since(customer, self.config.lock_window_hours)
        if failures >= self.config.lock_after_failures and await self.attempts.lock(
            customer, "too_many_failures"
        ):
            # The alert: supervisors' console comes later; the log line is the alert for now.
            log.warning(
                "verification locked after %d failures", failures, extra={"customer_id": customer}
            )

    async def _aborted(self, run: _Running) -> None:
        if run.concluded:
            return
        run.concluded = True
        await self.attempts.finish(run.attempt_id, Finished("aborted", ("attempt.aborted",)))
        self._send(
            run.target.case_public_id,
            VerifyResult(
                attempt_id=run.attempt_id,
                outcome="aborted",
                reasons=["attempt.aborted"],
                attempts_left=await self._attempts_left(run),
            ),
        )
