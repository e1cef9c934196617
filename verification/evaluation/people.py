"""The real people of ``liveness_video``: where each is neutral and performs each action.

A :class:`Person` is one clip of one real person: the frame used as their photo on file, a
*neutral* stretch (still, eyes open, mouth closed or nearly) and, per action, the segments in
which they perform it. The simulator's :class:`~verification.evaluation.attacks.GenuinePresenter`
answers a prompt with one of these segments and rests on the neutral stretch in between.

Rules every segment follows (checked on the engine's own measures in
``tests/verification/test_attacks.py``; yaw > 0 is the subject's own left, as in
:mod:`verification.measures` — ``frame_metrics/*.csv`` of the shared data use the opposite sign):

* it starts and ends near the person's neutral head pose (|Δyaw| ≤ 15°, not pitched down, mouth
  not wide open): no cut into a movement;
* it contains its action clearly — a turn ≥ 20° of yaw from neutral and back; a blink with the
  eyes at ≤ 0.6 of their neutral opening and open again; an inner-lip MAR ≥ 0.35 for ≥ 0.3 s; a
  smile ≥ 1.15 × the neutral mouth width with the mouth not wide open; a nod ≥ 10° of pitch
  down and back within 2.5 s;
* and no other deliberate movement (no turn inside a smile, no opened mouth inside a turn …).
  Natural blinks and smiles may happen inside other actions, as they do in life.

The engine's yaw (10-point PnP on MediaPipe points mapped to 68) jitters on some frames of a
still head: on d12 it flips between −25° and +29° at 0.36–0.60 s, and reads −17…−20° while his
mouth is wide open at 4.8–5.3 s, where the mesh and the jaw outline show a frontal face. The
tables avoid such stretches where they can (d12's neutral ends at 0.36 s); the tests read yaw
through a 3-frame median.

A person is **usable for genuine attempts** (:attr:`Person.usable`) when their clip holds a pose
action (turn_left, turn_right or nod) and at least one other action: every plan holds a pose
action, and a 3-challenge plan never repeats an action twice in a row. :data:`PEOPLE` holds the
usable people only (benches draw genuine attempts and "another person" from it);
:data:`EXTRAS` holds people who are not usable but serve as victims (their photo, their clip)
of photo, replay and swap attacks, and for per-action figures. :data:`TALKERS` are the six GRID
speakers: they only talk, so they answer no challenge, but they are what a customer chatting with
the advisor looks like while waiting (the baseline, the pauses) and what a replayed talking head
looks like; they are in neither tuple above. No clip holds a nod.

Every clip of ``liveness_video`` (measured with the engine at 640×480, checked on contact
sheets):

=============================  ======  ================================================  =======
clip                           usable  actions / why not                                 entered
=============================  ======  ================================================  =======
liveportrait/d12               yes     smile, turn_left, turn_right, open_mouth           PEOPLE
sadtalker/WDA_KatieHill_000    yes     blink, turn_right, turn_left                       PEOPLE
sadtalker/WDA_EdMarkey0_000    yes     turn_right, blink                                  PEOPLE
sadtalker/RD_Radio2_000        no      turn_right only (from her angled neutral, +31°);   EXTRAS
                                       her blinks fall inside the swings, her mouth
                                       opens for 0.24 s only
sadtalker/RD_Radio34_000       no      turn_left only; her turn right reaches −19°, her   EXTRAS
                                       wide mouth at 3.4–3.8 s is speech (+0.2 MAR)
sadtalker/WDA_BobMenendez_000  no      blink only: speech, head within ±8°                EXTRAS
liveportrait/d5                no      open_mouth, smile: no head movement                EXTRAS
liveportrait/d18               no      open_mouth (twice): head within +5…+17°            EXTRAS
liveportrait/d7                no      blink; winks, squeeze, wide eyes, no head motion   EXTRAS
liveportrait/d8                no      smile; frown, twist, pout, no head motion, mouth   EXTRAS
                                       never open (MAR ≤ 0.34)
liveportrait/d9                no      blinks; lip puckers and twists, head within ±6°    EXTRAS
                                       (the measured yaw swings to −24° with the lips)
blink_detector/video           no      blinks (8 closures), no head motion                EXTRAS
liveportrait/d0                no      eyes left/right, a smile, one blink; head ±10°     no
liveportrait/d1                no      0.5 s: one slow blink, no neutral stretch          no
liveportrait/d2                no      0.5 s: eyes close at the end and never reopen      no
liveportrait/s18               no      still at yaw +30° with two blinks; small face      no
liveportrait/s20               no      tiny face (portrait video), a slow head lift and   no
                                       turn (−28° → −7°) without return, blinks
grid/bbaf2n, brbk7n,           no      3-s talking heads at 360×288: speech and natural   TALKERS
id2_vcd_swwp2s, lbax4n,                blinks, head within ±7° (bbaf2n sits at +24°,
lbbc2a, lrwp9a                         brbk7n −16°, lbbc2a −19°)
=============================  ======  ================================================  =======
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ACTIONS = ("blink", "turn_left", "turn_right", "open_mouth", "smile", "nod")
POSE_ACTIONS = frozenset({"turn_left", "turn_right", "nod"})


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch ``[start, end)`` (seconds) of one clip; ``peak``: when its action first
    reaches 80 % of its extreme (what a detector credits), if recorded."""

    start: float
    end: float
    peak: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"invalid segment {self.start}–{self.end}")
        if self.peak is not None and not self.start <= self.peak < self.end:
            raise ValueError(f"peak {self.peak} outside segment {self.start}–{self.end}")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Person:
    """A real person's clip and where in it they are neutral and perform each action.

    Turn directions are the subject's own (``turn_left``: the subject turns to their left, the
    nose moves to the image's right in an unmirrored camera picture). ``neutral_yaw`` is the
    engine's median yaw over the neutral stretch (people sit at an angle: it is recorded, not
    required to be 0).
    """

    name: str
    clip: str  # relative to the shared data folder
    photo_t: float  # the frame used as this person's photo (reference on file, photo attacks)
    neutral: Segment
    actions: Mapping[str, tuple[Segment, ...]] = field(default_factory=dict)
    neutral_yaw: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.actions) - set(ACTIONS)
        if unknown:
            raise ValueError(f"unknown actions {sorted(unknown)} for {self.name}")

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The actions this person's clip contains, in :data:`ACTIONS` order."""
        return tuple(a for a in ACTIONS if self.actions.get(a))

    @property
    def usable(self) -> bool:
        """True when genuine attempts can be drawn for this person: a pose action and another."""
        held = set(self.vocabulary)
        return bool(held & POSE_ACTIONS) and len(held) >= 2


