"""Face-match evaluation on a labelled pair list (e.g. ``identity/lfw_subset/pairs.csv``).

Each image is detected and embedded once (cached per image and per configuration). The face
used is the detected face nearest to the image centre (LFW images are centred on the labelled
person; other people may appear at the edges). An image in which the detector finds no face is a
*failure to acquire*: its comparisons get the lowest possible score (a non-match), so it counts
against FNMR, never in favour of FMR, and the count is reported.

Flip augmentation embeds the image and its mirror image and averages the two vectors (then
re-normalises them if the embedder's vectors are L2-normalised).

Trials (``all_pairs``, ``multi_frame_trials``) describe comparisons as parallel arrays: a probe
*set* of ``k`` images of one identity against one reference image. ``k = 1`` over every pair of
images is the usual pair list (every cross-identity pair an impostor, every same-identity pair
genuine); ``k = 2, 3`` stands for several frames of a live face against the one photo on file,
compared by the mean embedding (``mean_embedding``), the best or the mean of the ``k`` scores.
"""

from __future__ import annotations

import csv
import itertools
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from verification.backends.flip import FlipEmbedder
from verification.evaluation.metrics import (
    Scores,
    best_accuracy,
    equal_error_rate,
    fnmr_at_fmr,
)
from verification.types import Face, FaceDetector, FaceEmbedder, Image, Vector

logger = logging.getLogger(__name__)

# Lowest similarity any backend here gives (cosine ≥ −1; dlib's 1 − distance ≥ 1 − 2·1.5).
FAILED_SCORE = -10.0


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled comparison: two image paths (relative to the data folder), same person?"""

    file_a: str
    file_b: str
    genuine: bool

    @property
    def identity_a(self) -> str:
        """The identity of the first image (its folder name)."""
        return Path(self.file_a).parent.name


@dataclass(frozen=True, slots=True)
class LabelledImage:
    """One image with a known identity (``file`` relative to the data's ``identity/`` folder)."""

    file: str
    identity: str
    source: str


def load_labels(path: Path, exclude: Iterable[str] = ()) -> list[LabelledImage]:
    """Rows ``file,identity`` of a ``labels.csv``; group or unknown rows (``(multi)``) are skipped.

    The identity is prefixed with the folder of ``labels.csv`` (the source), so two sources
    cannot merge two people of the same name.
    """
    source = path.parent.name
    skip = set(exclude)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        LabelledImage(row["file"], f"{source}/{row['identity']}", source)
        for row in rows
        if not row["identity"].startswith("(") and row["file"] not in skip
    ]


def load_pairs(path: Path) -> list[Pair]:
    """Rows ``file_a,file_b,same`` of a pairs CSV (``same`` 1 or 0)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    pairs = []
    for row in rows:
        if row["same"] not in ("0", "1"):
            raise ValueError(f"{path}: 'same' must be 0 or 1, got {row['same']!r}")
        pairs.append(Pair(row["file_a"], row["file_b"], row["same"] == "1"))
    return pairs


def identity_fold(pairs: Sequence[Pair]) -> npt.NDArray[np.int64]:
    """0/1 per pair from a stable hash (CRC-32) of the first image's identity.

    The calibration/test split for score fusion: genuine pairs of one identity are all in one
    fold; an impostor pair's second image may belong to an identity of the other fold.
    """
    return np.array([zlib.crc32(p.identity_a.encode()) % 2 for p in pairs], dtype=np.int64)


def read_rgb(path: Path) -> Image:
    """An image file as RGB uint8 (OpenCV applies EXIF orientation)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def central_face(faces: Sequence[Face], width: int, height: int) -> Face | None:
    """The face whose box centre is nearest to the image centre."""
    if not faces:
        return None

    def distance(face: Face) -> float:
        cx, cy = face.box.center
        return float(np.hypot(cx - width / 2, cy - height / 2))

    return min(faces, key=distance)


def embed_face(embedder: FaceEmbedder, image: Image, face: Face, flip: bool) -> Vector:
    """The embedding of ``face``; with ``flip``, the mean with its mirror image's embedding."""
    return (FlipEmbedder(embedder) if flip else embedder).embed(image, face)


def detect_all(
    detector: FaceDetector, images: Iterable[str], load: Callable[[str], Image]
) -> dict[str, Face | None]:
    """The central face of each image (``None``: failure to acquire)."""
    faces: dict[str, Face | None] = {}
    for name in images:
        image = load(name)
        faces[name] = central_face(detector.detect(image), image.shape[1], image.shape[0])
    return faces


def embed_all(
    embedder: FaceEmbedder,
    faces: Mapping[str, Face | None],
    load: Callable[[str], Image],
    flip: bool,
) -> dict[str, Vector | None]:
    """One embedding per image (``None`` where no face was found)."""
    out: dict[str, Vector | None] = {}
    for name, face in faces.items():
        out[name] = None if face is None else embed_face(embedder, load(name), face, flip)
    return out


def pair_scores(
    pairs: Sequence[Pair],
    embeddings: Mapping[str, Vector | None],
    similarity: Callable[[Vector, Vector], float],
) -> Scores:
    """The similarity of each pair (``FAILED_SCORE`` when either image has no embedding)."""
    scores = np.empty(len(pairs), dtype=np.float64)
    for i, pair in enumerate(pairs):
        a, b = embeddings.get(pair.file_a), embeddings.get(pair.file_b)
        scores[i] = FAILED_SCORE if a is None or b is None else similarity(a, b)
    return scores


