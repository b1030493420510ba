"""From a dataset and a split to a trained `Classifier`: preprocessing, windows, model, stages."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.defaults import (
    MAX_COMPONENTS,
    Choice,
    components_range,
    largest_square,
    object_window,
    pools_for,
)
from s3fn.data.pipeline import prepare_object_stores, prepare_scene_stores
from s3fn.data.preprocess import Preprocessor
from s3fn.data.splits import ObjectSplit, SceneSplit
from s3fn.data.store import WindowStore
from s3fn.inference import Classifier
from s3fn.models.baselines import SpectralMeanMLP
from s3fn.models.cnn import SpectralSpatialCNN
from s3fn.models.inputs import as_window
from s3fn.models.semantic import S3FN
from s3fn.train.fit import fit
from s3fn.train.options import FitOptions
from s3fn.train.presets import Preset, get_preset
from s3fn.train.seeding import seed_everything
from s3fn.train.stages import STAGES

if TYPE_CHECKING:
    from s3fn.semantics import Descriptions, TextEncoder

MODELS = ("s3fn", "cnn", "spectral-mean")


def train_classifier(
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
    descriptions: Descriptions | Mapping[str, Sequence[str]] | str | os.PathLike | None = None,
    *,
    preset: str = "default",
    model: str = "s3fn",
    class_embeddings: torch.Tensor | None = None,
    encoder: TextEncoder | str | None = None,
    window: int | tuple[int, int] | None = None,
    windows_per_image: int | None = None,
    n_components: int | None = None,
    variance: float | None = None,
    channels: Sequence[int] = (32, 64, 128),
    padding: int = 0,
    spectral_branch: bool | None = None,
    head_dim: int | None = None,
    temperature: str | None = None,
    init_scale: float | None = None,
    prototypes: str | None = None,
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

    `preset` ("default" or "paper", see `s3fn.train.presets`) sets every option left None here;
    what follows from the data (object window, pooling, PCA components) is chosen from the
    training part and recorded with its reason in `classifier.info["choices"]`.
    Preprocessing (z-score + PCA keeping `variance`, or `n_components`) is fitted on the
    training pixels only. Object data: `windows_per_image` random windows inside each object;
    scene data: a window (the split's size) centred on every labelled pixel. `model`: "s3fn"
    (the 3D-CNN with the semantic head; class embeddings come from `descriptions` (or a
    descriptions file) through `encoder` — a `TextEncoder`, a model name or folder, or None for
    the bundled MiniLM — or are given as `class_embeddings`), "cnn" (the plain 3D-CNN) or
    "spectral-mean" (the spectral-mean MLP). S3FN trains `stages` in order ("cnn" = stage 1
    with `options`, "semantic" / "joint" with `semantic_options`); the baselines train stage
    "cnn" only. Without a validation part a warning says so and early stopping watches the
    training loss. Windows go to `<workdir>/windows/<part>.h5` and checkpoints to
    `<workdir>/checkpoints/<stage>.pt` (`workdir`: a temporary folder by default);
    `resume=True` continues a killed run there.
    """
    recipe = get_preset(preset)
    plan = _check_request(model, descriptions, class_embeddings, stages)
    scene = isinstance(data, SceneDataset)
    choices: dict[str, Choice] = {}
    size = _window(data, split, window, recipe, choices)
    bands = data.cube.n_bands if scene else data[int(split.train[0])].cube.n_bands
    if n_components is None:
        pools = pools_for(size, bands)
    else:
        pools = pools_for(size, n_components, "components")
    choices["pools"] = pools
    per_image = _given(windows_per_image, recipe.windows_per_image)
    stage_options, head_options = _stage_options(recipe, options, semantic_options, split)
    fewest, most = components_range(bands, pools.value[0] is not None)
    with ExitStack() as stack:
        folder = (
            Path(workdir)
            if workdir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3fn-train-")))
        )
        stores = _prepare(
            data,
            split,
            folder / "windows",
            size,
            per_image,
            n_components,
            _given(variance, recipe.variance),
            (fewest, most if recipe.limit_components else bands),
            seed,
        )
        readers = {
            part: stack.enter_context(closing(WindowStore(store.path, in_memory=in_memory)))
            for part, store in stores.items()
        }
        train, val = readers["train"], readers.get("val")
        in_bands, n_classes = train.window_shape[0], len(data.class_names)
        if n_components is None:
            choices["n_components"] = _components_choice(train.preprocessor, recipe)
        embeddings = None
        if model == "s3fn":
            embeddings = _embeddings(data.class_names, descriptions, class_embeddings, encoder)
        seed_everything(seed)
        backbone = {
            "channels": channels,
            "padding": padding,
            "pools": pools.value,
            "spectral_branch": _given(spectral_branch, recipe.spectral_branch),
            "use_fused_ops": use_fused_ops,
        }
        head = {
            "head_dim": head_dim,
            "temperature": _given(temperature, recipe.temperature),
            "init_scale": _given(init_scale, recipe.init_scale),
            "prototypes": _given(prototypes, recipe.prototypes),
            "use_fused_ops": use_fused_ops,
        }
        net = _build(model, in_bands, n_classes, size, embeddings, backbone, head)
        histories, seconds = {}, {}
        for stage in plan:
            result = fit(
                net,
                train,
                val,
                stage=stage,
                options=stage_options if stage == "cnn" else head_options,
                seed=seed,
                device=device,
                checkpoint_dir=folder / "checkpoints",
                resume=resume,
                verbose=verbose,
            )
            histories[stage] = result.history
            seconds[stage] = round(result.seconds, 3)
        preprocessor = train.preprocessor
    info = {
        "model": model,
        "preset": recipe.name,
        "stages": list(plan),
        "histories": histories,
        "stage_seconds": seconds,
        "choices": {k: {"value": _plain(c.value), "reason": c.reason} for k, c in choices.items()},
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
        n_windows=per_image,
        mask_threshold=0.0 if scene else data.threshold,
        seed=seed,
        kind="scene" if scene else "object",
        info=info,
    )


