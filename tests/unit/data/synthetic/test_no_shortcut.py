"""No capture shortcut: simple image statistics cannot tell CelebA live images from CelebA-Spoof live images.

The two databases' live images must come from one capture process (renderer, camera, size, encoder), so a
classifier has to look at attacks, not at which database an image came from. The statistics are the ones a
careless pipeline leaks: brightness, contrast, sharpness, JPEG block structure and recompression, saturation,
of the whole frame and of the face box the database ships.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from liveness.data.synthetic.writer import generate_demo_dataset

# As many identities and shots per identity on both sides, so a chance difference between two small identity
# samples does not pass for a capture difference (this set gives about 0.43; the old PNG writer about 0.85).
TINY = dict(identities_live=40, images_per_identity=2, identities_spoof=40, live_per_spoof_subject=2,
            attacks_per_species=0, size=64)
MAX_AUC = 0.65


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def image_statistics(rgb: np.ndarray) -> list[float]:
    """Mean, std, log Laplacian variance, 8x8 blockiness, q95 recompression error and saturation of an image."""
    image = rgb.astype(np.float32)
    grey = image.mean(axis=2)
    laplacian = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    dx, dy = np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0))
    on_x, on_y = np.arange(dx.shape[1]) % 8 == 7, np.arange(dy.shape[0]) % 8 == 7
    blockiness = (dx[:, on_x].mean() + dy[on_y].mean()) / (dx[:, ~on_x].mean() + dy[~on_y].mean() + 1e-6)
    _, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    recompression = float(np.abs(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) - image).mean())
    high, low = image.max(axis=2), image.min(axis=2)
    saturation = float(((high - low) / (high + 1e-3)).mean())
    return [float(grey.mean()), float(grey.std()), np.log(laplacian + 1e-3), float(blockiness), recompression,
            saturation]


def _face(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return cv2.resize(rgb[max(y1, 0) : y2, max(x1, 0) : x2], (32, 32), interpolation=cv2.INTER_AREA)


def celeba_live_features(root: Path) -> list[list[float]]:
    """Statistics of each CelebA image and of its face box (from the landmark list, as the writer boxes faces)."""
    from liveness.data.synthetic.faces import face_box

    rows = (root / "list_landmarks_align_celeba.txt").read_text().splitlines()[2:]
    features = []
    for row in rows:
        name, *values = row.split()
        image = _rgb(root / "img_align_celeba" / name)
        box = face_box(np.array(values, float).reshape(5, 2))
        features.append(image_statistics(image) + image_statistics(_face(image, box)))
    return features


def celeba_spoof_live_features(root: Path) -> list[list[float]]:
    """Statistics of each CelebA-Spoof live image (whatever its extension) and of its ``_BB.txt`` face box."""
    features = []
    for path in sorted(root.glob("Data/*/*/live/*")):
        if path.name.endswith("_BB.txt"):
            continue
        image = _rgb(path)
        x, y, w, h = (float(v) for v in (path.parent / f"{path.stem}_BB.txt").read_text().split()[:4])
        sx, sy = image.shape[1] / 224, image.shape[0] / 224
        features.append(image_statistics(image) + image_statistics(_face(image, (x * sx, y * sy, (x + w) * sx,
                                                                                   (y + h) * sy))))
    return features


def database_auc(live: list[list[float]], spoof_live: list[list[float]]) -> float:
    """Cross-validated AUC of a logistic regression telling the two databases' live images apart."""
    features = np.array(live + spoof_live)
    database = np.r_[np.zeros(len(live)), np.ones(len(spoof_live))]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_predict(model, features, database, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(database, scores))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shortcut") / "synthetic"
    generate_demo_dataset(out, seed=0, **TINY)
    return out


def test_live_images_of_the_two_databases_are_indistinguishable(tiny):
    live = celeba_live_features(tiny / "celeba")
    spoof_live = celeba_spoof_live_features(tiny / "celeba_spoof")
    assert len(live) == len(spoof_live) == 80
    assert database_auc(live, spoof_live) <= MAX_AUC


def test_the_check_does_see_a_capture_difference(tiny):
    """The same statistics catch spoof-side live images written without the final JPEG (the old PNG writer)."""
    from liveness.data.synthetic.faces import face_box
    from liveness.data.synthetic.writer import _STREAM_SPOOF_LIVE, _live_capture

    live = celeba_live_features(tiny / "celeba")
    first = TINY["identities_live"]
    unencoded = []
    for identity in range(first, first + TINY["identities_spoof"]):
        for shot in range(TINY["live_per_spoof_subject"]):
            image, points = _live_capture(0, _STREAM_SPOOF_LIVE, identity, shot, TINY["size"])
            unencoded.append(image_statistics(image) + image_statistics(_face(image, face_box(points))))
    assert database_auc(live, unencoded) > 0.8
