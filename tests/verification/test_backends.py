"""Backends on real photos: model location, landmark order, embeddings, PAD scores."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from verification.align import ARCFACE_TEMPLATE, align_face, similarity_transform
from verification.backends.dlib_backend import LANDMARKS_5, LANDMARKS_68, RESNET, dlib_model_path
from verification.backends.flip import FlipEmbedder, mirror_face
from verification.backends.fused import FusedEmbedder, ScoreNorm
from verification.backends.minifasnet import MiniFasNetPad
from verification.backends.onnx_arcface import (
    IMAGENET,
    INSIGHTFACE,
    ArcFaceEmbedder,
    load_insightface_folder,
)
from verification.backends.yunet import YuNetDetector
from verification.config import ARCFACE_FILE, PAD_FILES, YUNET_FILE
from verification.engine import FaceEngine
from verification.errors import ModelLoadError
from verification.types import Face, Image

Photo = Callable[[str], Image]


def only_face(engine: FaceEngine, image: Image) -> Face:
    faces = engine.detect(image, max_width=0)
    assert len(faces) == 1
    return faces[0]


def test_dlib_models_are_found_in_face_recognition_models() -> None:
    # A broken install (e.g. setuptools >= 82 without pkg_resources) must fail here, loudly.
    for name in (LANDMARKS_68, LANDMARKS_5, RESNET):
        path = dlib_model_path(name)
        assert path.is_file() and path.stat().st_size > 1_000_000, path


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "face_detection_yunet.onnx"
    with pytest.raises(ModelLoadError, match=re.escape("nowhere/face_detection_yunet.onnx")):
        YuNetDetector(missing)
    broken = tmp_path / "MobileFaceNet.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match=re.escape(str(broken))):
        ArcFaceEmbedder(broken)


@pytest.mark.parametrize("kind", ["dlib", "onnx"])
def test_landmarks5_are_image_left_first(
    kind: str, dlib_engine: FaceEngine, onnx_engine: FaceEngine, photo: Photo
) -> None:
    image = photo("obama/obama.jpg")
    engine = dlib_engine if kind == "dlib" else onnx_engine
    points = only_face(engine, image).landmarks5
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < nose[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_yunet_points_agree_with_dlib_68_point_landmarks(
    dlib_engine: FaceEngine, onnx_engine: FaceEngine, photo: Photo
) -> None:
    for name in ("obama/obama.jpg", "biden/biden.jpg", "rose_leslie/img2.jpg"):
        image = photo(name)
        yunet, dlib = only_face(onnx_engine, image), only_face(dlib_engine, image)
        eye_distance = float(np.linalg.norm(dlib.landmarks5[1] - dlib.landmarks5[0]))
        error = np.linalg.norm(yunet.landmarks5 - dlib.landmarks5, axis=1).max()
        assert error < 0.3 * eye_distance, name


def test_alignment_puts_the_points_on_the_arcface_template(
    onnx_engine: FaceEngine, photo: Photo
) -> None:
    image = photo("obama/obama2.jpg")
    face = only_face(onnx_engine, image)
    matrix = similarity_transform(face.landmarks5, ARCFACE_TEMPLATE)
    moved = face.landmarks5 @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(moved - ARCFACE_TEMPLATE).max() < 6.0
    crop = align_face(image, face.landmarks5)
    assert crop.shape == (112, 112, 3) and crop.mean() > 40


def test_dlib_embedder_matches_dlib_reference_distances(
    dlib_engine: FaceEngine, photo: Photo
) -> None:
    # NOTES.md: Obama-Obama distance 0.35, Obama-Biden 0.84; tolerance 0.6 = similarity 0.4.
    vectors = {}
    for name in ("obama/obama.jpg", "obama/obama2.jpg", "biden/biden.jpg"):
        image = photo(name)
        vectors[name] = dlib_engine.embed(image, only_face(dlib_engine, image))
    embedder = dlib_engine.embedder
    same = embedder.similarity(vectors["obama/obama.jpg"], vectors["obama/obama2.jpg"])
    other = embedder.similarity(vectors["obama/obama.jpg"], vectors["biden/biden.jpg"])
    assert same == pytest.approx(1 - 0.35, abs=0.05)
    assert other == pytest.approx(1 - 0.84, abs=0.05)


def test_arcface_embeddings_separate_people(onnx_engine: FaceEngine, photo: Photo) -> None:
    names = ["obama/obama.jpg", "obama/obama2.jpg", "obama/obama1.jpg", "biden/biden.jpg"]
    names += ["kit_harington/john1.jpeg", "rose_leslie/img1.jpg"]
    vectors = {}
    for name in names:
        image = photo(name)
        vectors[name] = onnx_engine.embed(image, only_face(onnx_engine, image))
        assert vectors[name].dtype == np.float32
        assert np.linalg.norm(vectors[name]) == pytest.approx(1.0, abs=1e-4)
    similarity = onnx_engine.embedder.similarity
    threshold = 0.34  # MobileFaceNet on LFW: FMR 0.1% (models/README.md)
    assert similarity(vectors[names[0]], vectors[names[1]]) > threshold
    assert similarity(vectors[names[0]], vectors[names[2]]) > threshold
    for other in names[3:]:
        assert similarity(vectors[names[0]], vectors[other]) < threshold, other


def test_flip_averaging_sees_a_face_and_its_mirror_image_alike(
    models_dir: Path, onnx_engine: FaceEngine, photo: Photo
) -> None:
    plain = ArcFaceEmbedder(models_dir / ARCFACE_FILE)
    flip = FlipEmbedder(plain)
    assert flip.info.key == plain.info.key.replace("MobileFaceNet@", "MobileFaceNet+flip@")
    assert onnx_engine.embedder.info.key == flip.info.key  # the onnx engine uses it
    image = photo("obama/obama.jpg")
    face = only_face(onnx_engine, image)
    mirror = np.ascontiguousarray(image[:, ::-1])
    mirrored = mirror_face(face, image.shape[1])
    # One view differs from its mirror image; the mean of both views does not.
    assert plain.similarity(plain.embed(image, face), plain.embed(mirror, mirrored)) < 0.98
    vector = flip.embed(image, face)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    assert flip.similarity(vector, flip.embed(mirror, mirrored)) > 0.999


def test_arcface_preprocessing_is_chosen_by_file(models_dir: Path, tmp_path: Path) -> None:
    embedder = ArcFaceEmbedder(models_dir / ARCFACE_FILE)
    assert embedder.preprocessing is IMAGENET
    assert embedder.info.backend == "onnx-arcface" and embedder.info.model == "MobileFaceNet"
    renamed = tmp_path / "my_model.onnx"
    renamed.symlink_to(models_dir / ARCFACE_FILE)
    with pytest.raises(ModelLoadError, match="preprocessing"):
        ArcFaceEmbedder(renamed)
    assert ArcFaceEmbedder(renamed, INSIGHTFACE).preprocessing is INSIGHTFACE


def test_insightface_folder_loads_its_recognition_model(models_dir: Path, tmp_path: Path) -> None:
    # The layout of a buffalo_l folder; the bytes are MobileFaceNet (no buffalo_l weights here).
    folder = tmp_path / "buffalo_l"
    folder.mkdir()
    (folder / "det_10g.onnx").symlink_to(models_dir / YUNET_FILE)
    with pytest.raises(ModelLoadError, match=re.escape("det_10g.onnx")):
        load_insightface_folder(folder)
    (folder / "w600k_r50.onnx").symlink_to(models_dir / ARCFACE_FILE)
    embedder = load_insightface_folder(folder)
    assert embedder.preprocessing is INSIGHTFACE
    assert embedder.info.model == "w600k_r50"


@pytest.fixture(scope="module")
def pad(models_dir: Path) -> MiniFasNetPad:
    return MiniFasNetPad([(models_dir / path, scale) for path, scale in PAD_FILES])


SILENT_FACE = "presentation_attack/silent_face/"


def test_minifasnet_tells_live_from_print_and_screen(
    pad: MiniFasNetPad, onnx_engine: FaceEngine, photo: Photo
) -> None:
    scores = {}
    for name in ("image_T1.jpg", "image_F1.jpg", "image_F2.jpg"):
        image = photo(SILENT_FACE + name)  # EXIF orientation 6: must come out portrait
        assert image.shape == (640, 480, 3)
        scores[name] = pad.live_score(image, only_face(onnx_engine, image))
    # README (Silent-Face's own detector): live 0.9999, print 0.075, screen 0.014.
    assert scores["image_T1.jpg"] > 0.99
    assert scores["image_F1.jpg"] < 0.1
    assert scores["image_F2.jpg"] < 0.1


def test_minifasnet_on_dlib_boxes_still_separates(
    pad: MiniFasNetPad, dlib_engine: FaceEngine, photo: Photo
) -> None:
    # HOG boxes are tighter than the SSD boxes MiniFASNet was trained on: weaker, still apart.
    live = pad.live_score(
        image := photo(SILENT_FACE + "image_T1.jpg"), only_face(dlib_engine, image)
    )
    assert live > 0.9
    for name in ("image_F1.jpg", "image_F2.jpg"):
        image = photo(SILENT_FACE + name)
        assert pad.live_score(image, only_face(dlib_engine, image)) < 0.3, name


def test_fused_embedder_z_normalises_and_splits(
    dlib_engine: FaceEngine, onnx_engine: FaceEngine, models_dir: Path, photo: Photo
) -> None:
    arcface = ArcFaceEmbedder(models_dir / ARCFACE_FILE)
    fused = FusedEmbedder([dlib_engine.embedder, arcface])
    assert fused.info.backend == "fused"
    vectors = {}
    for name in ("obama/obama.jpg", "obama/obama2.jpg", "biden/biden.jpg"):
        image = photo(name)
        vectors[name] = fused.embed(image, only_face(onnx_engine, image))
        assert vectors[name].shape == (256,)
    same = fused.similarity(vectors["obama/obama.jpg"], vectors["obama/obama2.jpg"])
    other = fused.similarity(vectors["obama/obama.jpg"], vectors["biden/biden.jpg"])
    assert same > 5.3 > 2.0 > other  # 5.2 ≈ FMR 0.1% on lfw_subset; impostors ≈ 0 ± 1.4
    with pytest.raises(ValueError, match="ScoreNorm"):
        FusedEmbedder([dlib_engine.embedder, arcface], [ScoreNorm(128, 0, 1)])
