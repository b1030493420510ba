"""`Classifier`: a trained model with its preprocessing and window settings, saved as one bundle.

A bundle is a folder with `model.safetensors` (the weights) and `classifier.json` (the
architecture, class names, class embeddings, the fitted z-score + PCA, the window settings and
the weights' SHA-256). `Classifier.load` needs nothing else: no text encoder, no training data.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s3fn.data.cube import Cube, as_cube_array
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.errors import S3FNDataError
from s3fn.data.pipeline import cut_object_windows
from s3fn.data.preprocess import Preprocessor
from s3fn.data.splits import ObjectSplit, SceneSplit
from s3fn.data.windows import WindowCutter
from s3fn.evaluate.metrics import Report
from s3fn.evaluate.predict import Evaluation, predict_probabilities
from s3fn.evaluate.voting import VOTINGS, vote, vote_one
from s3fn.models.inputs import as_window
from s3fn.models.registry import build_model
from s3fn.semantics.cache import atomic_write_bytes
from s3fn.semantics.descriptions import Descriptions

FORMAT = "s3fn.classifier"
VERSION = 1
CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "model.safetensors"
KINDS = ("object", "scene")


@dataclass(frozen=True, eq=False)
class ImagePrediction:
    """The class of one image: its name and index, the mean window probabilities (K,), the
    window votes per class (K,), and the windows' top-left corners (n x 2)."""

    label: str
    index: int
    probabilities: np.ndarray
    votes: np.ndarray
    origins: np.ndarray


