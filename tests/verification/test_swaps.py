"""The swap presenters show what they claim, checked with the real engine on their frames.

Victim: Katie Hill (her photo, her clip); impostor: Ed Markey answering with his own segments.
Identity is read with the engine's embedder (dlib: similarity = 1 − distance, same person
above 0.4); embeddings are slow without BLAS (≈ 150 ms), so only a few frames are embedded.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from verification.engine import FaceEngine
from verification.evaluation.attacks import Clip, ClipReplay, Presenter, load_clip, person, photo_of
from verification.evaluation.swaps import (
    AFTER_PEAK,
    SWAP_KINDS,
    SecondFace,
    Swap,
    SwapClip,
    SwapMidChallenge,
    live_impostor,
    make_swap,
)
from verification.types import Image, Vector

VICTIM, IMPOSTOR = "sadtalker-katiehill", "sadtalker-edmarkey"
SAME = 0.4  # dlib's same-person tolerance (distance 0.6) as a similarity
FPS = 10
# What the screen shows: "hold still" (None) and two challenges of the impostor's vocabulary.
SCHEDULE = ((0.0, None), (2.0, "turn_right"), (6.0, None), (7.0, "blink"), (10.0, None))


def _prompt(t: float) -> str | None:
    return [p for start, p in SCHEDULE if start <= t][-1]


def _play(presenter: Presenter, until: float) -> Iterator[tuple[float, str | None, Image]]:
    """The presenter's frames at :data:`FPS` while the screen follows :data:`SCHEDULE`."""
    for i in range(round(until * FPS)):
        t = i / FPS
        yield t, _prompt(t), presenter.frame(t, _prompt(t))


@pytest.fixture(scope="module")
def clips(shared_data: Path) -> dict[str, Clip]:
    return {name: load_clip(shared_data / person(name).clip) for name in (VICTIM, IMPOSTOR)}


@pytest.fixture(scope="module")
def photos(clips: dict[str, Clip]) -> dict[str, Image]:
    return {name: photo_of(person(name), clip) for name, clip in clips.items()}


@pytest.fixture(scope="module")
def references(dlib_engine: FaceEngine, photos: dict[str, Image]) -> dict[str, Vector]:
    return {name: _embed(dlib_engine, photo) for name, photo in photos.items()}


def _embed(engine: FaceEngine, image: Image) -> Vector:
    face = engine.analyse(image).face
    assert face is not None
    return engine.embed(image, face)


def _who(engine: FaceEngine, image: Image, references: dict[str, Vector]) -> str | None:
    """The reference the face in ``image`` matches (None: nobody)."""
    vector = _embed(engine, image)
    scores = {n: engine.embedder.similarity(r, vector) for n, r in references.items()}
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > SAME else None


def _swap(kind: str, clips: dict[str, Clip], photos: dict[str, Image], seed: int = 1) -> Swap:
    swap = make_swap(
        kind, photos[VICTIM], clips[VICTIM], person(IMPOSTOR), clips[IMPOSTOR], random.Random(seed)
    )
    assert isinstance(swap, Swap) and swap.kind == kind
    return swap


def test_swap_pauses_shows_the_victim_in_pauses_and_the_impostor_on_prompts(
    dlib_engine: FaceEngine,
    clips: dict[str, Clip],
    photos: dict[str, Image],
    references: dict[str, Vector],
) -> None:
    swap = _swap("swap_pauses", clips, photos)
    frames = {round(t, 1): (p, image, swap.showing) for t, p, image in _play(swap, 10.0)}
    assert all((s == "impostor") == (p is not None) for p, _, s in frames.values())
    start, _ = swap.impostor.answer or (0.0, None)
    moving = round(start + 0.3, 1)  # the impostor turning, after his reaction delay
    for t, expected in ((1.0, VICTIM), (6.5, VICTIM), (moving, IMPOSTOR), (8.5, IMPOSTOR)):
        prompt, image, _ = frames[t]
        assert _who(dlib_engine, image, references) == expected, (t, prompt)


def test_swap_baseline_shows_the_victim_only_until_the_first_prompt(
    dlib_engine: FaceEngine,
    clips: dict[str, Clip],
    photos: dict[str, Image],
    references: dict[str, Vector],
) -> None:
    swap = _swap("swap_baseline", clips, photos)
    seen = [(t, swap.showing, image) for t, _, image in _play(swap, 7.0)]
    assert all((s == "victim") == (t < 2.0) for t, s, _ in seen)
    assert _who(dlib_engine, seen[5][2], references) == VICTIM
    assert _who(dlib_engine, seen[-1][2], references) == IMPOSTOR  # a pause, after the prompts


