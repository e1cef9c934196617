"""Which frames of an attempt are tied to the matched identity (issue 11: identity bound to every
frame that counts).

An attempt is cut into *segments*: the baseline, then for each challenge its "hold still" pause
and its instruction window. The :class:`FramePicker` chooses, as the frames arrive:

* for every segment, one frame **at random** among its checkable frames (reservoir sampling with
  the operating system's CSPRNG): an attacker cannot know which frame of a pause or of the
  baseline will be compared with the reference, so a photo held only in the pauses is caught;
* for every challenge, the frame that **met** it (the movement itself) and the **best** frame of
  its window (biggest, sharpest face from the instruction to the movement), so the frames that
  prove liveness are the frames that are matched, and the evidence's best frames are frames in
  which a challenge was met.

Only *checkable* frames are ever picked (one face, big and sharp enough, see
``verification.verdict.checkable``): a frame that cannot be checked never counts. The picker is
pure bookkeeping over frame ids; the caller keeps the images of :attr:`FramePicker.keep` and
embeds each :class:`BoundFrame` once it is final.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from random import Random


class Role(StrEnum):
    """Why a frame is bound."""

    MET = "met"  # the frame at which a challenge was met
    BEST = "best"  # the best frame of a challenge's window
    RANDOM = "random"  # drawn at random from a segment


@dataclass(frozen=True, slots=True)
class BoundFrame:
    """A frame whose face must be the reference's (caller's frame id, time, why, where)."""

    frame: int
    t: float
    role: Role
    segment: str  # "baseline", "pause-1", "challenge-1", … (1-based, as the customer counts)
    index: int | None = None  # the challenge's 0-based index (None for the baseline)


@dataclass(slots=True)
class _Candidate:
    frame: int
    t: float
    score: float = 0.0


class FramePicker:
    """Chooses the bound frames of one attempt (see the module docstring)."""

    def __init__(self, rng: Random | None = None) -> None:
        self._rng = rng or secrets.SystemRandom()
        self._segment: str | None = None
        self._index: int | None = None
        self._seen = 0  # checkable frames offered in the open segment
        self._random: _Candidate | None = None
        self._best: _Candidate | None = None
        self._final: list[BoundFrame] = []

    @property
    def segment(self) -> str | None:
        """The open segment, if any."""
        return self._segment

    @property
    def final(self) -> tuple[BoundFrame, ...]:
        """Bound frames that will not change any more, in the order they became final."""
        return tuple(self._final)

    @property
    def keep(self) -> frozenset[int]:
        """Frame ids whose images the caller must keep: final ones and open candidates."""
        ids = {b.frame for b in self._final}
        ids |= {c.frame for c in (self._random, self._best) if c is not None}
        return frozenset(ids)

    def open(self, segment: str, index: int | None = None) -> None:
        """Close the open segment (its random pick becomes final) and start ``segment``."""
        self.close()
        self._segment, self._index = segment, index
        self._seen = 0
        self._random = self._best = None

    def offer(self, frame: int, t: float, checkable: bool, score: float = 0.0) -> None:
        """A frame of the open segment; ``score`` ranks it for the challenge's best frame."""
        if self._segment is None or not checkable:
            return
        self._seen += 1
        if self._rng.random() * self._seen < 1.0:  # keeps each frame with probability 1/seen
            self._random = _Candidate(frame, t)
        if self._index is not None and self._segment.startswith("challenge"):
            if self._best is None or score > self._best.score:
                self._best = _Candidate(frame, t, score)

    def met(self, frame: int, t: float) -> None:
        """The open challenge was met at ``frame`` (itself offered and checkable)."""
        if self._segment is None or self._index is None:
            raise ValueError("no challenge is open")
        self._bind(_Candidate(frame, t), Role.MET)
        if self._best is not None and self._best.frame != frame:
            self._bind(self._best, Role.BEST)
        self._best = None

    def close(self) -> None:
        """Close the open segment: its random pick (if any checkable frame came) is final."""
        if self._segment is not None and self._random is not None:
            already = {b.frame for b in self._final}
            if self._random.frame not in already:
                self._bind(self._random, Role.RANDOM)
        self._segment = None
        self._random = self._best = None

    def _bind(self, candidate: _Candidate, role: Role) -> None:
        if self._segment is None:
            raise ValueError("no segment is open")
        self._final.append(
            BoundFrame(candidate.frame, candidate.t, role, self._segment, self._index)
        )
