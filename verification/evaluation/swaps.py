"""Swap attacks: the victim's face in front of the camera when it does not matter, and an
impostor — a real, different person — answering the challenges.

Every presenter here is built from real material: the victim's photo (their clip's frame at
``photo_t``, held as :class:`~verification.evaluation.attacks.StillPhoto` holds it, with a slight
hand tremor) or the victim's own clip (looping, as
:class:`~verification.evaluation.attacks.ClipReplay`), and the impostor, a
:class:`~verification.evaluation.attacks.GenuinePresenter` of another person who answers each
prompt with their own real segments after their own reaction delay (the bench draws the plan
from the impostor's vocabulary). The impostor is asked for a frame at every ``t`` whichever face
the camera shows, so their reaction clock follows the prompts as a live person's would. Frames
are composed at the camera size and get the sensor noise once
(:func:`~verification.evaluation.attacks.add_noise`); numpy generators come from the
``random.Random`` passed in, so an attempt is reproducible from its seed.

* ``swap_pauses`` — the victim's photo whenever no prompt is on screen (baseline and every
  "hold still" pause), the impostor whenever a prompt is shown.
* ``swap_baseline`` — the victim's photo until the first prompt appears, then the impostor.
* ``swap_mid_challenge`` — the impostor in the baseline and the pauses (at neutral) and while
  performing each action, from the start of their movement until :data:`AFTER_PEAK` seconds after
  its peak (``Segment.peak``); the victim's photo in the rest of each challenge window (from the
  prompt until the impostor moves, and from just after the peak until the next pause), so that
  the still, frontal frames of each challenge are the victim's.
* ``swap_blurred`` — as ``swap_pauses``, with the impostor's whole frame blurred (Gaussian,
  σ = :data:`BLUR_SIGMA` px at 640×480). Measured with the engine (sensor noise added after the
  blur, as a camera would): the face and its landmarks are still found on every impostor clip
  (liveness can read the actions; d12's face is lost from σ ≈ 8), and the impostor's frames read
  a sharpness of 7–9 — at or below the quality gate's ``min_sharpness`` (9), against 200–300 for
  the sharp SadTalker photos — so the frames worth embedding are the victim's. The blur does
  **not** hide the impostor from the dlib embedder: their blurred face stays at similarity
  0.50–0.63 to their own photo (above the 0.4 tolerance); it takes σ ≈ 14–16 to fall below it,
  where d12's face is no longer found at all.
* ``swap_clip`` — as ``swap_pauses``, with the victim's own clip instead of their photo.
* ``second_face`` — the victim's photo in one half of the picture and the impostor's live face
  in the other, scaled to the victim's size or a bit larger; the impostor enters at a random
  time, on a random side, and in the pauses shows either their neutral face or an empty half
  (both drawn per attempt).
"""

from __future__ import annotations

import random

import cv2
import numpy as np

from verification.evaluation.attacks import (
    BACKGROUND,
    CAMERA_SIZE,
    SENSOR_NOISE,
    Clip,
    ClipReplay,
    GenuinePresenter,
    Person,
    Presenter,
    StillPhoto,
    add_noise,
)
from verification.types import Image

SWAP_KINDS = (
    "swap_pauses",
    "swap_baseline",
    "swap_mid_challenge",
    "swap_blurred",
    "swap_clip",
    "second_face",
)
TREMOR = 1.0  # pixels of hand shake of the held photo
BLUR_SIGMA = 6.0  # pixels at 640×480 (see the module docstring for what it does and does not do)
AFTER_PEAK = 0.2  # seconds the impostor stays on after their action's peak (swap_mid_challenge)
ENTER = (0.5, 3.0)  # seconds: when the second face enters (second_face)
HALF_SCALE = 0.75  # each half shows its source frame shrunk so that a whole face fits in it
LARGER = (1.0, 1.15)  # the impostor's half: the victim's scale times this


