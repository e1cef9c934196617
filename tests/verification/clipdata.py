"""Real clip frames and their 68 dlib landmarks, for liveness tests and the evaluation tools.

Each clip is decoded with PyAV, optionally subsampled (``step``) and downscaled so its longest
side is ``max_side`` pixels (the landmarks are in the pixels of that downscaled frame). Faces are
found with dlib's HOG detector, searched first near the previous frame's face (what a live engine
does to stay within its time budget), then in the whole frame; the 68-point shape predictor runs
on the detector's box. A frame in which no face is found has ``None`` landmarks.

``load_clip`` is a plain function; ``cached_clip`` memoises it for the whole test session, so every
test module (and the evaluation tests) decodes and landmarks each clip once.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Points = npt.NDArray[np.float32]

# The clips named in ``liveness_video/README`` (relative to the shared data folder).
BLINK = "liveness_video/blink_detector/video.mp4"
D0 = "liveness_video/liveportrait/d0.mp4"
D9 = "liveness_video/liveportrait/d9.mp4"
D12 = "liveness_video/liveportrait/d12.mp4"
D18 = "liveness_video/liveportrait/d18.mp4"
S18 = "liveness_video/liveportrait/s18.mp4"
S20 = "liveness_video/liveportrait/s20.mp4"
SADTALKER = "liveness_video/sadtalker/WDA_KatieHill_000.mp4"


@dataclass(frozen=True, slots=True)
class ClipFrames:
    """Timestamps, landmarks (or ``None``) and hashes of the analysed frames of one clip."""

    name: str
    fps: float  # of the analysed sequence (source fps / step)
    size: tuple[int, int]  # (width, height) of the analysed frames
    times: tuple[float, ...]
    landmarks: tuple[Points | None, ...] = field(repr=False)
    hashes: tuple[str, ...] = field(repr=False)
    images: tuple[Image, ...] = field(default=(), repr=False)  # kept only if asked for

    def __post_init__(self) -> None:
        if not len(self.times) == len(self.landmarks) == len(self.hashes):
            raise ValueError("times, landmarks and hashes must have one entry per frame")

    def index_at(self, t: float) -> int:
        """Index of the frame nearest to time ``t`` (seconds from the clip's start)."""
        return int(np.argmin(np.abs(np.asarray(self.times) - t)))

    def span(self, t0: float, t1: float) -> range:
        """Indices of the frames with ``t0 <= t < t1``."""
        times = np.asarray(self.times)
        idx = np.nonzero((times >= t0) & (times < t1))[0]
        return range(int(idx[0]), int(idx[-1]) + 1) if len(idx) else range(0)

    @property
    def face_fraction(self) -> float:
        """Share of frames with landmarks."""
        return sum(p is not None for p in self.landmarks) / max(1, len(self.landmarks))


def decode(path: Path, step: int = 1, max_side: int = 480) -> Iterator[tuple[float, Image]]:
    """``(t, RGB frame)`` for every ``step``-th frame, downscaled to ``max_side`` at most."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i % step:
                continue
            t = float(frame.time) if frame.time is not None else i / float(stream.average_rate)
            scale = min(1.0, max_side / max(frame.width, frame.height))
            small = frame.reformat(
                width=round(frame.width * scale),
                height=round(frame.height * scale),
                format="rgb24",
                interpolation="AREA",
            )
            yield t, small.to_ndarray()


def downscale(rgb: Image, max_side: int) -> Image:
    """``rgb`` shrunk (INTER_AREA) so that its longest side is at most ``max_side``."""
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (round(w * scale), round(h * scale))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


class Landmarker:
    """dlib HOG detector + 68-point predictor, tracking the face between frames.

    After the first detection, each frame is searched only in a window around the previous
    face, shrunk so that the face is ~100 px wide (the HOG detector's sweet spot): a small
    image, so detection costs a few milliseconds instead of tens.
    """

    def __init__(self) -> None:
        # Imported here: heavy, and only the tests that need landmarks pay for it.
        import dlib
        import face_recognition_models

        self._dlib: Any = dlib
        self._detector: Any = dlib.get_frontal_face_detector()
        self._predictor: Any = dlib.shape_predictor(
            face_recognition_models.pose_predictor_model_location()
        )
        self._last: Points | None = None

    def reset(self) -> None:
        """Forget the tracked face (start of a new clip)."""
        self._last = None

    def detect(self, rgb: Image) -> Points | None:
        """Landmarks of the largest face found anywhere in ``rgb``."""
        rects = list(self._detector(rgb, 0)) or list(self._detector(rgb, 1))
        if not rects:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        return self._shape(rgb, rect)

    def __call__(self, rgb: Image) -> Points | None:
        """Landmarks of the main face in this frame of a sequence."""
        pts = self._near_last(rgb)
        if pts is None:
            pts = self.detect(rgb)
        self._last = pts
        return pts

    def _near_last(self, rgb: Image) -> Points | None:
        if self._last is None:
            return None
        cx, cy = self._last.mean(axis=0)
        side = 2.4 * float(np.ptp(self._last[:, 0]))
        h, w = rgb.shape[:2]
        x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
        x1, y1 = min(w, round(cx + side / 2)), min(h, round(cy + side / 2))
        scale = min(1.0, 240 / side)
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        if scale < 1:
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            crop = np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
        rects = list(self._detector(crop, 0))
        if not rects:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        rect = self._dlib.rectangle(
            round(x0 + r.left() / scale),
            round(y0 + r.top() / scale),
            round(x0 + r.right() / scale),
            round(y0 + r.bottom() / scale),
        )
        return self._shape(rgb, rect)

    def _shape(self, rgb: Image, rect: Any) -> Points:
        shape = self._predictor(rgb, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def frame_hash(rgb: Image) -> str:
    """SHA-256 of the pixels (what the engine stores as evidence of an analysed frame)."""
    return hashlib.sha256(rgb.tobytes()).hexdigest()


def load_clip(
    path: Path,
    *,
    step: int = 1,
    max_side: int = 480,
    keep_images: bool = False,
    seconds: float | None = None,
    landmarker: Landmarker | None = None,
) -> ClipFrames:
    """Decode ``path`` and find the main face's 68 landmarks in every analysed frame."""
    marker = landmarker or Landmarker()
    marker.reset()
    times: list[float] = []
    marks: list[Points | None] = []
    hashes: list[str] = []
    images: list[Image] = []
    size = (0, 0)
    fps = _fps(path)
    for t, rgb in decode(path, step, max_side):
        if seconds is not None and t >= seconds:
            break
        size = (rgb.shape[1], rgb.shape[0])
        times.append(t)
        marks.append(marker(rgb))
        hashes.append(frame_hash(rgb))
        if keep_images:
            images.append(rgb)
    return ClipFrames(
        name=path.name,
        fps=fps / step,
        size=size,
        times=tuple(times),
        landmarks=tuple(marks),
        hashes=tuple(hashes),
        images=tuple(images),
    )


def read_frame(path: Path, t: float, max_side: int = 480) -> Image:
    """The frame nearest to time ``t`` (seconds), downscaled like ``load_clip``'s."""
    best: tuple[float, Image] | None = None
    for ft, rgb in decode(path, 1, max_side):
        if best is None or abs(ft - t) < abs(best[0] - t):
            best = (ft, rgb)
        elif ft > t:
            break
    if best is None:
        raise ValueError(f"no frames in {path}")
    return best[1]


def _fps(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate or 25)


def data_root() -> Path:
    """``../shared/data`` (or ``CLOUDBRANCH_SHARED_DATA``)."""
    here = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", here.parent / "shared" / "data"))


@functools.cache
def cached_clip(name: str, step: int = 2, max_side: int = 480) -> ClipFrames:
    """``load_clip`` of ``data_root() / name``, computed once per test session (read-only)."""
    path = data_root() / name
    if not path.is_file():
        raise FileNotFoundError(f"real test clip missing: {path}")
    return load_clip(path, step=step, max_side=max_side, landmarker=_shared_landmarker())


@functools.cache
def _shared_landmarker() -> Landmarker:
    return Landmarker()


# -- scripted faces: one real neutral face, edited like a customer following instructions -------

NEUTRAL_AT = 0.3  # seconds into the SadTalker clip: a frontal, neutral face
TURN_RIGHT_AT = 2.0  # the customer's right: nose towards the image's left (yaw ≈ -24°)
TURN_LEFT_AT = 7.1  # the customer's left: nose towards the image's right (yaw ≈ +23°)


def real_face(t: float) -> tuple[Points, tuple[int, int]]:
    """Landmarks of the SadTalker clip at ``t`` and the frame size."""
    clip = cached_clip(SADTALKER)
    pts = clip.landmarks[clip.index_at(t)]
    if pts is None:
        raise ValueError(f"no face at {t} s in {SADTALKER}")
    return pts, clip.size


def eyes_closed(pts: Points, factor: float = 0.25) -> Points:
    """``pts`` with both eyes squeezed vertically towards their centre line."""
    out = pts.copy()
    for eye in (slice(36, 42), slice(42, 48)):
        centre = out[eye, 1].mean()
        out[eye, 1] = centre + (out[eye, 1] - centre) * factor
    return out


def mouth_open(pts: Points, amount: float = 0.6) -> Points:
    """``pts`` with the lower lip and chin dropped by ``amount`` mouth widths."""
    out = pts.copy()
    drop = amount * float(np.hypot(*(pts[54] - pts[48])))
    for i in [*range(5, 12), *range(55, 60), *range(65, 68)]:
        out[i, 1] += drop
    return out


def smiling(pts: Points, widen: float = 0.25) -> Points:
    """``pts`` with the mouth corners pulled apart by ``widen`` of the mouth width."""
    out = pts.copy()
    shift = widen / 2 * float(np.hypot(*(pts[54] - pts[48])))
    for i in (48, 49, 59, 60, 67):
        out[i, 0] -= shift
    for i in (54, 53, 55, 64, 65):
        out[i, 0] += shift
    return out
