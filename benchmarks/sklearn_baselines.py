"""The scikit-learn baselines of the accuracy suite, on spectra: softmax regression and an
RBF-SVM, fitted per object image on its mean spectrum or per pixel on scenes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from s3fn.data.datasets import ObjectDataset, SceneDataset

SVM_GRID = {"C": (1.0, 10.0, 100.0, 1000.0), "gamma_factor": (0.1, 1.0, 10.0)}
SVM_GRID_SAMPLES = 2000  # training samples the SVM's grid search looks at, at most


def object_spectra(data: ObjectDataset) -> dict[str, np.ndarray]:
    """Each object image's mean spectrum over its mask, by image id."""
    spectra = {}
    for i in range(len(data)):
        sample = data[i]
        spectra[sample.image_id] = sample.cube.data[sample.mask].mean(axis=0)
    return spectra


def split_samples(
    data: ObjectDataset | SceneDataset, saved: Mapping[str, Any], spectra: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test) of a saved split: mean spectra per object image, or
    pixel spectra of a scene (labels 0..K-1)."""
    parts = []
    for part in ("train", "test"):
        if isinstance(data, SceneDataset):
            pixels = np.asarray(saved[part], dtype=np.int64).reshape(-1, 2)
            rows, cols = pixels[:, 0], pixels[:, 1]
            parts += [data.cube.data[rows, cols], data.labels[rows, cols] - 1]
        else:
            label = dict(zip(data.image_ids, data.labels.tolist(), strict=True))
            parts += [
                np.stack([spectra[i] for i in saved[part]]),
                np.array([label[i] for i in saved[part]], dtype=np.int64),
            ]
    return parts[0], parts[1], parts[2], parts[3]


def fit_linear(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """Softmax regression on standardised spectra."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    return model.fit(x, y)


def fit_svm(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """RBF-SVM on standardised spectra, C and gamma chosen by stratified CV on the training part
    (on at most `SVM_GRID_SAMPLES` of its samples), then refitted on all of it."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    model = make_pipeline(StandardScaler(), SVC(kernel="rbf"))
    pick = np.random.default_rng(seed).permutation(len(y))[:SVM_GRID_SAMPLES]
    folds = min(3, int(np.unique(y[pick], return_counts=True)[1].min()))
    if folds < 2:
        return model.fit(x, y)
    grid = {
        "svc__C": list(SVM_GRID["C"]),
        "svc__gamma": [g / x.shape[1] for g in SVM_GRID["gamma_factor"]],
    }
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    search = GridSearchCV(model, grid, cv=cv).fit(x[pick], y[pick])
    return model.set_params(**search.best_params_).fit(x, y)