# ---- frames -----------------------------------------------------------------------------------


def blurred(image: Image, sigma: float) -> Image:
    """``image`` under a Gaussian blur of ``sigma`` pixels (0: unchanged)."""
    if sigma <= 0:
        return image
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), dtype=np.uint8)


def half_frame(image: Image, scale: float, width: int) -> Image:
    """The centre ``width`` columns of ``image`` scaled by ``scale``, at the image's height
    (padded with the background where the scaled image is smaller)."""
    height = image.shape[0]
    scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    sh, sw = scaled.shape[:2]
    cw, ch = min(width, sw), min(height, sh)
    sx, sy = (sw - cw) // 2, (sh - ch) // 2
    dx, dy = (width - cw) // 2, (height - ch) // 2
    canvas[dy : dy + ch, dx : dx + cw] = scaled[sy : sy + ch, sx : sx + cw]
    return canvas


def held_photo(photo: Image, rng: random.Random, size: tuple[int, int]) -> StillPhoto:
    """The victim's photo held in a hand, without noise (the swap adds it once)."""
    return StillPhoto(photo, rng, kind="victim_photo", tremor=TREMOR, size=size, noise=0.0)


def live_impostor(who: Person, clip: Clip, rng: random.Random) -> GenuinePresenter:
    """The impostor answering the prompts with their own segments, without noise."""
    return GenuinePresenter(who, clip, rng, kind="impostor", noise=0.0)


# ---- presenters -------------------------------------------------------------------------------


class Swap:
    """The victim or the impostor in front of the camera, frame by frame.

    Subclasses say when the impostor is shown (:meth:`impostor_shown`); ``showing`` names the
    face of the last frame (``"victim"`` or ``"impostor"``).
    """

    kind = "swap"

    def __init__(
        self,
        victim: Presenter,
        impostor: GenuinePresenter,
        rng: random.Random,
        *,
        blur: float = 0.0,
        noise: float = SENSOR_NOISE,
    ) -> None:
        self.victim = victim
        self.impostor = impostor
        self.showing = "victim"
        self._blur = blur
        self._noise = noise
        self._np = np.random.default_rng(rng.getrandbits(64))

    def impostor_shown(self, t: float, prompt: str | None) -> bool:
        """True when the impostor faces the camera at ``t`` (called after the impostor saw
        ``prompt``)."""
        raise NotImplementedError

    def frame(self, t: float, prompt: str | None) -> Image:
        """The camera frame at ``t`` while the screen shows ``prompt``."""
        own = self.impostor.frame(t, prompt)  # first: the impostor reacts to every prompt
        if self.impostor_shown(t, prompt):
            self.showing, image = "impostor", blurred(own, self._blur)
        else:
            self.showing, image = "victim", self.victim.frame(t, prompt)
        return add_noise(image, self._np, self._noise)


class SwapPauses(Swap):
    """The impostor while a prompt is shown, the victim otherwise."""

    kind = "swap_pauses"

    def impostor_shown(self, t: float, prompt: str | None) -> bool:
        """A prompt is on screen."""
        return prompt is not None


class SwapBlurred(SwapPauses):
    """As :class:`SwapPauses`, the impostor's frames blurred (built with ``blur``)."""

    kind = "swap_blurred"


class SwapClip(SwapPauses):
    """As :class:`SwapPauses`, the victim being their own looping clip."""

    kind = "swap_clip"


class SwapBaseline(Swap):
    """The victim until the first prompt appears, the impostor from then on."""

    kind = "swap_baseline"
    _prompted = False

    def impostor_shown(self, t: float, prompt: str | None) -> bool:
        """A prompt is, or has been, on screen."""
        self._prompted = self._prompted or prompt is not None
        return self._prompted


