"""The synchronous face engine: per-frame analysis with tracking, embeddings, enrolment.

One ``FaceEngine`` holds the loaded models and no per-stream state, so one engine serves every
stream of a worker; each video stream keeps its own ``Tracker``.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from verification.config import EngineConfig
from verification.errors import (
    BadImage,
    BadTemplate,
    MultipleFaces,
    NoFace,
    PoorQuality,
    TemplateMismatch,
)
from verification.quality import QualityIssue, QualityReport, assess_quality, main_face
from verification.types import (
    Box,
    Face,
    FaceDetector,
    FaceEmbedder,
    Image,
    LandmarkModel,
    PadModel,
    Vector,
)

logger = logging.getLogger(__name__)

_TEMPLATE_MAGIC = b"CBT1"
MAX_PHOTO_PIXELS = 40_000_000


def decode_image(data: bytes) -> Image:
    """RGB pixels of a JPEG/PNG (EXIF orientation applied); ``BadImage`` if undecodable."""
    try:
        with PILImage.open(io.BytesIO(data)) as photo:
            if photo.width * photo.height > MAX_PHOTO_PIXELS:
                raise BadImage(f"image too large: {photo.width}×{photo.height}")
            upright = ImageOps.exif_transpose(photo)
            return np.asarray(upright.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadImage(f"not a decodable image: {err}") from err


def encode_jpeg(image: Image, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image."""
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise BadImage("JPEG encoding failed")
    return bytes(buffer.tobytes())


def _resize(image: Image, factor: float) -> Image:
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, size, interpolation=interpolation), dtype=np.uint8)


def map_face(face: Face, factor: float, dx: float = 0.0, dy: float = 0.0) -> Face:
    """``face`` found in an image scaled by ``factor`` and shifted by (dx, dy), in the original."""
    box = face.box
    mapped = Box(
        box.x / factor + dx, box.y / factor + dy, box.w / factor, box.h / factor, box.score
    )
    shift = np.array([dx, dy], dtype=np.float32)
    landmarks68 = None if face.landmarks68 is None else face.landmarks68 / factor + shift
    return Face(mapped, (face.landmarks5 / factor + shift).astype(np.float32), landmarks68)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    width = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    height = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0.0, width) * max(0.0, height)
    return inter / (a.w * a.h + b.w * b.h - inter)


def crop_around(image: Image, box: Box, grow: float) -> tuple[Image, int, int]:
    """``box`` grown by ``grow`` of its size on each side, clamped; with its origin (x, y)."""
    height, width = image.shape[:2]
    left, top = max(0, int(box.x - grow * box.w)), max(0, int(box.y - grow * box.h))
    right = min(width, int(box.x + box.w * (1 + grow)))
    bottom = min(height, int(box.y + box.h * (1 + grow)))
    return image[top:bottom, left:right], left, top


@dataclass(frozen=True, slots=True)
class Template:
    """A reference: the embedding of the photo on file, the model that made it, a face crop."""

    model_key: str
    vector: Vector = field(repr=False)
    crop_jpeg: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.vector.dtype != np.float32 or self.vector.ndim != 1 or not self.model_key:
            raise ValueError("a template needs a model key and a float32 1-D vector")

    def to_bytes(self) -> bytes:
        """Storable bytes: magic, JSON header (model key, dimension), float32 LE vector, JPEG."""
        header = json.dumps({"model_key": self.model_key, "dim": int(self.vector.size)}).encode()
        vector = self.vector.astype("<f4").tobytes()
        return _TEMPLATE_MAGIC + struct.pack("<I", len(header)) + header + vector + self.crop_jpeg

    @classmethod
    def from_bytes(cls, data: bytes) -> Template:
        """The template stored by ``to_bytes``; ``BadTemplate`` if the bytes are not one."""
        try:
            if data[:4] != _TEMPLATE_MAGIC:
                raise ValueError("wrong magic")
            (length,) = struct.unpack_from("<I", data, 4)
            header = json.loads(data[8 : 8 + length])
            start = 8 + length
            end = start + 4 * int(header["dim"])
            if len(data) < end:
                raise ValueError("truncated")
            vector = np.frombuffer(data[start:end], dtype="<f4").astype(np.float32)
            return cls(str(header["model_key"]), vector, data[end:])
        except (ValueError, KeyError, TypeError, struct.error) as err:
            raise BadTemplate(f"not a stored template: {err}") from err


@dataclass(frozen=True, slots=True)
class FrameAnalysis:
    """What one frame shows: every face found, the main face with 68 landmarks, quality, timing.

    ``faces`` on a tracked frame holds only the tracked face: other faces are looked for on the
    full detections (every ``EngineConfig.redetect_every`` frames).
    """

    faces: tuple[Face, ...]
    face: Face | None
    quality: QualityReport
    tracked: bool
    timings_ms: dict[str, float]

    @property
    def issues(self) -> tuple[QualityIssue, ...]:
        """Quality issues, most important first."""
        return self.quality.issues


