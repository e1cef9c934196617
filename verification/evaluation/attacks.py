"""Presentations for the liveness simulator, built from real material (``shared/data``).

A *presenter* is what stands in front of the camera. The simulator asks it for the camera frame
at time ``t`` (seconds since the attempt started) and tells it which challenge the screen shows
(``prompt``: an action name of :data:`ACTIONS` or ``None``). Every frame goes through
:func:`fit_to_camera`: fitted into the camera's size (default 640×480) on a grey background, with
slight Gaussian sensor noise so that no two frames are byte-identical (a real sensor never
delivers the same bytes twice, so frame hashes differ even for a still photo).

* :class:`GenuinePresenter` answers each new prompt after a human reaction delay (0.5–1.5 s)
  with a real segment of a real clip in which that person performs that action (the table of
  people is :mod:`verification.evaluation.people`, re-exported here: :data:`PEOPLE`,
  :class:`Person`, :class:`Segment`, :func:`person`), with real neutral frames of the same clip
  in between.
* :class:`StillPhoto` — the enrolled person's photo held still (attack a; with ``tremor`` the
  screen-replay photo ``image_F2.jpg`` held in a hand, attack e).
* :class:`MovedSheet` — the photo moved as a flat sheet: each frame is an exact homography of
  the photo, the projection of a plane turning (yaw/pitch) and shifting in front of a pinhole
  camera (attack b).
* :class:`ClipReplay` — a recorded clip of the person played from its start and looped,
  regardless of the prompts (attack c).
* A different person answering correctly (attack d) is a :class:`GenuinePresenter` of another
  entry of :data:`PEOPLE`, enrolled under the first person's reference.
* Swaps (the victim's photo or clip in front of the camera when it does not matter, an impostor
  answering the challenges) are in :mod:`verification.evaluation.swaps`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np
import numpy.typing as npt

from verification.evaluation.people import ACTIONS as ACTIONS
from verification.evaluation.people import EVERYONE as EVERYONE
from verification.evaluation.people import EXTRAS as EXTRAS
from verification.evaluation.people import PEOPLE as PEOPLE
from verification.evaluation.people import TALKERS as TALKERS
from verification.evaluation.people import Person as Person
from verification.evaluation.people import Segment as Segment
from verification.evaluation.people import person as person
from verification.types import Image

CAMERA_SIZE = (640, 480)  # width, height
BACKGROUND = 118  # grey wall behind the presented material
SENSOR_NOISE = 1.5  # standard deviation of the sensor noise, grey levels
REACTION = (0.5, 1.5)  # seconds between a prompt and the start of the customer's movement
SETTLE = (0.1, 0.4)  # seconds at neutral between finishing one movement and starting the next
Homography = npt.NDArray[np.float64]


# ---- frames -----------------------------------------------------------------------------------


def fit_to_camera(image: Image, size: tuple[int, int] = CAMERA_SIZE) -> Image:
    """``image`` scaled to fit ``size`` (width, height), centred on a grey background."""
    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return canvas


def add_noise(image: Image, rng: np.random.Generator, sigma: float = SENSOR_NOISE) -> Image:
    """``image`` with Gaussian sensor noise (``sigma`` 0: unchanged copy)."""
    if sigma <= 0:
        return image.copy()
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class Clip:
    """Decoded RGB frames of a clip with their timestamps (seconds)."""

    times: tuple[float, ...]
    frames: tuple[Image, ...] = field(repr=False)

    @property
    def duration(self) -> float:
        """Time of the last frame plus one frame interval."""
        if len(self.times) < 2:
            return 0.0
        return self.times[-1] + (self.times[-1] - self.times[0]) / (len(self.times) - 1)

    def at(self, t: float) -> Image:
        """The frame shown at clip time ``t`` (the last one starting at or before ``t``)."""
        index = int(np.searchsorted(np.asarray(self.times), t + 1e-6, side="right")) - 1
        return self.frames[min(max(index, 0), len(self.frames) - 1)]


def load_clip(path: Path, size: tuple[int, int] = CAMERA_SIZE) -> Clip:
    """Decode ``path`` (PyAV), every frame fitted to the camera ``size``."""
    times: list[float] = []
    frames: list[Image] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        for i, frame in enumerate(container.decode(stream)):
            times.append(float(frame.time) if frame.time is not None else i / rate)
            frames.append(
                fit_to_camera(np.asarray(frame.to_ndarray(format="rgb24"), np.uint8), size)
            )
    if not frames:
        raise ValueError(f"no frames in {path}")
    start = times[0]
    return Clip(tuple(t - start for t in times), tuple(frames))


def read_photo(path: Path) -> Image:
    """A still image as RGB, upright (OpenCV applies the EXIF orientation, e.g. image_F2.jpg)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