class Classifier:
    """A model ready for whole cubes: preprocessing, windows, batched forward, voting.

    `window` is the (h, w) the model was trained on; `predict_image` votes (`voting`:
    "majority" or "mean-prob") over `n_windows` windows drawn (deterministically, by `seed`)
    inside the object mask, which is "band sum > `mask_threshold`" unless given;
    `predict_map` classifies every pixel from the window centred on it (reflect-padded at the
    borders). `kind` says whether it was trained on object-level or scene-level data.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocessor: Preprocessor,
        class_names: Sequence[str],
        *,
        window: int | tuple[int, int],
        voting: str = "majority",
        n_windows: int = 20,
        mask_threshold: float = 0.0,
        seed: int = 0,
        kind: str = "object",
        batch_size: int = 256,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.preprocessor = preprocessor
        self.class_names = list(class_names)
        self.window = as_window(window)
        self.voting = voting
        self.n_windows = int(n_windows)
        self.mask_threshold = float(mask_threshold)
        self.seed = int(seed)
        self.kind = kind
        self.batch_size = int(batch_size)
        self.info = dict(info or {})
        n_outputs = getattr(model, "n_classes", len(self.class_names))
        if n_outputs != len(self.class_names):
            raise ValueError(
                f"Classifier: the model has {n_outputs} classes but {len(self.class_names)} "
                "class names were given"
            )
        net = getattr(model, "backbone", model)
        in_bands = getattr(net, "in_bands", preprocessor.n_components)
        if in_bands != preprocessor.n_components:
            raise ValueError(
                f"Classifier: the model takes {in_bands} bands but the preprocessor gives "
                f"{preprocessor.n_components} components"
            )
        if getattr(net, "window", self.window) != self.window:
            raise ValueError(
                f"Classifier: the model takes {net.window} windows; window={self.window} given"
            )
        if voting not in VOTINGS:
            raise ValueError(f"Classifier: voting={voting!r}; expected one of {', '.join(VOTINGS)}")
        if kind not in KINDS:
            raise ValueError(f"Classifier: kind={kind!r}; expected 'object' or 'scene'")
        if self.n_windows < 1 or self.batch_size < 1:
            raise ValueError("Classifier: n_windows and batch_size must be >= 1")

    @classmethod
    def fit(
        cls,
        data: ObjectDataset | SceneDataset,
        split: ObjectSplit | SceneSplit,
        descriptions: Descriptions | Mapping[str, Sequence[str]] | str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> Classifier:
        """Train on `data` with `split` (and `descriptions` for S3FN); see
        `s3fn.train.pipeline.train_classifier` for the options."""
        from s3fn.train.pipeline import train_classifier

        return train_classifier(data, split, descriptions, **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    @property
    def n_bands(self) -> int:
        """Bands of the raw cubes this classifier takes."""
        return self.preprocessor.n_bands

    def to(self, device: str | torch.device) -> Classifier:
        """Move the model to `device`; returns self."""
        self.model.to(device)
        return self

    def predict_image(
        self, cube: Cube | np.ndarray, mask: np.ndarray | None = None
    ) -> ImagePrediction:
        """Classify one object image (H x W x B, raw reflectance in the original bands)."""
        data = self._check_cube(cube, "predict_image")
        probabilities, origins = self._window_probabilities(data, mask, "predict_image")
        index, mean, votes = vote_one(probabilities, self.voting)
        return ImagePrediction(self.class_names[index], index, mean, votes, origins)

    def predict_pixels(
        self, cube: Cube | np.ndarray, pixels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class index (P,) and probabilities (P x K) of the windows centred on `pixels` (P x 2)."""
        data = self._check_cube(cube, "predict_pixels")
        pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 2)
        return self._classify_centres(data, pixels, "predict_pixels")

    def predict_map(
        self,
        cube: Cube | np.ndarray,
        mask: np.ndarray | None = None,
        *,
        return_probabilities: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """H x W map of class indices, -1 outside `mask` (default: every pixel); with
        `return_probabilities`, also the H x W x K probabilities (0 outside the mask)."""
        data = self._check_cube(cube, "predict_map")
        height, width = data.shape[:2]
        if mask is None:
            pixels = np.argwhere(np.ones((height, width), dtype=bool))
        else:
            pixels = np.argwhere(self._mask(data, mask, "predict_map"))
        labels, probabilities = self._classify_centres(data, pixels, "predict_map")
        label_map = np.full((height, width), -1, dtype=np.int64)
        label_map[pixels[:, 0], pixels[:, 1]] = labels
        if not return_probabilities:
            return label_map
        prob_map = np.zeros((height, width, len(self.class_names)), dtype=np.float32)
        prob_map[pixels[:, 0], pixels[:, 1]] = probabilities
        return label_map, prob_map

    def evaluate(
        self, data: ObjectDataset | SceneDataset, part: Sequence[int] | np.ndarray | None = None
    ) -> Evaluation:
        """Score on the images `part` of an object dataset (window- and image-level), or on the
        pixels `part` (P x 2) of a scene (per pixel); default: everything."""
        if isinstance(data, SceneDataset):
            pixels = np.argwhere(data.labels > 0) if part is None else np.asarray(part)
            labels, probabilities = self.predict_pixels(data.cube, pixels)
            truth = data.labels[pixels[:, 0], pixels[:, 1]] - 1
            report = Report.from_labels(truth, labels, self.class_names)
            return Evaluation(report, None, probabilities, truth, None)
        indices = range(len(data)) if part is None else [int(i) for i in part]
        probabilities, truth, groups = [], [], []
        for i in indices:
            sample = data[i]
            where = f"Classifier.evaluate: image {sample.image_id}"
            window_probabilities, _ = self._window_probabilities(
                self._check_cube(sample.cube, where), sample.mask, where
            )
            probabilities.append(window_probabilities)
            truth.append(np.full(len(window_probabilities), sample.label))
            groups.append(np.full(len(window_probabilities), i))
        if not probabilities:
            raise ValueError("Classifier.evaluate: no images to evaluate")
        probs, labels, ids = map(np.concatenate, (probabilities, truth, groups))
        votes = vote(probs, ids, self.voting)
        image_truth = np.array([data.labels[i] for i in votes.groups])
        windows = Report.from_labels(labels, probs.argmax(axis=1), self.class_names)
        images = Report.from_labels(image_truth, votes.labels, self.class_names)
        return Evaluation(windows, images, probs, labels, votes)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the bundle (`model.safetensors`, then `classifier.json`) into `folder`."""
        from safetensors.torch import save

        folder = Path(folder)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        weights = save(tensors, metadata={"format": FORMAT})
        atomic_write_bytes(folder / WEIGHTS_FILE, weights)
        embeddings = getattr(self.model, "class_embeddings", None)
        from s3fn import __version__

        config = {
            "format": FORMAT,
            "version": VERSION,
            "s3fn_version": __version__,
            "kind": self.kind,
            "model": self.model.config(),
            "class_names": self.class_names,
            "class_embeddings": None if embeddings is None else embeddings.cpu().tolist(),
            "preprocessor": self.preprocessor.to_dict(),
            "window": list(self.window),
            "voting": self.voting,
            "n_windows": self.n_windows,
            "mask_threshold": self.mask_threshold,
            "seed": self.seed,
            "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(weights).hexdigest()},
            "info": self.info,
        }
        atomic_write_bytes(folder / CONFIG_FILE, (json.dumps(config, indent=1) + "\n").encode())
        return folder

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        use_fused_ops: bool = True,
    ) -> Classifier:
        """Read a bundle written by `save` onto `device`."""
        from safetensors.torch import load

        folder = Path(folder)
        path = folder / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; expected an s3fn classifier bundle")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise S3FNDataError(f"{path}: not valid JSON ({exc})") from exc
        _check_fields(config, path)
        weights_path = folder / config["weights"]["file"]
        if not weights_path.is_file():
            raise FileNotFoundError(f"{weights_path}: weights file named by {path} not found")
        weights = weights_path.read_bytes()
        if hashlib.sha256(weights).hexdigest() != config["weights"]["sha256"]:
            raise S3FNDataError(
                f"{weights_path}: SHA-256 differs from the one in {path}; expected the weights "
                "saved with this classifier.json"
            )
        embeddings = config["class_embeddings"]
        model = build_model(
            config["model"],
            class_embeddings=None if embeddings is None else torch.tensor(embeddings),
            use_fused_ops=use_fused_ops,
        )
        model.load_state_dict(load(weights))
        return cls(
            model.to(device),
            Preprocessor.from_dict(config["preprocessor"], source=f"{path}: preprocessor"),
            config["class_names"],
            window=tuple(config["window"]),
            voting=config["voting"],
            n_windows=config["n_windows"],
            mask_threshold=config["mask_threshold"],
            seed=config["seed"],
            kind=config["kind"],
            info=config.get("info"),
        )

    def _check_cube(self, cube: Cube | np.ndarray, where: str) -> np.ndarray:
        wavelengths = cube.wavelengths if isinstance(cube, Cube) else None
        raw = cube.data if isinstance(cube, Cube) else cube
        data = as_cube_array(np.asarray(raw), where, "cube")
        if data.shape[2] != self.n_bands:
            raise S3FNDataError(
                f"{where}: cube has {data.shape[2]} bands; this classifier was trained on "
                f"{self.n_bands} bands"
            )
        trained = self.preprocessor.wavelengths
        if wavelengths is not None and trained is not None:
            off = np.abs(wavelengths - trained) > 1.0
            if off.any():
                band = int(np.argmax(off))
                raise S3FNDataError(
                    f"{where}: cube band {band} is at {wavelengths[band]:g} nm; this classifier "
                    f"was trained with that band at {trained[band]:g} nm"
                )
        return data

    def _mask(self, data: np.ndarray, mask: np.ndarray | None, where: str) -> np.ndarray:
        if mask is None:
            return data.sum(axis=2) > self.mask_threshold
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape[:2]:
            raise S3FNDataError(
                f"{where}: mask is {mask.shape}; expected {data.shape[:2]} like the cube"
            )
        return mask

    def _window_probabilities(
        self, data: np.ndarray, mask: np.ndarray | None, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (n x K) of the `n_windows` seeded windows inside the mask, and origins."""
        mask = self._mask(data, mask, where)
        rng = np.random.default_rng(self.seed)
        try:
            windows, origins = cut_object_windows(
                data, mask, self.preprocessor, self.n_windows, self.window, rng
            )
        except S3FNDataError as exc:
            raise S3FNDataError(f"{where}: {exc}") from None
        return self._probabilities(windows), origins

    def _classify_centres(
        self, data: np.ndarray, pixels: np.ndarray, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        height, width = data.shape[:2]
        h, w = self.window
        if height <= h // 2 or width <= w // 2:
            raise S3FNDataError(
                f"{where}: a {height}x{width} cube is too small to reflect-pad for {h}x{w} "
                f"windows; expected at least {h // 2 + 1}x{w // 2 + 1} pixels"
            )
        if ((pixels < 0) | (pixels >= (height, width))).any():
            raise S3FNDataError(f"{where}: pixels must lie inside the {height}x{width} cube")
        cutter = WindowCutter(self.preprocessor.transform_cube(data), self.window)
        chunks = [
            self._probabilities(cutter.at_centres(pixels[start : start + self.batch_size]))
            for start in range(0, len(pixels), self.batch_size)
        ]
        k = len(self.class_names)
        probabilities = np.concatenate(chunks) if chunks else np.zeros((0, k), np.float32)
        return probabilities.argmax(axis=1), probabilities

    def _probabilities(self, windows: np.ndarray) -> np.ndarray:
        return predict_probabilities(
            self.model, torch.from_numpy(windows), batch_size=self.batch_size, device=self.device
        )


def _check_fields(config: Any, path: Path) -> None:
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise S3FNDataError(f"{path}: field 'format' is not {FORMAT!r}; not an s3fn classifier")
    if config.get("version") != VERSION:
        raise S3FNDataError(f"{path}: version {config.get('version')!r}; expected {VERSION}")
    required = (
        "kind",
        "model",
        "class_names",
        "class_embeddings",
        "preprocessor",
        "window",
        "voting",
        "n_windows",
        "mask_threshold",
        "seed",
        "weights",
    )
    missing = [f for f in required if f not in config]
    if missing:
        raise S3FNDataError(f"{path}: field {missing[0]!r} is missing")