def summarise(scores: Scores, genuine: npt.NDArray[np.bool_]) -> dict[str, object]:
    """FNMR at FMR 1% and 0.1% (with thresholds), EER and best accuracy, as JSON values."""
    gen, imp = scores[genuine], scores[~genuine]
    eer, eer_threshold = equal_error_rate(gen, imp)
    accuracy, accuracy_threshold = best_accuracy(gen, imp)
    return {
        "genuine_pairs": int(gen.size),
        "impostor_pairs": int(imp.size),
        "at_fmr_1%": fnmr_at_fmr(gen, imp, 0.01).as_dict(),
        "at_fmr_0.1%": fnmr_at_fmr(gen, imp, 0.001).as_dict(),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "best_accuracy": accuracy,
        "best_accuracy_threshold": accuracy_threshold,
    }


# ---- trials: probe sets against reference images ----------------------------------------------

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Trials:
    """Comparisons of a probe set (``sets[probe_set[i]]``, image indices) with ``reference[i]``."""

    sets: IntArray  # (number of sets, k) image indices, all of one identity
    probe_set: IntArray
    reference: IntArray
    probe_identity: IntArray
    reference_identity: IntArray

    @property
    def genuine(self) -> npt.NDArray[np.bool_]:
        """Same identity on both sides."""
        return np.asarray(self.probe_identity == self.reference_identity)

    @property
    def k(self) -> int:
        """Images per probe set."""
        return int(self.sets.shape[1])

    def __len__(self) -> int:
        return int(self.reference.size)


def all_pairs(identity: npt.ArrayLike) -> Trials:
    """Every unordered pair of images (``identity[i]``: the identity index of image ``i``)."""
    ids = np.asarray(identity, dtype=np.int64)
    first, second = np.triu_indices(ids.size, k=1)
    return Trials(
        sets=np.arange(ids.size, dtype=np.int64)[:, None],
        probe_set=first.astype(np.int64),
        reference=second.astype(np.int64),
        probe_identity=ids[first],
        reference_identity=ids[second],
    )


def multi_frame_trials(identity: npt.ArrayLike, k: int) -> Trials:
    """Every ``k``-subset of each identity's images against every image outside the subset.

    A reference of the same identity (not in the subset) makes a genuine trial, any other
    identity's image an impostor trial. Identities with fewer than ``k`` images give no sets.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ids = np.asarray(identity, dtype=np.int64)
    sets = [
        combo
        for person in np.unique(ids)
        for combo in itertools.combinations(np.flatnonzero(ids == person).tolist(), k)
    ]
    if not sets:
        raise ValueError(f"no identity has {k} images")
    set_array = np.asarray(sets, dtype=np.int64).reshape(len(sets), k)
    inside = np.zeros((len(sets), ids.size), dtype=bool)
    np.put_along_axis(inside, set_array, True, axis=1)
    probe_set, reference = np.nonzero(~inside)
    return Trials(
        sets=set_array,
        probe_set=probe_set.astype(np.int64),
        reference=reference.astype(np.int64),
        probe_identity=ids[set_array[probe_set, 0]],
        reference_identity=ids[reference],
    )


def mean_embedding(vectors: Sequence[Vector]) -> Vector:
    """The mean of several embeddings of one face.

    Unit-length vectors (cosine models) are averaged and re-normalised; others (dlib's raw
    descriptors, compared by euclidean distance) are averaged as they are, the rule
    ``combine_flip`` uses for the two views of one image.
    """
    if not vectors:
        raise ValueError("no vectors to average")
    stack = np.stack([v.astype(np.float64) for v in vectors])
    mean = stack.mean(axis=0)
    if np.all(np.abs(np.linalg.norm(stack, axis=1) - 1.0) < 1e-3):
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
    out: Vector = mean.astype(np.float32)
    return out


def similarity_matrix(
    probes: Sequence[Vector | None],
    references: Sequence[Vector | None],
    similarity: Callable[[Vector, Vector], float],
    symmetric: bool = False,
) -> Scores:
    """``similarity(probe, reference)`` for every combination (``FAILED_SCORE`` if one is None).

    With ``symmetric`` (the same list twice), each pair is computed once and mirrored.
    """
    out = np.full((len(probes), len(references)), FAILED_SCORE, dtype=np.float64)
    for i, a in enumerate(probes):
        if a is None:
            continue
        for j in range(i + 1 if symmetric else 0, len(references)):
            b = references[j]
            if b is not None:
                out[i, j] = similarity(a, b)
    if symmetric:
        lower = np.tril_indices(len(probes), k=-1)
        out[lower] = out.T[lower]
    return out


def set_scores(matrix: Scores, trials: Trials, how: str) -> Scores:
    """Per trial, from the image × image ``matrix``: the ``"best"`` or ``"mean"`` of its k scores.

    ``"mean"`` skips images without a face (``FAILED_SCORE``), as a live check skips frames
    without one; a set with no usable image keeps ``FAILED_SCORE``.
    """
    block = matrix[trials.sets[trials.probe_set], trials.reference[:, None]]
    if how == "best":
        return np.asarray(block.max(axis=1), dtype=np.float64)
    if how != "mean":
        raise ValueError(f"unknown set score {how!r}: expected 'best' or 'mean'")
    usable = block > FAILED_SCORE
    total = np.where(usable, block, 0.0).sum(axis=1)
    count = usable.sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), FAILED_SCORE)


def mean_embedding_scores(
    vectors: Sequence[Vector | None],
    trials: Trials,
    similarity: Callable[[Vector, Vector], float],
) -> Scores:
    """Per trial: the similarity of the probe set's ``mean_embedding`` with the reference."""
    means: list[Vector | None] = []
    for members in trials.sets:
        found = [v for v in (vectors[int(i)] for i in members) if v is not None]
        means.append(mean_embedding(found) if found else None)
    matrix = similarity_matrix(means, vectors, similarity)
    return np.asarray(matrix[trials.probe_set, trials.reference], dtype=np.float64)