class Tracker:
    """Per-stream tracking state: the last box and the frames since the last full detection."""

    def __init__(self) -> None:
        self.box: Box | None = None
        self.since_detect = 0

    def reset(self) -> None:
        """Forget the face: the next frame gets a full detection."""
        self.box = None
        self.since_detect = 0


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class FaceEngine:
    """Detector + landmarks + embedder (+ optional PAD model) behind one synchronous API."""

    def __init__(
        self,
        detector: FaceDetector,
        landmarks: LandmarkModel,
        embedder: FaceEmbedder,
        pad: PadModel | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.detector = detector
        self.landmarks = landmarks
        self.embedder = embedder
        self.pad = pad
        self.config = config or EngineConfig()

    def describe(self) -> dict[str, str]:
        """Model keys of every part (for logs and evidence)."""
        keys = {
            "detector": self.detector.info.key,
            "landmarks": self.landmarks.info.key,
            "embedder": self.embedder.info.key,
        }
        if self.pad is not None:
            keys["pad"] = self.pad.info.key
        return keys

    def detect(self, image: Image, max_width: int | None = None) -> list[Face]:
        """Faces in the whole image, detected on a copy at most ``max_width`` wide."""
        limit = self.config.detect_width if max_width is None else max_width
        width = image.shape[1]
        if limit and width > limit:
            factor = limit / width
            return [map_face(f, factor) for f in self.detector.detect(_resize(image, factor))]
        return self.detector.detect(image)

    def _track(self, image: Image, last: Box) -> Face | None:
        """The face near ``last``: detection in a window around it, scaled to a small size."""
        window, left, top = crop_around(image, last, self.config.track_margin)
        if window.size == 0:
            return None
        factor = min(1.0, self.config.track_face_px / last.w)
        found = [
            map_face(f, factor, left, top) for f in self.detector.detect(_resize(window, factor))
        ]
        best = max(found, key=lambda f: iou(f.box, last), default=None)
        if best is None or iou(best.box, last) < self.config.min_track_iou:
            return None
        return best

    def _find(
        self, image: Image, tracker: Tracker | None, timings: dict[str, float]
    ) -> tuple[list[Face], bool]:
        if (
            tracker is not None
            and tracker.box is not None
            and tracker.since_detect < self.config.redetect_every
        ):
            start = time.perf_counter()
            face = self._track(image, tracker.box)
            timings["track"] = _ms(start)
            if face is not None:
                tracker.since_detect += 1
                return [face], True
        start = time.perf_counter()
        faces = self.detect(image)
        if not faces and self.config.detect_width and image.shape[1] > self.config.detect_width:
            faces = self.detect(image, max_width=0)  # small faces: full resolution
        timings["detect"] = _ms(start)
        if tracker is not None:
            tracker.since_detect = 0
        return faces, False

    def analyse(self, image: Image, tracker: Tracker | None = None) -> FrameAnalysis:
        """Faces, the main face with 68 landmarks, quality issues and stage timings of a frame.

        With a ``tracker`` (one per stream) the face is tracked between full detections.
        """
        start = time.perf_counter()
        timings: dict[str, float] = {}
        faces, tracked = self._find(image, tracker, timings)
        face = main_face(faces)
        if face is not None:
            step = time.perf_counter()
            # None when the landmark model finds no face in the box: that face is not measured.
            face = Face(face.box, face.landmarks5, self.landmarks.landmarks68(image, face.box))
            timings["landmarks"] = _ms(step)
            faces = [face if f.box == face.box else f for f in faces]
        if tracker is not None:
            tracker.box = None if face is None else face.box
        step = time.perf_counter()
        report = assess_quality(image, faces, self.config.quality)
        timings["quality"] = _ms(step)
        timings["total"] = _ms(start)
        return FrameAnalysis(tuple(faces), face, report, tracked, timings)

    def embed(self, image: Image, face: Face) -> Vector:
        """The embedding of ``face`` (slow on dlib without BLAS: ≈ 150 ms; embed few frames)."""
        return self.embedder.embed(image, face)

    def live_score(self, image: Image, face: Face) -> float | None:
        """The PAD model's live score, or None without a PAD model."""
        return None if self.pad is None else self.pad.live_score(image, face)

    def compare(self, template: Template, vector: Vector) -> float:
        """Similarity of an embedding to the reference; ``TemplateMismatch`` across models."""
        if template.model_key != self.embedder.info.key:
            raise TemplateMismatch(template.model_key, self.embedder.info.key)
        return self.embedder.similarity(template.vector, vector)

    def _reference_faces(self, image: Image) -> list[Face]:
        longest = max(image.shape[:2])
        factor = min(1.0, self.config.enrol_max_side / longest)
        small = _resize(image, factor) if factor < 1 else image
        faces = [map_face(f, factor) for f in self.detector.detect(small)]
        if not faces and longest < self.config.enrol_max_side / 2:
            faces = [map_face(f, 2.0) for f in self.detector.detect(_resize(image, 2.0))]
        return faces

    def reference_face(self, image: Image) -> Face:
        """The one good face of a reference photo, or NoFace / MultipleFaces / PoorQuality."""
        faces = self._reference_faces(image)
        report = assess_quality(image, faces, self.config.reference_quality)
        if QualityIssue.NO_FACE in report.issues:
            raise NoFace()
        if QualityIssue.MULTIPLE_FACES in report.issues:
            raise MultipleFaces(len(faces))
        if report.issues:
            raise PoorQuality(report.issues)
        face = main_face(faces)
        if face is None:  # assess_quality reported NO_FACE already; kept for the type checker
            raise NoFace()
        return face

    def enrol(self, photo: bytes) -> Template:
        """The reference template of a photo on file (JPEG/PNG bytes).

        Raises ``BadImage``, ``NoFace``, ``MultipleFaces`` or ``PoorQuality``.
        """
        image = decode_image(photo)
        face = self.reference_face(image)
        vector = self.embed(image, face)
        crop, _, _ = crop_around(image, face.box, 0.3)
        factor = min(1.0, self.config.reference_crop_px / max(crop.shape[:2]))
        crop_jpeg = encode_jpeg(_resize(crop, factor) if factor < 1 else crop)
        logger.info("enrolled a reference with %s", self.embedder.info.key)
        return Template(self.embedder.info.key, vector, crop_jpeg)
