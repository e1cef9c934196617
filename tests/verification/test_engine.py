"""The engine on real photos and clips: enrolment, errors, tracking, templates, factory."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.verification.conftest import read_clip, require, to_640x480
from verification.config import EngineConfig, build_engine
from verification.engine import FaceEngine, Template, Tracker, decode_image, encode_jpeg
from verification.errors import (
    BadImage,
    BadTemplate,
    ModelLoadError,
    MultipleFaces,
    NoFace,
    PoorQuality,
    TemplateMismatch,
)
from verification.quality import QualityIssue
from verification.types import Image

Photo = Callable[[str], Image]
FACES = "identity/face_recognition/"


def photo_bytes(data_dir: Path, name: str) -> bytes:
    return require(data_dir / FACES / name).read_bytes()


@pytest.fixture(scope="module")
def obama(dlib_engine: FaceEngine, data_dir: Path) -> Template:
    return dlib_engine.enrol(photo_bytes(data_dir, "obama/obama.jpg"))


def test_enrolment_makes_a_storable_template(obama: Template, dlib_engine: FaceEngine) -> None:
    assert obama.model_key == dlib_engine.embedder.info.key
    assert obama.model_key.startswith("dlib/dlib_face_recognition_resnet_model_v1@")
    assert obama.vector.shape == (128,) and obama.vector.dtype == np.float32
    crop = decode_image(obama.crop_jpeg)
    assert 100 <= max(crop.shape[:2]) <= 256
    again = Template.from_bytes(obama.to_bytes())
    assert again.model_key == obama.model_key and again.crop_jpeg == obama.crop_jpeg
    assert np.array_equal(again.vector, obama.vector)


def test_enrolled_reference_matches_the_same_person_only(
    obama: Template, dlib_engine: FaceEngine, photo: Photo
) -> None:
    for name, same in (("obama/obama2.jpg", True), ("biden/biden.jpg", False)):
        image = photo(name)
        analysis = dlib_engine.analyse(image)
        assert analysis.face is not None
        score = dlib_engine.compare(obama, dlib_engine.embed(image, analysis.face))
        assert (score > 0.4) is same, (name, score)  # dlib tolerance 0.6 ↔ similarity 0.4


def test_enrolment_errors_are_clear(dlib_engine: FaceEngine, data_dir: Path, photo: Photo) -> None:
    with pytest.raises(MultipleFaces, match="exactly one"):
        dlib_engine.enrol(photo_bytes(data_dir, "multi/two_people.jpg"))
    curtain = encode_jpeg(np.ascontiguousarray(photo("obama/obama.jpg")[:90]))
    with pytest.raises(NoFace):
        dlib_engine.enrol(curtain)
    with pytest.raises(BadImage):
        dlib_engine.enrol(photo_bytes(data_dir, "obama/obama.jpg")[:2000])  # truncated upload
    with pytest.raises(BadImage):
        dlib_engine.enrol(b"%PDF-1.4 not a photo")
    blurred = encode_jpeg(cv2.GaussianBlur(photo("obama/obama.jpg"), (0, 0), 9))
    with pytest.raises(PoorQuality) as caught:
        dlib_engine.enrol(blurred)
    assert QualityIssue.HOLD_STILL in caught.value.issues


def test_exif_orientation_is_applied(data_dir: Path) -> None:
    path = require(data_dir / "presentation_attack" / "silent_face" / "image_T1.jpg")
    assert decode_image(path.read_bytes()).shape == (640, 480, 3)  # stored 480 high, EXIF 6


def test_templates_refuse_bad_bytes_and_other_models(
    obama: Template, onnx_engine: FaceEngine, photo: Photo
) -> None:
    with pytest.raises(BadTemplate):
        Template.from_bytes(b"CBT1\xff\xff\xff\xff")
    with pytest.raises(BadTemplate):
        Template.from_bytes(obama.to_bytes()[:100])
    image = photo("obama/obama2.jpg")
    face = onnx_engine.analyse(image).face
    assert face is not None
    with pytest.raises(TemplateMismatch, match="template made by dlib/"):
        onnx_engine.compare(obama, onnx_engine.embed(image, face))


def test_tracking_follows_a_real_clip(dlib_engine: FaceEngine, data_dir: Path) -> None:
    clip = data_dir / "liveness_video" / "sadtalker" / "WDA_KatieHill_000.mp4"
    frames = [to_640x480(f) for f in read_clip(clip, 0, 60)]
    tracker = Tracker()
    results = [dlib_engine.analyse(frame, tracker) for frame in frames]
    assert all(r.face is not None and r.face.landmarks68 is not None for r in results)
    tracked = sum(r.tracked for r in results)
    assert tracked >= 0.8 * len(results)  # full detection only every redetect_every frames
    assert not results[0].tracked and "detect" in results[0].timings_ms
    centres = np.array([r.face.box.center for r in results if r.face is not None])
    assert np.abs(np.diff(centres, axis=0)).max() < 40  # no jumps to another place


def test_tracking_recovers_when_the_face_jumps(dlib_engine: FaceEngine, data_dir: Path) -> None:
    clip = data_dir / "liveness_video" / "sadtalker" / "WDA_KatieHill_000.mp4"
    frame = to_640x480(read_clip(clip, 0, 1)[0])
    tracker = Tracker()
    first = dlib_engine.analyse(frame, tracker)
    moved = np.zeros_like(frame)
    moved[:, :440] = frame[:, 200:]  # the person moved 200 px to the left
    second = dlib_engine.analyse(moved, tracker)
    assert first.face is not None and second.face is not None
    assert not second.tracked
    assert second.face.box.x == pytest.approx(first.face.box.x - 200, abs=25)
    gone = dlib_engine.analyse(np.zeros_like(frame), tracker)
    assert gone.face is None and gone.issues == (QualityIssue.NO_FACE,)


def test_small_faces_are_found_at_full_resolution(dlib_engine: FaceEngine, data_dir: Path) -> None:
    # liveportrait/s20: the face is too small for the 320-px detection, found at full size.
    clip = data_dir / "liveness_video" / "liveportrait" / "s20.mp4"
    frame = to_640x480(read_clip(clip, 0, 1)[0])
    assert dlib_engine.detect(frame) == []
    assert dlib_engine.analyse(frame).face is not None


def test_onnx_engine_enrols_and_scores_pad(
    onnx_engine: FaceEngine, data_dir: Path, photo: Photo
) -> None:
    template = onnx_engine.enrol(photo_bytes(data_dir, "obama/obama2.jpg"))
    assert template.model_key.startswith("onnx-arcface/MobileFaceNet+flip@")
    image = photo("obama/obama1.jpg")
    face = onnx_engine.analyse(image).face
    assert face is not None
    assert onnx_engine.compare(template, onnx_engine.embed(image, face)) > 0.34
    live = photo("presentation_attack/silent_face/image_T1.jpg")
    live_face = onnx_engine.analyse(live).face
    assert live_face is not None and (onnx_engine.live_score(live, live_face) or 0) > 0.99


def test_factory_rejects_unknown_kinds_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown engine kind"):
        build_engine("mediapipe")
    with pytest.raises(ValueError, match="models folder"):
        build_engine("onnx", None)
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path))):
        build_engine("onnx", tmp_path)  # an empty models folder: the error names the file
    with pytest.raises(ValueError):
        EngineConfig(redetect_every=0)