class SwapMidChallenge(Swap):
    """The impostor in the pauses and while moving to the peak of each action; the victim in
    the rest of each challenge window."""

    kind = "swap_mid_challenge"
    _prompt: str | None = None
    _since = 0.0  # when the current prompt appeared

    def impostor_shown(self, t: float, prompt: str | None) -> bool:
        """No prompt, or the impostor's answer to this prompt is under way up to its peak."""
        if prompt != self._prompt:
            self._prompt, self._since = prompt, t
        if prompt is None:
            return True
        answer = self.impostor.answer
        if answer is None or answer[0] < self._since:  # no answer to this prompt (yet)
            return False
        start, segment = answer
        peak = segment.peak if segment.peak is not None else segment.start + segment.duration / 2
        return start <= t < start + (peak - segment.start) + AFTER_PEAK


class SecondFace:
    """The victim's photo in one half of the picture, the impostor entering the other half."""

    kind = "second_face"

    def __init__(
        self,
        victim: Presenter,
        impostor: GenuinePresenter,
        rng: random.Random,
        *,
        size: tuple[int, int] = CAMERA_SIZE,
        noise: float = SENSOR_NOISE,
    ) -> None:
        self.victim = victim
        self.impostor = impostor
        self.victim_side = rng.choice(("left", "right"))
        self.enter_at = rng.uniform(*ENTER)
        self.between = rng.choice(("neutral", "empty"))  # the impostor's half in the pauses
        self._impostor_scale = HALF_SCALE * rng.uniform(*LARGER)
        self._widths = (size[0] // 2, size[0] - size[0] // 2)
        self._noise = noise
        self._np = np.random.default_rng(rng.getrandbits(64))

    def impostor_shown(self, t: float, prompt: str | None) -> bool:
        """The impostor has entered, and either a prompt is shown or they stay in the pauses."""
        return t >= self.enter_at and (prompt is not None or self.between == "neutral")

    def frame(self, t: float, prompt: str | None) -> Image:
        """Both halves side by side, with the sensor noise."""
        own = self.impostor.frame(t, prompt)
        victim_width, other_width = self._widths
        victim = half_frame(self.victim.frame(t, prompt), HALF_SCALE, victim_width)
        if self.impostor_shown(t, prompt):
            other = half_frame(own, self._impostor_scale, other_width)
        else:
            other = np.full((own.shape[0], other_width, 3), BACKGROUND, dtype=np.uint8)
        halves = (victim, other) if self.victim_side == "left" else (other, victim)
        return add_noise(np.hstack(halves), self._np, self._noise)


# ---- construction -----------------------------------------------------------------------------


def make_swap(
    kind: str,
    victim_photo: Image,
    victim_clip: Clip,
    impostor: Person,
    impostor_clip: Clip,
    rng: random.Random,
    *,
    size: tuple[int, int] = CAMERA_SIZE,
    noise: float = SENSOR_NOISE,
) -> Presenter:
    """The swap presenter ``kind`` (one of :data:`SWAP_KINDS`) of this victim and impostor.

    ``victim_clip`` is only shown by ``swap_clip``; clips are decoded at the camera ``size``.
    """
    if kind not in SWAP_KINDS:
        raise ValueError(f"unknown swap {kind!r}, expected one of {SWAP_KINDS}")
    victim: Presenter = (
        ClipReplay(victim_clip, rng, noise=0.0)
        if kind == "swap_clip"
        else held_photo(victim_photo, rng, size)
    )
    live = live_impostor(impostor, impostor_clip, rng)
    match kind:
        case "swap_pauses":
            return SwapPauses(victim, live, rng, noise=noise)
        case "swap_baseline":
            return SwapBaseline(victim, live, rng, noise=noise)
        case "swap_mid_challenge":
            return SwapMidChallenge(victim, live, rng, noise=noise)
        case "swap_blurred":
            return SwapBlurred(victim, live, rng, blur=BLUR_SIGMA, noise=noise)
        case "swap_clip":
            return SwapClip(victim, live, rng, noise=noise)
        case _:
            return SecondFace(victim, live, rng, size=size, noise=noise)