# ---- presenters -------------------------------------------------------------------------------


class Presenter(Protocol):
    """Whatever stands in front of the camera."""

    kind: str

    def frame(self, t: float, prompt: str | None) -> Image:
        """The camera frame at ``t`` seconds while the screen shows ``prompt``."""
        ...


def play(presenter: Presenter, fps: float, duration: float) -> Iterator[tuple[float, Image]]:
    """``(t, frame)`` at ``fps`` for ``duration`` seconds with no prompt shown."""
    for i in range(math.ceil(duration * fps)):
        t = i / fps
        yield t, presenter.frame(t, None)


class StillPhoto:
    """A photo held in front of the camera; ``tremor`` px of hand shake (0: on a stand)."""

    def __init__(
        self,
        photo: Image,
        rng: random.Random,
        *,
        kind: str = "photo_still",
        tremor: float = 0.0,
        size: tuple[int, int] = CAMERA_SIZE,
        noise: float = SENSOR_NOISE,
    ) -> None:
        self.kind = kind
        self.source = fit_to_camera(photo, size)
        self._tremor = tremor
        self._noise = noise
        self._np = np.random.default_rng(rng.getrandbits(64))
        self._phase = rng.uniform(0, 2 * math.pi)

    def frame(self, t: float, prompt: str | None) -> Image:
        """The photo (shifted by the tremor) with sensor noise; ``prompt`` is ignored."""
        image = self.source
        if self._tremor > 0:
            dx = self._tremor * math.sin(2 * math.pi * 1.3 * t + self._phase)
            dy = self._tremor * math.cos(2 * math.pi * 0.9 * t + self._phase)
            shift = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
            size = (image.shape[1], image.shape[0])
            moved = cv2.warpAffine(image, shift, size, borderValue=(BACKGROUND,) * 3)
            image = np.asarray(moved, dtype=np.uint8)
        return add_noise(image, self._np, self._noise)


