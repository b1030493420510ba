"""From a dataset and a split to a trained `Classifier`: preprocessing, windows, model, stages."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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
from s3fn.data.fields import label_fields
from s3fn.data.nodata import nodata_pixels
from s3fn.data.pipeline import prepare_object_stores, prepare_scene_stores
from s3fn.data.preprocess import Preprocessor
from s3fn.data.splits import ObjectSplit, SceneSplit
from s3fn.data.store import WindowStore
from s3fn.evaluate.paired import advantage_lower_bound
from s3fn.inference import Classifier
from s3fn.models.inputs import as_window
from s3fn.models.linear import STRENGTHS, C, LinearPixel
from s3fn.models.registry import MODELS, ModelRequest, ModelSpec
from s3fn.train.fit import fit
from s3fn.train.options import FitOptions
from s3fn.train.presets import Preset
from s3fn.train.seeding import seed_everything
from s3fn.train.settings import Recipe, TrainSettings, resolve

logger = logging.getLogger(__name__)
LINEAR = MODELS["linear"]
NETWORK_MARGIN = 0.005  # OA by which a network must beat the linear pixel model on validation
NETWORK_CONFIDENCE = 0.95  # how sure validation, resampled by fields or images, must be of it

if TYPE_CHECKING:
    from s3fn.semantics import Descriptions, TextEncoder


def train_classifier(
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
    descriptions: Descriptions | Mapping[str, Sequence[str]] | str | os.PathLike | None = None,
    settings: TrainSettings | None = None,
    *,
    class_embeddings: torch.Tensor | None = None,
    encoder: TextEncoder | str | None = None,
    workdir: str | os.PathLike | None = None,
    resume: bool = False,
    in_memory: bool = False,
    verbose: bool = False,
) -> Classifier:
    """Train a classifier on the training part of `split`, early-stopping on its validation part.

    `settings` (default `TrainSettings()`) says what to train and how: its `stage` names a
    model of `s3fn.models.registry`, its `preset` ("default" or "paper", see
    `s3fn.train.presets`) sets every option it leaves None, and what follows from the data
    (object window, pooling, PCA components) is chosen from the training part and recorded with
    its reason in `classifier.info["choices"]`. Preprocessing (z-score + PCA) is fitted on the
    training pixels only. Object data: random windows inside each object; scene data: a window
    (the split's size) centred on every labelled pixel. A model that uses text (S3FN) takes its
    class embeddings from `descriptions` (or a descriptions file) through `encoder` (a
    `TextEncoder`, a model name or folder, or None for the bundled MiniLM), or as given in
    `class_embeddings`. Without a validation part a warning says so and early stopping watches
    the training loss. Windows go to `<workdir>/windows/<part>.h5` and checkpoints to
    `<workdir>/checkpoints/<stage>.pt` (`workdir`: a temporary folder by default);
    `resume=True` continues a killed run there.
    """
    recipe = resolve(settings or TrainSettings())
    chosen = recipe.settings
    _check_request(recipe.model, descriptions, class_embeddings)
    scene = isinstance(data, SceneDataset)
    choices: dict[str, Choice] = {}
    size = _window(data, split, chosen.window, recipe, choices)
    bands = data.cube.n_bands if scene else data[int(split.train[0])].cube.n_bands
    if chosen.n_components is None:
        pools = pools_for(size, bands)
    else:
        pools = pools_for(size, chosen.n_components, "components")
    choices["pools"] = pools
    fewest, most = components_range(bands, pools.value[0] is not None)
    embeddings = None
    if recipe.model.uses_text:
        embeddings = _embeddings(data.class_names, descriptions, class_embeddings, encoder)
    with ExitStack() as stack:
        folder = (
            Path(workdir)
            if workdir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3fn-train-")))
        )
        run = _TrainingPass(
            data,
            split,
            recipe,
            size,
            pools.value,
            (fewest, most if recipe.preset.limit_components else bands),
            embeddings,
            resume=resume,
            in_memory=in_memory,
            verbose=verbose,
        )
        compare = recipe.compare_linear and bool(recipe.model.stages) and len(split.val) > 0
        first = run.train(folder / "windows", folder / "checkpoints", with_linear=compare)
        if chosen.n_components is None:
            choices["n_components"] = _components_choice(first.preprocessor, recipe.preset)
        validation, spec, strength = None, recipe.model, C
        if compare:
            validation = _compare_on_validation(run, first, data, split)
            strength = validation["linear_strength"]
            if not validation["network_kept"]:
                spec = LINEAR
        final, refit = first if spec is recipe.model else first.linear_only(strength), None
        if recipe.refit and len(split.val):
            final = run.refit(
                folder / "windows" / "refit",
                folder / "checkpoints" / "refit",
                first,
                spec,
                strength,
            )
            refit = {
                "epochs": {stage: len(h) for stage, h in final.histories.items()},
                "histories": final.histories,
                "stage_seconds": final.seconds,
            }
    given, trained = _label_counts(data, split, refit is not None)
    info = {
        "model": spec.name,
        "trained_model": recipe.model.name,
        "preset": recipe.preset.name,
        "stages": list(recipe.model.stages),
        "histories": first.histories,
        "stage_seconds": first.seconds,
        "refit": refit,
        "choices": {k: {"value": _plain(c.value), "reason": c.reason} for k, c in choices.items()},
        "split_seed": split.seed,
        "train_size": len(split.train),
        "val_size": len(split.val),
        "labels": _label_record(data.class_names, given, trained, "pixels" if scene else "images"),
        "validation": validation,
    }
    logger.info(label_line(info["labels"]))
    return run.classifier(final, info)


@dataclass(frozen=True, eq=False)
class _Trained:
    """One pass's trained model, its preprocessing, each stage's history and seconds, and
    the linear pixel models fitted on the same windows where asked for, by their C."""

    model: nn.Module
    preprocessor: Preprocessor
    histories: dict[str, list[dict[str, Any]]]
    seconds: dict[str, float]
    best_epochs: dict[str, int]
    linears: Mapping[float, LinearPixel] | None = None

    def linear_only(self, strength: float) -> _Trained:
        """This pass with its linear pixel model of C = `strength` as the model."""
        return _Trained(self.linears[strength], self.preprocessor, {}, {}, {})


@dataclass(frozen=True, eq=False)
class _TrainingPass:
    """Windows, a fresh model and its stages for one split: early-stopped on the validation
    part, or refitted on train + validation for the epochs that run chose."""

    data: ObjectDataset | SceneDataset
    split: ObjectSplit | SceneSplit
    recipe: Recipe
    size: tuple[int, int]
    pools: tuple[str | None, ...]
    components: tuple[int, int]
    embeddings: torch.Tensor | None
    resume: bool
    in_memory: bool
    verbose: bool

    def train(
        self,
        windows: Path,
        checkpoints: Path,
        *,
        epochs: Mapping[str, int] | None = None,
        n_components: int | None = None,
        refit: bool = False,
        spec: ModelSpec | None = None,
        with_linear: bool = False,
        strength: float = C,
    ) -> _Trained:
        """Cut the windows into `windows`, build the model (`spec`, default the recipe's) and
        train its stages (for `epochs[stage]` epochs where given), checkpointing into
        `checkpoints`; a linear pixel model is fitted with C = `strength`. `with_linear` also
        fits the linear pixel model, once for each C of `STRENGTHS`, on the same windows."""
        settings = self.recipe.settings
        spec = spec or self.recipe.model
        cnn, head = _stage_options(self.recipe, self.split)
        options = {stage: cnn if stage == "cnn" else head for stage in spec.stages}
        for stage, count in (epochs or {}).items():
            options[stage] = replace(options[stage], epochs=count)
        with ExitStack() as stack:
            stores = _prepare(
                self.data,
                self.split,
                windows,
                self.size,
                self.recipe.windows_per_image,
                n_components if n_components is not None else settings.n_components,
                self.recipe.variance,
                self.components,
                settings.seed,
                refit,
            )
            readers = {
                part: stack.enter_context(
                    closing(WindowStore(store.path, in_memory=self.in_memory))
                )
                for part, store in stores.items()
            }
            train, val = readers["train"], readers.get("val")
            seed_everything(settings.seed)
            request = self._request(train.window_shape[0])
            net = spec.build(request)
            linears = None
            if not spec.stages:
                net.fit_windows(_batches(train), strength)
            elif with_linear:
                pixels = LINEAR.build(request).window_spectra(_batches(train))
                linears = {c: LINEAR.build(request).fit_spectra(*pixels, c) for c in STRENGTHS}
            histories, seconds, best = {}, {}, {}
            for stage in spec.stages:
                result = fit(
                    net,
                    train,
                    val,
                    stage=stage,
                    options=options[stage],
                    seed=settings.seed,
                    device=settings.device,
                    checkpoint_dir=checkpoints,
                    resume=self.resume,
                    verbose=self.verbose,
                )
                histories[stage] = result.history
                seconds[stage] = round(result.seconds, 3)
                best[stage] = result.best_epoch or result.epochs_run
            return _Trained(net, train.preprocessor, histories, seconds, best, linears)

    def refit(
        self, windows: Path, checkpoints: Path, first: _Trained, spec: ModelSpec, strength: float
    ) -> _Trained:
        """A fresh `spec` model trained on every label but the test part's, each stage for the
        epochs early stopping chose in `first` (a linear model with C = `strength`), with the
        same PCA component count."""
        return self.train(
            windows,
            checkpoints,
            epochs={stage: first.best_epochs[stage] for stage in spec.stages},
            n_components=first.preprocessor.n_components,
            refit=True,
            spec=spec,
            strength=strength,
        )

    def classifier(self, trained: _Trained, info: Mapping[str, Any]) -> Classifier:
        """The trained pass as a `Classifier` with this run's window and voting."""
        scene = isinstance(self.data, SceneDataset)
        return Classifier(
            trained.model,
            trained.preprocessor,
            self.data.class_names,
            window=self.size,
            voting=self.recipe.settings.voting,
            n_windows=self.recipe.windows_per_image,
            mask_threshold=0.0 if scene else self.data.threshold,
            seed=self.recipe.settings.seed,
            kind="scene" if scene else "object",
            info=info,
        )

    def _request(self, in_bands: int) -> ModelRequest:
        settings = self.recipe.settings
        return ModelRequest(
            spectrum="centre" if isinstance(self.data, SceneDataset) else "mean",
            in_bands=in_bands,
            n_classes=len(self.data.class_names),
            window=self.size,
            pools=self.pools,
            class_embeddings=self.embeddings,
            channels=tuple(settings.channels),
            padding=settings.padding,
            spectral_branch=self.recipe.spectral_branch,
            head_dim=settings.head_dim,
            temperature=self.recipe.temperature,
            init_scale=self.recipe.init_scale,
            prototypes=self.recipe.prototypes,
            use_fused_ops=settings.use_fused_ops,
        )


def _compare_on_validation(
    run: _TrainingPass,
    trained: _Trained,
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
) -> dict[str, Any]:
    """The network and the linear pixel models of one pass scored on the validation part (image
    level for objects, pixel level for scenes): the linear model's C is the one that scores
    best (the default C on a tie). The network is kept only where it beats that model by more
    than `NETWORK_MARGIN` of OA and its advantage stays above zero at `NETWORK_CONFIDENCE`
    over the validation fields (images), drawn whole: a network that does not is the less
    robust of the two where the scene to map differs from the labelled part, and a lead won
    on one or two fields is no evidence that it does."""

    def score(model: _Trained) -> tuple[Any, np.ndarray, np.ndarray]:
        """(report, whether each unit's sample is right, its unit)."""
        evaluation = run.classifier(model, {}).evaluate(data, split.val)
        if evaluation.votes is not None:
            images = evaluation.votes.groups
            truth = np.asarray(data.labels)[images]
            return evaluation.images, evaluation.votes.labels == truth, images
        hits = evaluation.probabilities.argmax(axis=1) == evaluation.labels
        return evaluation.windows, hits, _scene_validation_fields(data, split)

    network, network_hits, units = score(trained)
    linears = {c: score(trained.linear_only(c)) for c in STRENGTHS}
    strength = max(STRENGTHS, key=lambda c: (linears[c][0].oa, c == C))
    linear, linear_hits, _ = linears[strength]
    lower = advantage_lower_bound(
        units,
        network_hits,
        linear_hits,
        confidence=NETWORK_CONFIDENCE,
        seed=run.recipe.settings.seed,
    )
    return {
        "level": "image" if isinstance(data, ObjectDataset) else "pixel",
        "count": network.total,
        "units": len(np.unique(units)),
        "network": network.scalars(),
        "linear": linear.scalars(),
        "linear_strength": strength,
        "linear_strengths": {str(c): linears[c][0].oa for c in STRENGTHS},
        "advantage_lower_bound": lower,
        "confidence": NETWORK_CONFIDENCE,
        "network_kept": network.oa > linear.oa + NETWORK_MARGIN and lower > 0,
        "margin": NETWORK_MARGIN,
    }


def _scene_validation_fields(data: SceneDataset, split: SceneSplit) -> np.ndarray:
    """The field, among the validation pixels, of each pixel `Classifier.evaluate` scores on
    the validation part (it leaves no-data pixels out, and so does this)."""
    pixels = split.val[~nodata_pixels(data.cube.data[split.val[:, 0], split.val[:, 1]])]
    held = np.zeros(data.labels.shape, dtype=data.labels.dtype)
    held[pixels[:, 0], pixels[:, 1]] = data.labels[pixels[:, 0], pixels[:, 1]]
    return label_fields(held)[pixels[:, 0], pixels[:, 1]]


def _batches(store: WindowStore, size: int = 4096) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The store's (windows, labels) in batches of `size`."""
    for start in range(0, len(store), size):
        yield store.read(np.arange(start, min(len(store), start + size)))


def _label_counts(
    data: ObjectDataset | SceneDataset, split: ObjectSplit | SceneSplit, refitted: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Labels given for training (every label but the test part's, which the user held out)
    and labels the final model trained on, per class."""
    k = len(data.class_names)
    trained = split.final_training() if refitted else split.train
    if isinstance(split, SceneSplit):
        given = split.labels > 0
        given[split.test[:, 0], split.test[:, 1]] = False
        counts = np.bincount(split.labels[given] - 1, minlength=k)
        return counts, np.bincount(split.labels[trained[:, 0], trained[:, 1]] - 1, minlength=k)
    given = np.delete(split.labels, split.test)
    return np.bincount(given, minlength=k), np.bincount(split.labels[trained], minlength=k)


def _label_record(
    class_names: Sequence[str], given: np.ndarray, trained: np.ndarray, unit: str
) -> dict[str, Any]:
    return {
        "unit": unit,
        "given": int(given.sum()),
        "trained": int(trained.sum()),
        "share": round(float(trained.sum() / max(given.sum(), 1)), 4),
        "per_class": {
            name: {"given": int(g), "trained": int(t)}
            for name, g, t in zip(class_names, given, trained, strict=True)
        },
    }


def label_line(record: Mapping[str, Any]) -> str:
    """How many of the labels given for training (a test part held out is not counted)
    trained the final model, in one line."""
    return (
        f"{record['trained']} of {record['given']} labelled {record['unit']} "
        f"({record['share']:.0%}) trained the final model"
    )


def _stage_options(
    recipe: Recipe, split: ObjectSplit | SceneSplit
) -> tuple[FitOptions, FitOptions]:
    """The two stages' options; without a validation part, early stopping on the training loss
    (with a warning), since stopping on nothing would train every epoch blind."""
    first, second = recipe.cnn, recipe.semantic
    if len(split.val) == 0:
        warnings.warn(
            f"no validation part (the split left none): early stopping watches the training "
            f"loss instead (patience {first.patience}, at most {first.epochs} epochs)",
            stacklevel=3,
        )
        first = replace(first, monitor="train_loss")
        second = replace(second, monitor="train_loss")
    return first, second


def _components_choice(preprocessor: Preprocessor, preset: Preset) -> Choice:
    kept, bands = preprocessor.n_components, preprocessor.n_bands
    explained = float(preprocessor.explained_variance_ratio.sum())
    reason = f"{kept} of {bands} components explain {explained:.1%} of the variance"
    if preset.limit_components:
        reason += f" (at most {MAX_COMPONENTS}: the rest is mostly band noise)"
    return Choice(kept, reason)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_request(
    spec: ModelSpec, descriptions: Any, class_embeddings: torch.Tensor | None
) -> None:
    given = (descriptions is not None) + (class_embeddings is not None)
    if not spec.uses_text and given:
        raise ValueError(f"model={spec.name!r} takes no descriptions or class embeddings")
    if spec.uses_text and given != 1:
        raise ValueError(
            f"model={spec.name!r} needs descriptions or class_embeddings (exactly one); "
            "use stage='cnn' for the plain 3D-CNN"
        )


def _window(
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
    window: int | tuple[int, int] | None,
    recipe: Recipe,
    choices: dict[str, Choice],
) -> tuple[int, int]:
    """The window: a scene split's own (it was made for it), else the given one, else the
    preset's where it fits every training object, else the largest that fits them."""
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
    preset = recipe.preset
    squares = [largest_square(data[int(i)].mask) for i in split.train]
    fitted = object_window(squares, preset.largest_window)
    if preset.window is not None and min(squares) >= preset.window:
        chosen = Choice(preset.window, f"the {preset.name} preset's window fits every object")
    elif preset.window is not None:
        chosen = Choice(
            fitted.value,
            f"the {preset.name} preset's {preset.window}x{preset.window} window does not fit "
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
    refit: bool,
) -> dict[str, WindowStore]:
    if isinstance(data, SceneDataset):
        return prepare_scene_stores(
            data,
            split,
            folder,
            n_components=n_components,
            variance=variance,
            components_range=components_range,
            refit=refit,
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
        refit=refit,
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