def test_swap_mid_challenge_shows_the_impostor_from_his_movement_to_its_peak(
    clips: dict[str, Clip], photos: dict[str, Image]
) -> None:
    swap = _swap("swap_mid_challenge", clips, photos)
    assert isinstance(swap, SwapMidChallenge)
    shown = [(t, p, swap.showing) for t, p, _ in _play(swap, 6.0)]
    answer = swap.impostor.answer
    assert answer is not None and answer[1].peak is not None
    start, segment = answer
    until = start + (segment.peak or 0.0) - segment.start + AFTER_PEAK
    for t, prompt, showing in shown:
        impostor = prompt is None or start <= t < until
        assert (showing == "impostor") == impostor, (t, prompt, showing)
    assert {s for t, _, s in shown if 2.0 <= t < start} == {"victim"}  # before he moves
    assert {s for t, _, s in shown if until <= t < 6.0} == {"victim"}  # after the peak


def test_swap_blurred_impostor_keeps_landmarks_but_fails_the_sharpness(
    dlib_engine: FaceEngine,
    clips: dict[str, Clip],
    photos: dict[str, Image],
    references: dict[str, Vector],
) -> None:
    swap = _swap("swap_blurred", clips, photos)
    frames = [(p, image) for t, p, image in _play(swap, 4.0) if t in (1.0, 3.0, 3.5)]
    quality = dlib_engine.config.quality
    victim = dlib_engine.analyse(frames[0][1])
    assert frames[0][0] is None and victim.face is not None
    for prompt, image in frames[1:]:
        assert prompt == "turn_right"
        analysis = dlib_engine.analyse(image)
        assert analysis.face is not None and analysis.face.landmarks68 is not None
        sharpness = analysis.quality.measures["sharpness"]
        assert sharpness < quality.min_sharpness < victim.quality.measures["sharpness"] / 10
    # Not the victim. (dlib still recognises the blurred impostor: see the module docstring.)
    assert _who(dlib_engine, frames[1][1], references) != VICTIM


def test_swap_clip_plays_the_victims_own_clip_in_the_pauses(
    clips: dict[str, Clip], photos: dict[str, Image]
) -> None:
    rng = random.Random(4)
    victim = ClipReplay(clips[VICTIM], rng, noise=0.0)
    swap = SwapClip(victim, live_impostor(person(IMPOSTOR), clips[IMPOSTOR], rng), rng, noise=0.0)
    duration = clips[VICTIM].duration
    for t in (0.4, 1.9, 6.3, duration + 0.5):
        assert np.array_equal(swap.frame(t, None), clips[VICTIM].at(t % duration))
    assert _swap("swap_clip", clips, photos).kind == "swap_clip"


def test_second_face_adds_the_impostor_beside_the_victims_photo(
    dlib_engine: FaceEngine, clips: dict[str, Clip], photos: dict[str, Image]
) -> None:
    variants = set()
    for seed in range(8):
        face = make_swap(
            "second_face",
            photos[VICTIM],
            clips[VICTIM],
            person(IMPOSTOR),
            clips[IMPOSTOR],
            random.Random(seed),
        )
        assert isinstance(face, SecondFace)
        variants.add((face.victim_side, face.between))
        if seed > 1:
            continue
        before = face.frame(0.1, None)
        assert face.enter_at > 0.1 and len(dlib_engine.detect(before)) == 1
        after = face.frame(face.enter_at + 2.5, "turn_right")
        found = sorted(dlib_engine.detect(after), key=lambda f: f.box.x)
        assert len(found) == 2
        victim, impostor = found if face.victim_side == "left" else found[::-1]
        assert impostor.box.w >= 0.9 * victim.box.w  # the victim's size or a bit larger
        pause = face.frame(face.enter_at + 3.0, None)
        assert len(dlib_engine.detect(pause)) == (2 if face.between == "neutral" else 1)
    assert len(variants) >= 3  # sides and pause variants are drawn per attempt


def test_swaps_are_reproducible_from_their_seed_and_distinct(
    clips: dict[str, Clip], photos: dict[str, Image]
) -> None:
    kinds = set()
    for kind in SWAP_KINDS:
        frames = []
        for _ in range(2):
            swap = make_swap(
                kind,
                photos[VICTIM],
                clips[VICTIM],
                person(IMPOSTOR),
                clips[IMPOSTOR],
                random.Random(9),
            )
            kinds.add(swap.kind)
            frames.append([swap.frame(t, _prompt(t)) for t in (0.5, 2.2, 2.9)])
        assert all(np.array_equal(a, b) for a, b in zip(*frames, strict=True)), kind
        assert frames[0][0].shape == (480, 640, 3)
    assert kinds == set(SWAP_KINDS)
    with pytest.raises(ValueError, match="unknown swap"):
        make_swap(
            "nope",
            photos[VICTIM],
            clips[VICTIM],
            person(IMPOSTOR),
            clips[IMPOSTOR],
            random.Random(),
        )
