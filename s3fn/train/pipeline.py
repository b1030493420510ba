"""From a dataset and a split to a trained `Classifier`: preprocessing, windows, model, stages."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.pipeline import prepare_object_stores, prepare_scene_stores
from s3fn.data.splits import ObjectSplit, SceneSplit
from s3fn.data.store import WindowStore
from s3fn.inference import Classifier
from s3fn.models.baselines import SpectralMeanMLP
from s3fn.models.cnn import SpectralSpatialCNN
from s3fn.models.inputs import as_window
from s3fn.models.semantic import S3FN
from s3fn.train.fit import fit
from s3fn.train.options import FitOptions
from s3fn.train.seeding import seed_everything
from s3fn.train.stages import STAGES

if TYPE_CHECKING:
    from s3fn.semantics import Descriptions, TextEncoder

MODELS = ("s3fn", "cnn", "spectral-mean")
DEFAULT_WINDOW = 32


def train_classifier(
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
    descriptions: Descriptions | Mapping[str, Sequence[str]] | str | os.PathLike | None = None,
    *,
    model: str = "s3fn",
    class_embeddings: torch.Tensor | None = None,
    encoder: TextEncoder | str | None = None,
    window: int | tuple[int, int] | None = None,
    windows_per_image: int = 20,
    n_components: int | None = None,
    variance: float = 0.999,
    channels: Sequence[int] = (32, 64, 128),
    padding: int = 0,
    head_dim: int | None = None,
    temperature: str = "fixed",
    init_scale: float = 1.0,
    stages: Sequence[str] = ("cnn", "semantic"),
    options: FitOptions | None = None,
    semantic_options: FitOptions | None = None,
    voting: str = "majority",
    seed: int = 0,
    device: str | torch.device | None = None,
    workdir: str | os.PathLike | None = None,
    resume: bool = False,
    in_memory: bool = False,
    use_fused_ops: bool = True,
    verbose: bool = False,
) -> Classifier:
    """Train a classifier on the training part of `split`, early-stopping on its validation part.

    Preprocessing (z-score + PCA keeping `variance`, or `n_components`) is fitted on the
    training pixels only. Object data: `windows_per_image` random `window`-sized windows
    (default 32) inside each object; scene data: a window (the split's size) centred on every
    labelled pixel. `model`: "s3fn" (the 3D-CNN with the semantic head; class embeddings come
    from `descriptions` (or a descriptions file) through `encoder` — a `TextEncoder`, a model
    name or folder, or None for the bundled MiniLM — or are given as `class_embeddings`),
    "cnn" (the plain 3D-CNN) or "spectral-mean" (the spectral-mean MLP). S3FN trains `stages`
    in order ("cnn" = stage 1 with `options`, "semantic" / "joint" with `semantic_options`,
    default 50 epochs as the paper); the baselines train stage "cnn" only. Windows go to
    `<workdir>/windows/<part>.h5` and checkpoints to `<workdir>/checkpoints/<stage>.pt`
    (`workdir`: a temporary folder by default); `resume=True` continues a killed run there.
    """
    plan = _check_request(model, descriptions, class_embeddings, stages)
    scene = isinstance(data, SceneDataset)
    size = _window(data, split, window)
    with ExitStack() as stack:
        folder = (
            Path(workdir)
            if workdir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3fn-train-")))
        )
        stores = _prepare(
            data, split, folder / "windows", size, windows_per_image, n_components, variance, seed
        )
        readers = {
            part: stack.enter_context(closing(WindowStore(store.path, in_memory=in_memory)))
            for part, store in stores.items()
        }
        train, val = readers["train"], readers.get("val")
        in_bands, n_classes = train.window_shape[0], len(data.class_names)
        embeddings = None
        if model == "s3fn":
            embeddings = _embeddings(data.class_names, descriptions, class_embeddings, encoder)
        seed_everything(seed)
        backbone = {"channels": channels, "padding": padding, "use_fused_ops": use_fused_ops}
        head = {
            "head_dim": head_dim,
            "temperature": temperature,
            "init_scale": init_scale,
            "use_fused_ops": use_fused_ops,
        }
        net = _build(model, in_bands, n_classes, size, embeddings, backbone, head)
        histories = {}
        for stage in plan:
            stage_options = options if stage == "cnn" else semantic_options or FitOptions(epochs=50)
            result = fit(
                net,
                train,
                val,
                stage=stage,
                options=stage_options,
                seed=seed,
                device=device,
                checkpoint_dir=folder / "checkpoints",
                resume=resume,
                verbose=verbose,
            )
            histories[stage] = result.history
        preprocessor = train.preprocessor
    info = {
        "model": model,
        "stages": list(plan),
        "histories": histories,
        "split_seed": split.seed,
        "train_size": len(split.train),
        "val_size": len(split.val),
    }
    return Classifier(
        net,
        preprocessor,
        data.class_names,
        window=size,
        voting=voting,
        n_windows=windows_per_image,
        mask_threshold=0.0 if scene else data.threshold,
        seed=seed,
        kind="scene" if scene else "object",
        info=info,
    )


def _check_request(
    model: str,
    descriptions: Any,
    class_embeddings: torch.Tensor | None,
    stages: Sequence[str],
) -> tuple[str, ...]:
    if model not in MODELS:
        raise ValueError(f"model={model!r}; expected one of {', '.join(MODELS)}")
    semantic = descriptions is not None or class_embeddings is not None
    if model != "s3fn":
        if semantic:
            raise ValueError(f"model={model!r} takes no descriptions or class embeddings")
        return ("cnn",)
    if (descriptions is None) == (class_embeddings is None):
        raise ValueError(
            "model='s3fn' needs descriptions or class_embeddings (exactly one); "
            "use model='cnn' for the plain 3D-CNN"
        )
    bad = [s for s in stages if s not in STAGES]
    if not stages or bad:
        raise ValueError(f"stages={tuple(stages)!r}; expected a sequence of {', '.join(STAGES)}")
    return tuple(stages)


def _window(
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
    window: int | tuple[int, int] | None,
) -> tuple[int, int]:
    if isinstance(data, SceneDataset) != isinstance(split, SceneSplit):
        raise TypeError(
            f"a {type(data).__name__} needs a "
            f"{'SceneSplit' if isinstance(data, SceneDataset) else 'ObjectSplit'}; "
            f"got {type(split).__name__}"
        )
    if not isinstance(split, SceneSplit):
        return as_window(window if window is not None else DEFAULT_WINDOW)
    if window is not None and as_window(window) != split.window:
        raise ValueError(
            f"window={window!r}, but the scene split was made for {split.window} windows; "
            "split again with that window"
        )
    return split.window


def _prepare(
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
    folder: Path,
    size: tuple[int, int],
    windows_per_image: int,
    n_components: int | None,
    variance: float,
    seed: int,
) -> dict[str, WindowStore]:
    if isinstance(data, SceneDataset):
        return prepare_scene_stores(
            data, split, folder, n_components=n_components, variance=variance
        )
    return prepare_object_stores(
        data,
        split,
        folder,
        windows_per_image=windows_per_image,
        size=size,
        n_components=n_components,
        variance=variance,
        seed=seed,
    )


def _embeddings(
    class_names: Sequence[str],
    descriptions: Any,
    class_embeddings: torch.Tensor | None,
    encoder: Any,
) -> torch.Tensor:
    if class_embeddings is not None:
        embeddings = torch.as_tensor(class_embeddings, dtype=torch.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(class_names):
            raise ValueError(
                f"class_embeddings of shape {tuple(embeddings.shape)}; expected "
                f"{len(class_names)} rows, one per class of the dataset"
            )
        return embeddings
    from s3fn.semantics import Descriptions, TextEncoder, load_descriptions

    if isinstance(descriptions, str | os.PathLike):
        descriptions = load_descriptions(descriptions)
    elif not isinstance(descriptions, Descriptions):
        descriptions = Descriptions(descriptions)
    if not isinstance(encoder, TextEncoder):
        encoder = TextEncoder(encoder)
    _, embeddings = encoder.encode_classes(descriptions.select(list(class_names)))
    return embeddings


def _build(
    model: str,
    in_bands: int,
    n_classes: int,
    window: tuple[int, int],
    embeddings: torch.Tensor | None,
    backbone: Mapping[str, Any],
    head: Mapping[str, Any],
) -> nn.Module:
    if model == "spectral-mean":
        return SpectralMeanMLP(in_bands, n_classes)
    cnn = SpectralSpatialCNN(in_bands, n_classes, window=window, **backbone)
    return cnn if model == "cnn" else S3FN(cnn, embeddings, **head)
