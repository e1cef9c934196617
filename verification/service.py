"""The async face of the engine: models in worker processes, one call per frame.

``verification`` stays synchronous; this module only adds ``asyncio`` so the server can await
analyses without ever running inference on its event loop (nor under its GIL). Each worker
process builds its engine once, when it starts; streams keep their own ``Tracker`` and pass it
with every frame, so any worker can serve any stream.

Two pools: ``workers`` processes analyse frames, and one more embeds the bound frames and enrols
photos. An embedding with dlib takes ≈ 150 ms, ten times a frame's analysis: on the analysing
workers it would stall every attempt's frames behind it (measured from outside: three honest
attempts ended ``face_lost`` on a loaded 2-core machine, issue 11).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from verification.binding import BoundFrame
from verification.engine import FaceEngine, FrameAnalysis, Template, Tracker
from verification.types import Face, Image
from verification.verdict import BoundScore, FrameScores, embed_bound, frame_scores

log = logging.getLogger(__name__)

EngineFactory = Callable[[], FaceEngine]
T = TypeVar("T")

# The worker process's engine. A process-wide global is the one way a pool initializer can hand
# state to later calls; it exists only inside worker processes, never in the server.
_WORKER_ENGINE: FaceEngine | None = None


def _load(factory: EngineFactory) -> None:
    global _WORKER_ENGINE
    # Ctrl-C reaches every process of the terminal's group: the server shuts the pool down in
    # order, so a worker ignores it (no KeyboardInterrupt traceback from each one).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_ENGINE = factory()


def _engine() -> FaceEngine:
    if _WORKER_ENGINE is None:
        raise RuntimeError("the worker's engine was not loaded")
    return _WORKER_ENGINE


def _analyse(image: Image, tracker: Tracker) -> tuple[FrameAnalysis, Tracker]:
    return _engine().analyse(image, tracker), tracker


def _embed_bound(bound: BoundFrame, image: Image, face: Face) -> BoundScore:
    return embed_bound(_engine(), bound, image, face)


def _frame_scores(template: Template, scored: Sequence[BoundScore]) -> FrameScores:
    return frame_scores(_engine(), template, scored)


def _live_scores(items: list[tuple[Image, Face]]) -> list[float | None]:
    engine = _engine()
    return [engine.live_score(image, face) for image, face in items]


def _enrol(photo: bytes) -> Template:
    return _engine().enrol(photo)


def _describe() -> dict[str, str]:
    return _engine().describe()


def _pool(factory: EngineFactory, workers: int) -> ProcessPoolExecutor:
    # "spawn": forking a server that runs threads (aiortc, aioice) is unsafe.
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_load, initargs=(factory,))


class EngineService:
    """Worker processes that each hold one engine; an async API over them."""

    def __init__(self, factory: EngineFactory, workers: int = 1) -> None:
        self._factory = factory
        self._workers = workers
        self._analysers: ProcessPoolExecutor | None = None
        self._embedder: ProcessPoolExecutor | None = None
        self.models: dict[str, str] = {}

    async def start(self) -> None:
        """Start the workers and wait until their models are loaded."""
        self._analysers = _pool(self._factory, self._workers)
        self._embedder = _pool(self._factory, 1)
        self.models, _ = await asyncio.gather(
            self._run(self._analysers, _describe), self._run(self._embedder, _describe)
        )
        log.info("face engine ready in %d+1 worker(s): %s", self._workers, self.models)

    async def close(self) -> None:
        """Stop the workers."""
        pools = [p for p in (self._analysers, self._embedder) if p is not None]
        self._analysers = self._embedder = None
        for pool in pools:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    @staticmethod
    async def _run(pool: ProcessPoolExecutor | None, fn: Callable[..., T], *args: Any) -> T:
        if pool is None:
            raise RuntimeError("the engine service is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(fn, *args))

    async def analyse(self, image: Image, tracker: Tracker) -> tuple[FrameAnalysis, Tracker]:
        """Analyse one frame of a stream; returns the analysis and the stream's new tracker."""
        return await self._run(self._analysers, _analyse, image, tracker)

    async def embed_bound(self, bound: BoundFrame, image: Image, face: Face) -> BoundScore:
        """Check and embed one bound frame (see :func:`verification.verdict.embed_bound`)."""
        return await self._run(self._embedder, _embed_bound, bound, image, face)

    async def frame_scores(self, template: Template, scored: Sequence[BoundScore]) -> FrameScores:
        """Similarities of the embedded bound frames to the reference and to each other."""
        return await self._run(self._embedder, _frame_scores, template, list(scored))

    async def live_scores(self, items: list[tuple[Image, Face]]) -> list[float | None]:
        """Presentation-attack live scores (None without a PAD model)."""
        return await self._run(self._embedder, _live_scores, items)

    @property
    def has_pad(self) -> bool:
        """Whether the engine has a presentation-attack model."""
        return "pad" in self.models

    async def enrol(self, photo: bytes) -> Template:
        """The reference template of a photo on file (errors as ``FaceEngine.enrol``)."""
        return await self._run(self._embedder, _enrol, photo)
