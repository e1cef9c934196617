"""The async face of the engine: models in worker processes, one call per frame.

``verification`` stays synchronous; this module only adds ``asyncio`` so the server can await
analyses without ever running inference on its event loop (nor under its GIL). Each worker
process builds its engine once, when it starts; streams keep their own ``Tracker`` and pass it
with every frame, so any worker can serve any stream.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from verification.engine import FaceEngine, FrameAnalysis, Template, Tracker
from verification.types import Face, Image, Vector
from verification.verdict import FrameScores, similarities_to

log = logging.getLogger(__name__)

EngineFactory = Callable[[], FaceEngine]
T = TypeVar("T")

# The worker process's engine. A process-wide global is the one way a pool initializer can hand
# state to later calls; it exists only inside worker processes, never in the server.
_WORKER_ENGINE: FaceEngine | None = None


def _load(factory: EngineFactory) -> None:
    global _WORKER_ENGINE
    _WORKER_ENGINE = factory()


def _engine() -> FaceEngine:
    if _WORKER_ENGINE is None:
        raise RuntimeError("the worker's engine was not loaded")
    return _WORKER_ENGINE


def _analyse(image: Image, tracker: Tracker) -> tuple[FrameAnalysis, Tracker]:
    return _engine().analyse(image, tracker), tracker


def _embed_faces(items: list[tuple[Image, Face]]) -> list[Vector]:
    engine = _engine()
    return [engine.embed(image, face) for image, face in items]


def _live_scores(items: list[tuple[Image, Face]]) -> list[float | None]:
    engine = _engine()
    return [engine.live_score(image, face) for image, face in items]


def _frame_scores(template: Template, vectors: list[Vector]) -> FrameScores:
    return similarities_to(_engine(), template, vectors)


def _enrol(photo: bytes) -> Template:
    return _engine().enrol(photo)


def _describe() -> dict[str, str]:
    return _engine().describe()


class EngineService:
    """Worker processes that each hold one engine; an async API over them."""

    def __init__(self, factory: EngineFactory, workers: int = 1) -> None:
        self._factory = factory
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self.models: dict[str, str] = {}

    async def start(self) -> None:
        """Start the workers and wait until their models are loaded."""
        # "spawn": forking a server that runs threads (aiortc, aioice) is unsafe.
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            self._workers, mp_context=context, initializer=_load, initargs=(self._factory,)
        )
        self.models = await self._run(_describe)
        log.info("face engine ready in %d worker(s): %s", self._workers, self.models)

    async def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise RuntimeError("the engine service is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    async def analyse(self, image: Image, tracker: Tracker) -> tuple[FrameAnalysis, Tracker]:
        """Analyse one frame of a stream; returns the analysis and the stream's new tracker."""
        return await self._run(_analyse, image, tracker)

    async def embed(self, items: list[tuple[Image, Face]]) -> list[Vector]:
        """Embeddings of several faces (one round trip)."""
        return await self._run(_embed_faces, items)

    async def live_scores(self, items: list[tuple[Image, Face]]) -> list[float | None]:
        """Presentation-attack live scores (None without a PAD model)."""
        return await self._run(_live_scores, items)

    async def frame_scores(self, template: Template, vectors: list[Vector]) -> FrameScores:
        """Similarities of embeddings to the reference, and of the frames to each other."""
        return await self._run(_frame_scores, template, vectors)

    @property
    def has_pad(self) -> bool:
        """Whether the engine has a presentation-attack model."""
        return "pad" in self.models

    async def enrol(self, photo: bytes) -> Template:
        """The reference template of a photo on file (errors as ``FaceEngine.enrol``)."""
        return await self._run(_enrol, photo)