def plane_homography(
    yaw_deg: float, pitch_deg: float, shift: tuple[float, float], size: tuple[int, int]
) -> Homography:
    """Image-to-image homography of a flat sheet filling the frame, rotated and shifted.

    The sheet is the plane z = f (f = image width, a normal webcam's focal length) seen by a
    pinhole camera; it is rotated about its centre by ``yaw`` (around the vertical axis) and
    ``pitch`` (around the horizontal axis) and moved by ``shift`` pixels in the image plane.
    """
    width, height = size
    focal = float(width)
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    rot_y = np.array(
        [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
    )
    rot_x = np.array(
        [[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]]
    )
    rotation = rot_y @ rot_x
    centre = np.array([0.0, 0.0, focal])
    normal = np.array([0.0, 0.0, 1.0])
    # Points X on the sheet (z = f) map to R (X - c) + c + s; for a plane n·X = f the map is the
    # 3×3 matrix R + (c + s - R c) nᵀ / f in camera coordinates.
    translation = centre - rotation @ centre + np.array([shift[0], shift[1], 0.0]) * 1.0
    moved = rotation + np.outer(translation, normal) / focal
    homography = camera @ moved @ np.linalg.inv(camera)
    return np.asarray(homography / homography[2, 2], dtype=np.float64)


class MovedSheet:
    """A photo moved as a flat sheet: tilted, turned and shifted (a plane's homography)."""

    def __init__(
        self,
        photo: Image,
        rng: random.Random,
        *,
        max_yaw: float = 30.0,
        max_pitch: float = 15.0,
        max_shift: float = 40.0,
        size: tuple[int, int] = CAMERA_SIZE,
        noise: float = SENSOR_NOISE,
    ) -> None:
        self.kind = "photo_moved"
        self.source = fit_to_camera(photo, size)
        self._size = size
        self._noise = noise
        self._np = np.random.default_rng(rng.getrandbits(64))
        self._amp = (max_yaw, max_pitch, max_shift)
        self._freq = (rng.uniform(0.2, 0.45), rng.uniform(0.15, 0.35), rng.uniform(0.1, 0.3))
        self._phase = tuple(rng.uniform(0, 2 * math.pi) for _ in range(3))

    def homography(self, t: float) -> Homography:
        """Where the sheet is at ``t``: smooth, slow turns (a hand turning a print)."""
        yaw, pitch, shift = (
            a * math.sin(2 * math.pi * f * t + p)
            for a, f, p in zip(self._amp, self._freq, self._phase, strict=True)
        )
        return plane_homography(yaw, pitch, (shift, 0.4 * shift), self._size)

    def frame(self, t: float, prompt: str | None) -> Image:
        """The warped sheet with sensor noise; ``prompt`` is ignored."""
        warped = cv2.warpPerspective(
            self.source, self.homography(t), self._size, borderValue=(BACKGROUND,) * 3
        )
        return add_noise(np.asarray(warped, dtype=np.uint8), self._np, self._noise)


class ClipReplay:
    """A recorded clip played from its start and looped, whatever the screen asks."""

    def __init__(
        self, clip: Clip, rng: random.Random, *, kind: str = "replay", noise: float = SENSOR_NOISE
    ) -> None:
        self.kind = kind
        self._clip = clip
        self._noise = noise
        self._np = np.random.default_rng(rng.getrandbits(64))

    def frame(self, t: float, prompt: str | None) -> Image:
        """The clip's frame at ``t`` modulo its length."""
        return add_noise(self._clip.at(t % self._clip.duration), self._np, self._noise)


class GenuinePresenter:
    """A real person answering each prompt with a real segment of their clip.

    On a new prompt the person waits a reaction delay drawn from ``reaction`` seconds (and, if
    still performing the previous action, finishes it and rests a moment at neutral first), then
    plays one of their segments for that action from its start to its end, then returns to their
    neutral segment (played forwards and backwards, so the motion stays continuous). A prompt
    for an action the clip does not contain gets no answer (neutral frames). During the attempt's
    "hold still" pause before each instruction the screen shows no prompt (``None``): the person
    finishes any movement under way, then rests at neutral, and never anticipates the action.
    """

    def __init__(
        self,
        who: Person,
        clip: Clip,
        rng: random.Random,
        *,
        kind: str = "genuine",
        reaction: tuple[float, float] = REACTION,
        noise: float = SENSOR_NOISE,
    ) -> None:
        self.kind = kind
        self.person = who
        self._clip = clip
        self._rng = rng
        self._reaction = reaction
        self._noise = noise
        self._np = np.random.default_rng(rng.getrandbits(64))
        self._prompt: str | None = None
        self._answer: tuple[float, Segment] | None = None  # (start time, segment)
        self.answers: list[tuple[str, float, Segment]] = []  # (action, start t, segment)

    def _on_prompt(self, t: float, prompt: str | None) -> None:
        if prompt == self._prompt:
            return
        self._prompt = prompt
        segments = self.person.actions.get(prompt or "", ())
        if not segments:
            return
        # A new prompt often appears while the previous movement is still under way (the
        # action counted at its peak): the person finishes it, back to neutral, then answers.
        start = t + self._rng.uniform(*self._reaction)
        if self._answer is not None:
            busy_until = self._answer[0] + self._answer[1].duration
            start = max(start, busy_until + self._rng.uniform(*SETTLE))
        segment = self._rng.choice(segments)
        self._answer = (start, segment)
        self.answers.append((prompt or "", start, segment))

    @property
    def answer(self) -> tuple[float, Segment] | None:
        """(start time, segment) of the latest answer, None before the first one."""
        return self._answer

    def source_time(self, t: float) -> float:
        """The clip time shown at attempt time ``t`` (after the prompts seen so far)."""
        if self._answer is not None:
            start, segment = self._answer
            if start <= t < start + segment.duration:
                return segment.start + (t - start)
        neutral = self.person.neutral
        period = 2 * neutral.duration
        phase = t % period
        offset = phase if phase < neutral.duration else period - phase
        return neutral.start + offset

    def frame(self, t: float, prompt: str | None) -> Image:
        """The frame at ``t``; ``prompt`` is what the screen shows now."""
        self._on_prompt(t, prompt)
        return add_noise(self._clip.at(self.source_time(t)), self._np, self._noise)


def photo_of(who: Person, clip: Clip) -> Image:
    """The person's photo: their clip's frame at ``photo_t`` (without the camera's noise)."""
    return clip.at(who.photo_t).copy()


def vocabulary_of(people: Sequence[Person]) -> tuple[str, ...]:
    """Actions every one of ``people`` can perform."""
    common = set(ACTIONS)
    for entry in people:
        common &= set(entry.vocabulary)
    return tuple(a for a in ACTIONS if a in common)
