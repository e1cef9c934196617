"""The engine in worker processes: real models, real photos, errors that cross the process."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from verification.binding import BoundFrame, Role
from verification.config import build_engine
from verification.engine import Tracker, decode_image
from verification.errors import MultipleFaces, NoFace
from verification.service import EngineService


@pytest.fixture
async def service() -> AsyncIterator[EngineService]:
    svc = EngineService(functools.partial(build_engine, "dlib"), workers=1)
    await svc.start()
    yield svc
    await svc.close()


async def test_enrol_analyse_and_compare_across_the_process(
    service: EngineService, shared_data: Path
) -> None:
    folder = shared_data / "identity/face_recognition"
    obama = (folder / "obama/obama.jpg").read_bytes()
    template = await service.enrol(obama)
    assert template.model_key.startswith("dlib/") and template.crop_jpeg[:2] == b"\xff\xd8"
    assert service.models  # the worker described its models once it had loaded them

    frame = decode_image((folder / "obama/obama2.jpg").read_bytes())
    tracker = Tracker()
    analysis, tracker = await service.analyse(frame, tracker)
    assert analysis.face is not None and analysis.face.landmarks68 is not None
    assert tracker.box is not None  # the stream's tracker comes back updated

    met = BoundFrame(1, 1.0, Role.MET, "challenge-1", 0)
    same_scores = await service.frame_scores(
        template, [await service.embed_bound(met, frame, analysis.face)]
    )
    (same,) = same_scores.similarities
    biden = decode_image((folder / "biden/biden.jpg").read_bytes())
    other, _ = await service.analyse(biden, Tracker())
    assert other.face is not None
    other_scores = await service.frame_scores(
        template, [await service.embed_bound(met, biden, other.face)]
    )
    (different,) = other_scores.similarities
    assert same > 0.4 > different


async def test_enrolment_errors_reach_the_caller(service: EngineService, shared_data: Path) -> None:
    blank = np.full((480, 640, 3), 128, dtype=np.uint8)
    from verification.engine import encode_jpeg

    with pytest.raises(NoFace):
        await service.enrol(encode_jpeg(blank))
    group = next((shared_data / "identity/face_recognition/multi").iterdir()).read_bytes()
    with pytest.raises(MultipleFaces):
        await service.enrol(group)
