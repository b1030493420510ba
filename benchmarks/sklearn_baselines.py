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


def samples_of(
    data: ObjectDataset | SceneDataset, part: np.ndarray, spectra: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a part: pixel spectra of a scene (P x 2 pixels), or the mean spectrum of each
    object image (image indices); labels 0..K-1."""
    if isinstance(data, SceneDataset):
        rows, cols = part[:, 0], part[:, 1]
        return data.cube.data[rows, cols], data.labels[rows, cols] - 1
    ids = [data.image_ids[int(i)] for i in part]
    return np.stack([spectra[i] for i in ids]), data.labels[np.asarray(part, dtype=np.int64)]


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
