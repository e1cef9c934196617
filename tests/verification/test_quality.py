"""Quality gate on real stills and on real photos degraded the way cameras degrade them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.verification.conftest import read_clip, to_640x480
from verification.engine import FaceEngine
from verification.quality import REFERENCE_PHOTO, QualityConfig, QualityIssue, assess_quality
from verification.types import Image

Photo = Callable[[str], Image]
LIVE = QualityConfig()

SINGLE = [
    "obama/obama.jpg", "obama/obama1.jpg", "obama/obama2.jpg", "obama/obama3.jpg",
    "obama/obama-240p.jpg", "obama/obama-480p.jpg", "obama/obama-720p.jpg",
    "obama/obama-1080p.jpg", "obama/obama_small.jpg", "biden/biden.jpg", "biden/biden2.jpg",
    "alex_lacamoire/alex-lacamoire.png", "alex_lacamoire/img1.jpg",
    "alex_lacamoire/alex_lacamoire1.jpg", "kit_harington/john1.jpeg",
    "kit_harington/john2.jpeg", "kit_harington/johnsnow_test1.jpg", "rose_leslie/img1.jpg",
    "rose_leslie/img2.jpg", "lin_manuel_miranda/lin-manuel-miranda.png",
]  # fmt: skip


def issues(engine: FaceEngine, image: Image, config: QualityConfig = LIVE) -> list[QualityIssue]:
    faces = engine.detect(image, max_width=1024 if image.shape[1] > 1024 else 0)
    return list(assess_quality(image, faces, config).issues)


def frame_with_face(photo: Photo, width: int) -> Image:
    """obama.jpg scaled so its face is ``width`` px wide, centred in a 640×480 frame (grey pad)."""
    image = photo("obama/obama.jpg")  # dlib's box there: centre (483, 276), 268 px wide
    factor = width / 268
    scaled = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 90, np.uint8)
    cx, cy = round(483 * factor), round(276 * factor)
    left, top = cx - 320, cy - 240
    src = scaled[max(0, top) : top + 480, max(0, left) : left + 640]
    oy, ox = max(0, -top), max(0, -left)
    canvas[oy : oy + src.shape[0], ox : ox + src.shape[1]] = src
    return canvas


def test_every_instruction_has_one_catalogue_key() -> None:
    keys = [issue.message_key for issue in QualityIssue]
    assert len(set(keys)) == len(keys)
    assert all(key.startswith("verify.guide.") for key in keys)


@pytest.mark.parametrize("name", SINGLE)
def test_real_single_face_photos_pass_as_references(
    name: str, dlib_engine: FaceEngine, photo: Photo
) -> None:
    assert issues(dlib_engine, photo(name), REFERENCE_PHOTO) == []


@pytest.mark.parametrize("name", ["obama/obama_partial_face.jpg", "obama/obama_partial_face2.jpg"])
def test_partial_faces_are_asked_to_centre(
    name: str, dlib_engine: FaceEngine, photo: Photo
) -> None:
    assert issues(dlib_engine, photo(name), REFERENCE_PHOTO) == [QualityIssue.CENTER_YOUR_FACE]


@pytest.mark.parametrize(
    "name", ["multi/two_people.jpg", "multi/obama_and_biden.jpg", "multi/kit_with_rose.jpg"]
)
def test_group_photos_are_multiple_faces(name: str, dlib_engine: FaceEngine, photo: Photo) -> None:
    assert issues(dlib_engine, photo(name))[0] is QualityIssue.MULTIPLE_FACES


def test_a_good_webcam_sized_frame_passes(dlib_engine: FaceEngine, photo: Photo) -> None:
    assert issues(dlib_engine, frame_with_face(photo, 200)) == []


def test_small_face_asks_to_move_closer(dlib_engine: FaceEngine, photo: Photo) -> None:
    assert issues(dlib_engine, frame_with_face(photo, 85))[0] is QualityIssue.MOVE_CLOSER


def test_face_filling_the_frame_asks_to_move_back(dlib_engine: FaceEngine, photo: Photo) -> None:
    assert issues(dlib_engine, frame_with_face(photo, 520))[0] is QualityIssue.MOVE_BACK


def test_face_cut_by_the_frame_edge_asks_to_centre(dlib_engine: FaceEngine, photo: Photo) -> None:
    frame = frame_with_face(photo, 200)
    shifted = np.full_like(frame, 90)
    shifted[:, : 640 - 270] = frame[:, 270:]  # the face now runs off the left edge
    assert issues(dlib_engine, shifted)[0] is QualityIssue.CENTER_YOUR_FACE


def test_blurred_face_asks_to_hold_still(dlib_engine: FaceEngine, photo: Photo) -> None:
    frame = frame_with_face(photo, 200)
    blurred = cv2.GaussianBlur(frame, (0, 0), 3)
    assert issues(dlib_engine, blurred) == [QualityIssue.HOLD_STILL]


def test_dark_frame_asks_for_more_light(dlib_engine: FaceEngine, photo: Photo) -> None:
    dark = (frame_with_face(photo, 200) * 0.3).astype(np.uint8)
    assert issues(dlib_engine, dark)[0] is QualityIssue.MORE_LIGHT


def test_overexposed_frame_asks_for_less_light(dlib_engine: FaceEngine, photo: Photo) -> None:
    bright = np.clip(frame_with_face(photo, 200) * 2.2 + 40, 0, 255).astype(np.uint8)
    assert issues(dlib_engine, bright)[0] is QualityIssue.LESS_LIGHT


def test_backlit_face_asks_to_face_the_light(dlib_engine: FaceEngine, photo: Photo) -> None:
    frame = frame_with_face(photo, 200)
    face = dlib_engine.detect(frame)[0].box
    backlit = np.full_like(frame, 245)  # a bright window behind a dim face
    x, y, w, h = int(face.x), int(face.y), int(face.w), int(face.h)
    backlit[y - h // 3 : y + h + h // 3, x - w // 4 : x + w + w // 4] = (
        frame[y - h // 3 : y + h + h // 3, x - w // 4 : x + w + w // 4] * 0.35
    ).astype(np.uint8)
    assert issues(dlib_engine, backlit)[0] is QualityIssue.LIGHT_BEHIND


def test_covered_eyes_are_asked_for(dlib_engine: FaceEngine, photo: Photo) -> None:
    frame = frame_with_face(photo, 200)
    face = dlib_engine.detect(frame)[0]
    (lx, ly), (rx, ry) = face.landmarks5[:2]
    reach = 0.45 * (rx - lx)
    covered = frame.copy()  # dark glasses: one black band over both eyes
    top_left = (int(lx - reach), int(min(ly, ry) - reach / 2))
    cv2.rectangle(covered, top_left, (int(rx + reach), int(max(ly, ry) + reach / 2)), (8, 8, 8), -1)
    assert QualityIssue.SHOW_YOUR_EYES in issues(dlib_engine, covered)


def test_turned_head_asks_to_face_the_camera(dlib_engine: FaceEngine, data_dir: Path) -> None:
    # liveportrait/d12: yaw ≈ 49° at frames 79-81 (frame_metrics), frontal at frame 0.
    clip = data_dir / "liveness_video" / "liveportrait" / "d12.mp4"
    frames = read_clip(clip, 0, 82)
    assert issues(dlib_engine, to_640x480(frames[0])) == []
    turned = [issues(dlib_engine, to_640x480(frames[i])) for i in (79, 80, 81)]
    assert any(found[:1] == [QualityIssue.FACE_THE_CAMERA] for found in turned), turned


def test_empty_frame_has_no_face(dlib_engine: FaceEngine, photo: Photo) -> None:
    background = np.ascontiguousarray(photo("obama/obama.jpg")[:90, :, :])
    assert issues(dlib_engine, to_640x480(background)) == [QualityIssue.NO_FACE]
