"""Test media for the browser tests: real clips as Chromium fake-camera files, and what we compare.

Chromium's ``--use-file-for-fake-video-capture`` plays a y4m file pixel for pixel (a canvas
source would shift colours), so each clip is decoded with PyAV, centre-cropped to 4:3, scaled to
640×480 and written as yuv420p y4m. The colour statistics and face checks are computed on those
very frames (decoded back to RGB), which is what a remote ``<video>`` should show after the trip
through the server.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

WIDTH, HEIGHT = 640, 480
HUE_BINS = 16

Image = NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class ColourStats:
    """Mean R, G, B (0–255) and a normalised hue histogram of the saturated, lit pixels."""

    mean_rgb: tuple[float, float, float]
    hue_hist: tuple[float, ...]

    def rgb_distance(self, other: ColourStats) -> float:
        """Euclidean distance between the two mean colours."""
        return float(np.linalg.norm(np.subtract(self.mean_rgb, other.mean_rgb)))

    def hue_distance(self, other: ColourStats) -> float:
        """Bhattacharyya distance between the hue histograms (0 = same, 1 = disjoint)."""
        bc = float(np.sum(np.sqrt(np.multiply(self.hue_hist, other.hue_hist))))
        return float(np.sqrt(max(0.0, 1.0 - bc)))


@dataclass(frozen=True, slots=True)
class Clip:
    """A converted clip: the y4m file for Chromium and what its frames look like."""

    name: str
    source: Path
    y4m: Path
    fps: int
    frames: int
    stats: ColourStats
    face_fraction: float  # share of checked frames in which the detector finds a face
    still: Path  # one frame as JPEG (a reference photo of the person in the clip)


def colour_stats(images: list[Image]) -> ColourStats:
    """Colour statistics over RGB images (all pixels of all images)."""
    stack = np.stack(images)
    mean = stack.reshape(-1, 3).mean(axis=0)
    hist = np.zeros(HUE_BINS, dtype=np.float64)
    for img in images:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        mask = ((hsv[..., 1] > 40) & (hsv[..., 2] > 40)).astype(np.uint8)
        h = cv2.calcHist([hsv], [0], mask, [HUE_BINS], [0, 180])
        hist += h.ravel()
    total = hist.sum()
    hist = hist / total if total > 0 else np.full(HUE_BINS, 1.0 / HUE_BINS)
    return ColourStats(
        mean_rgb=(float(mean[0]), float(mean[1]), float(mean[2])),
        hue_hist=tuple(float(x) for x in hist),
    )


def _crop_4_3(img: Image) -> Image:
    h, w = img.shape[:2]
    if w * 3 > h * 4:  # too wide: cut the sides
        cw = h * 4 // 3
        x0 = (w - cw) // 2
        return img[:, x0 : x0 + cw]
    ch = w * 3 // 4  # too tall: cut top and bottom
    y0 = (h - ch) // 2
    return img[y0 : y0 + ch]


def _source_frames(source: Path, seconds: float) -> tuple[list[Image], int]:
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = round(float(stream.average_rate or 25))
        frames: list[Image] = []
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            frames.append(cv2.resize(_crop_4_3(rgb), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
            if len(frames) >= seconds * fps:
                break
    if not frames:
        raise ValueError(f"no video frames in {source}")
    return frames, fps


def write_y4m(frames: list[Image], fps: int, path: Path) -> list[Image]:
    """Write RGB frames as a yuv420p y4m file; return the frames as a decoder will see them."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("wrapped_avframe", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    with av.open(str(path)) as back:
        return [f.to_ndarray(format="rgb24") for f in back.decode(video=0)]


class FaceFinder:
    """YuNet face detector (``cv2.FaceDetectorYN``) over RGB images of any size."""

    def __init__(self, model: Path, score: float = 0.7) -> None:
        if not model.is_file():
            raise FileNotFoundError(f"YuNet model not found: {model}")
        self._det = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score)

    def count(self, rgb: Image) -> int:
        """Number of faces found."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self._det.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._det.detect(bgr)
        return 0 if faces is None else len(faces)


def convert_clip(
    name: str, source: Path, out_dir: Path, faces: FaceFinder, seconds: float = 4.0
) -> Clip:
    """Convert one clip for Chromium and measure it."""
    frames, fps = _source_frames(source, seconds)
    y4m = out_dir / f"{name}.y4m"
    decoded = write_y4m(frames, fps, y4m)
    checked = decoded[:: max(1, len(decoded) // 10)]
    found = sum(1 for img in checked if faces.count(img) == 1)
    still = out_dir / f"{name}.jpg"
    cv2.imwrite(str(still), cv2.cvtColor(decoded[len(decoded) // 2], cv2.COLOR_RGB2BGR))
    return Clip(
        name=name,
        source=source,
        y4m=y4m,
        fps=fps,
        frames=len(decoded),
        stats=colour_stats(decoded),
        face_fraction=found / len(checked),
        still=still,
    )


def decode_data_url(url: str) -> Image:
    """An RGB image from a ``data:image/png;base64,…`` URL (what ``canvas.toDataURL`` gives)."""
    head, _, body = url.partition(",")
    if not head.startswith("data:image/") or not body:
        raise ValueError(f"not an image data URL: {url[:40]!r}")
    raw = np.frombuffer(base64.b64decode(body), dtype=np.uint8)
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("image data URL does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