def _seg(start: float, end: float, peak: float | None = None) -> Segment:
    return Segment(start, end, peak)


# Found from annotations_auto.json and frame_metrics, then measured with the engine at 640×480
# (every frame) and checked on contact sheets. Yaw figures are the engine's (degrees).
PEOPLE: tuple[Person, ...] = (
    Person(
        name="liveportrait-d12",
        clip="liveness_video/liveportrait/d12.mp4",
        photo_t=0.0,
        # He says "oh" at 0.24 s (MAR 0.26): a real person waiting, kept. From 0.36 s the
        # engine's yaw flips between −25° and +29° on his still face: not part of the neutral.
        neutral=_seg(0.0, 0.36),
        neutral_yaw=-6.2,
        actions={
            # A broad grin (×1.28 of the neutral mouth width, MAR ≤ 0.30). He keeps grinning
            # into his left turn, so the segment ends on the smile, before the turn (1.12 s).
            "smile": (_seg(0.62, 1.10, 0.80),),
            # Laughing, he turns to his left: +43° from neutral (a blink at 1.92–2.04 s, turned).
            "turn_left": (_seg(1.08, 2.44, 1.32),),
            # −31°, back to neutral by 4.3 s (an "oh" of 0.16 s on the way back).
            "turn_right": (_seg(2.94, 4.30, 3.16),),
            "open_mouth": (_seg(4.50, 5.34, 4.76),),  # a wide "O", MAR 0.86; ends before a wink
        },
    ),
    Person(
        name="sadtalker-katiehill",
        clip="liveness_video/sadtalker/WDA_KatieHill_000.mp4",
        # Was 4.0 s, where she has begun a smile (mouth 1.15 × her neutral width, 1.02 × her
        # eye distance: over the attempt's neutral limit 0.95). At 3.8 s her mouth is closed.
        photo_t=3.8,
        neutral=_seg(3.76, 4.44),  # talking softly (MAR ≤ 0.27), still: yaw +1.3
        neutral_yaw=1.3,
        actions={
            # Her mouth opening at 0.9–1.3 s is speech with a smile (+0.2 MAR over her talking
            # level), not an opened mouth: not offered. Her blink right after the neutral is
            # clean (EAR 0.43 of neutral).
            "blink": (_seg(4.40, 4.84, 4.48),),
            # −35°, held ~2 s, back to centre. It starts in a blink with the head lifted 15°
            # (SadTalker's jerk), kept from the original table.
            "turn_right": (_seg(1.28, 3.80, 1.40),),
            # +18° at 6.1–6.6 s, back to +8°, then +30° at 6.9–7.5 s and back to centre by the
            # clip's end (the earlier 6.8–7.8 s cut into the turn at both ends).
            "turn_left": (_seg(5.90, 7.96, 6.92),),
        },
    ),
    Person(
        name="sadtalker-edmarkey",
        clip="liveness_video/sadtalker/WDA_EdMarkey0_000.mp4",
        photo_t=0.96,
        # Frontal, mouth closed: the stillest stretch of a speaker who mostly sits 10–15° to
        # his right (the measured pitch jitters ±7° there, the mesh does not).
        neutral=_seg(0.88, 1.40),
        neutral_yaw=3.3,
        actions={
            # −29° at 2.6 s, then a slow return while speaking (short "oh"s, MAR ≥ 0.35 for
            # 0.2 s at most) to the front at 4.96 s.
            "turn_right": (_seg(2.24, 4.98, 2.56),),
            "blink": (_seg(4.96, 5.32, 5.04),),  # a quick blink, EAR 0.54 of neutral
        },
    ),
)