def _stage_options(
    recipe: Preset,
    options: FitOptions | None,
    semantic_options: FitOptions | None,
    split: ObjectSplit | SceneSplit,
) -> tuple[FitOptions, FitOptions]:
    """The two stages' options; without a validation part, early stopping on the training loss
    (with a warning), since stopping on nothing would train every epoch blind."""
    first, second = options or recipe.cnn, semantic_options or recipe.semantic
    if len(split.val) == 0:
        warnings.warn(
            f"no validation part (the split left none): early stopping watches the training "
            f"loss instead (patience {first.patience}, at most {first.epochs} epochs)",
            stacklevel=3,
        )
        first = replace(first, monitor="train_loss")
        second = replace(second, monitor="train_loss")
    return first, second


def _components_choice(preprocessor: Preprocessor, recipe: Preset) -> Choice:
    kept, bands = preprocessor.n_components, preprocessor.n_bands
    explained = float(preprocessor.explained_variance_ratio.sum())
    reason = f"{kept} of {bands} components explain {explained:.1%} of the variance"
    if recipe.limit_components:
        reason += f" (at most {MAX_COMPONENTS}: the rest is mostly band noise)"
    return Choice(kept, reason)


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
    recipe: Preset,
    choices: dict[str, Choice],
) -> tuple[int, int]:
    if isinstance(data, SceneDataset) != isinstance(split, SceneSplit):
        raise TypeError(
            f"a {type(data).__name__} needs a "
            f"{'SceneSplit' if isinstance(data, SceneDataset) else 'ObjectSplit'}; "
            f"got {type(split).__name__}"
        )
    if isinstance(split, SceneSplit):
        if window is not None and as_window(window) != split.window:
            raise ValueError(
                f"window={window!r}, but the scene split was made for {split.window} windows; "
                "split again with that window"
            )
        return split.window
    if window is not None:
        return as_window(window)
    squares = [largest_square(data[int(i)].mask) for i in split.train]
    fitted = object_window(squares, recipe.largest_window)
    if recipe.window is not None and min(squares) >= recipe.window:
        chosen = Choice(recipe.window, f"the {recipe.name} preset's window fits every object")
    elif recipe.window is not None:
        chosen = Choice(
            fitted.value,
            f"the {recipe.name} preset's {recipe.window}x{recipe.window} window does not fit "
            f"every training object; {fitted.reason}",
        )
    else:
        chosen = fitted
    choices["window"] = chosen
    return as_window(chosen.value)


def _prepare(
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
    folder: Path,
    size: tuple[int, int],
    windows_per_image: int,
    n_components: int | None,
    variance: float,
    components_range: tuple[int, int],
    seed: int,
) -> dict[str, WindowStore]:
    if isinstance(data, SceneDataset):
        return prepare_scene_stores(
            data,
            split,
            folder,
            n_components=n_components,
            variance=variance,
            components_range=components_range,
        )
    return prepare_object_stores(
        data,
        split,
        folder,
        windows_per_image=windows_per_image,
        size=size,
        n_components=n_components,
        variance=variance,
        components_range=components_range,
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