EXTRAS: tuple[Person, ...] = (
    Person(
        name="sadtalker-radio2",
        clip="liveness_video/sadtalker/RD_Radio2_000.mp4",
        photo_t=3.04,  # the only frontal, sharp moments are mid-swing (3.04 s, 7.4 s)
        neutral=_seg(1.12, 1.68),  # she sits turned to her left: yaw +31.6
        neutral_yaw=31.6,
        actions={"turn_right": (_seg(1.68, 2.44, 1.96), _seg(2.84, 3.48, 3.08))},  # −47°, −40°
    ),
    Person(
        name="sadtalker-radio34",
        clip="liveness_video/sadtalker/RD_Radio34_000.mp4",
        photo_t=4.40,
        neutral=_seg(4.28, 4.60),  # head tilted (roll 13°), mouth nearly closed
        neutral_yaw=-2.0,
        actions={"turn_left": (_seg(0.0, 1.40, 0.52),)},  # +30°
    ),
    Person(
        name="sadtalker-bobmenendez",
        clip="liveness_video/sadtalker/WDA_BobMenendez_000.mp4",
        photo_t=5.76,
        neutral=_seg(5.52, 6.12),
        neutral_yaw=-0.4,
        actions={"blink": (_seg(6.08, 6.44, 6.12),)},  # EAR 0.40; the head lifts ~10° with it
    ),
    Person(
        name="liveportrait-d5",
        clip="liveness_video/liveportrait/d5.mp4",
        photo_t=0.5,
        neutral=_seg(0.0, 1.10),
        neutral_yaw=0.4,
        actions={
            "open_mouth": (_seg(2.00, 3.36, 2.33),),  # an "O", MAR 1.08, then a blink
            "smile": (_seg(3.36, 4.93, 3.67),),  # broad, with teeth (×1.24); eyes narrow
        },
    ),
    Person(
        name="liveportrait-d18",
        clip="liveness_video/liveportrait/d18.mp4",
        photo_t=1.8,
        neutral=_seg(1.50, 2.00),  # sits slightly to his left: yaw +10.8
        neutral_yaw=10.8,
        actions={"open_mouth": (_seg(2.00, 3.36, 2.23), _seg(3.70, 5.30, 4.07))},
    ),
    Person(
        name="liveportrait-d7",
        clip="liveness_video/liveportrait/d7.mp4",
        photo_t=0.5,
        neutral=_seg(0.30, 0.70),
        neutral_yaw=4.3,
        actions={"blink": (_seg(2.15, 2.95, 2.30),)},  # both eyes shut 2.3–2.77 s
    ),
    Person(
        name="liveportrait-d8",
        clip="liveness_video/liveportrait/d8.mp4",
        photo_t=2.0,
        neutral=_seg(1.90, 2.45),
        neutral_yaw=-0.6,
        actions={"smile": (_seg(6.65, 7.60, 6.87),)},  # ×1.48, teeth showing
    ),
    Person(
        name="liveportrait-d9",
        clip="liveness_video/liveportrait/d9.mp4",
        photo_t=0.9,
        neutral=_seg(0.70, 1.15),
        neutral_yaw=-5.3,
        actions={"blink": (_seg(0.25, 0.80, 0.37), _seg(1.10, 1.80, 1.23))},
    ),
    Person(
        name="blinkdetector-selfie",
        clip="liveness_video/blink_detector/video.mp4",
        photo_t=3.0,
        neutral=_seg(2.00, 3.30),
        neutral_yaw=2.3,
        actions={"blink": (_seg(0.20, 0.80, 0.43), _seg(3.30, 3.80, 3.49), _seg(9.0, 9.6, 9.27))},
    ),
)

EVERYONE: tuple[Person, ...] = PEOPLE + EXTRAS

# The GRID speakers (3 s each, 25 fps): a sentence from the first frames on, no action a
# challenge asks for. The photo is their frame at 0.2 s (frontal, before the first word); the
# "neutral" stretch is nominal (nobody answers challenges with these clips).
TALKERS: tuple[Person, ...] = tuple(
    Person(
        name=f"grid-{stem}",
        clip=f"liveness_video/grid/{stem}.mpg",
        photo_t=0.2,
        neutral=_seg(0.0, 0.4),
    )
    for stem in ("bbaf2n", "brbk7n", "id2_vcd_swwp2s", "lbax4n", "lbbc2a", "lrwp9a")
)


def person(name: str) -> Person:
    """The entry of :data:`PEOPLE`, :data:`EXTRAS` or :data:`TALKERS` called ``name``."""
    for entry in EVERYONE + TALKERS:
        if entry.name == name:
            return entry
    raise KeyError(f"no person {name!r}; known: {[p.name for p in EVERYONE + TALKERS]}")
