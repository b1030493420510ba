"""How to train, as one typed value: `TrainSettings` (what the user set; None = the preset's or
the data's) and `resolve`, which applies the preset once and gives the `Recipe` training runs.

Every field is also a key of `s3fn train`'s config files and a flag of the command (`--name`),
with the help text and accepted values in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from s3fn.models.registry import ModelSpec, get_model, list_models
from s3fn.settings_fields import ConfigError, meta, option
from s3fn.train.augment import Augment
from s3fn.train.options import FitOptions
from s3fn.train.presets import PRESETS, Preset, get_preset


@dataclass
class TrainSettings:
    """Every training option; the field names are the config keys (`--key-name` flags)."""

    stage: str = option(
        "two-stage",
        "what to train (a model of s3fn.models.registry: two-stage S3FN, joint S3FN, the plain "
        "3D-CNN, the spectral-mean MLP, or the linear pixel model)",
        str,
        choices=list_models(),
    )
    preset: str = option(
        "default",
        "training recipe: default (measured best) or paper (the paper's exact recipe)",
        str,
        choices=tuple(PRESETS),
    )
    window: int | None = option(
        None, "window side in pixels (default: fitted to the objects / the scene)", int
    )
    windows_per_image: int | None = option(
        None, "random windows per object image (default: the preset's)", int
    )
    n_components: int | None = option(
        None, "PCA components (default: --variance, within a range the preset sets)", int
    )
    variance: float | None = option(None, "PCA variance kept (default: the preset's)", (int, float))
    seed: int = option(0, "seed of the split, the windows and the training", int)
    compare_linear: bool | None = option(
        None,
        "fit a linear pixel model beside the network and keep it instead where the network "
        "does not beat it on the validation part by more than 0.5 points of OA (default: the "
        "preset's)",
        bool,
    )
    refit: bool | None = option(
        None,
        "after early stopping has chosen each stage's epochs, train again on training + "
        "validation for that many epochs (default: the preset's)",
        bool,
    )
    epochs: int | None = option(None, "maximum epochs of the CNN stage", int)
    semantic_epochs: int | None = option(None, "maximum epochs of the semantic/joint stage", int)
    patience: int | None = option(None, "early-stopping patience in epochs", int)
    batch_size: int | None = option(None, "(global) batch size", int)
    lr: float | None = option(None, "learning rate", (int, float))
    weight_decay: float | None = option(None, "weight decay", (int, float))
    optimizer: str = option("adam", "optimizer", str, choices=("adam", "adamw"))
    augment_scale: list[float] | None = field(
        default=None,
        metadata=meta("random global scale range (lo hi); an empty list turns it off", list),
    )
    flip: bool | None = option(None, "random flips", bool)
    rot90: bool | None = option(None, "random 90-degree rotations", bool)
    noise: float | None = option(None, "Gaussian noise added to training windows", (int, float))
    balance: float | None = option(
        None,
        "class balance of the training draws: 0 as labelled, 0.5 rare classes drawn more by "
        "the square root of their rarity, 1 every class equally often",
        (int, float),
    )
    label_smoothing: float | None = option(
        None, "label smoothing of the CNN stage's cross-entropy", (int, float)
    )
    spectral_branch: bool | None = option(
        None, "feed the window's mean spectrum to the feature layer", bool
    )
    temperature: str | None = option(
        None, "cosine-logit scale", str, choices=("fixed", "learnable")
    )
    init_scale: float | None = option(None, "(initial) scale of the cosine logits", (int, float))
    prototypes: str | None = option(
        None,
        "class vectors of the cosine logits: the text embeddings (fixed) or learnt from them",
        str,
        choices=("fixed", "learnable"),
    )
    text_targets: float | None = option(
        None,
        "target mass the CNN stage moves onto the classes with the most similar descriptions",
        (int, float),
    )
    head_dim: int | None = option(None, "semantic head width (default: text dimension)", int)
    channels: list[int] = field(
        default_factory=lambda: [32, 64, 128],
        metadata=meta("3D-CNN channels of the three convs", list),
    )
    padding: int = option(0, "3D-CNN zero padding", int)
    voting: str = option("majority", "image voting", str, choices=("majority", "mean-prob"))
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: CUDA if available)", str)
    num_workers: int = option(0, "DataLoader worker processes", int)
    amp: bool = option(True, "mixed precision on CUDA", bool)
    use_fused_ops: bool = option(
        True, "run s3fn's fused kernels (off: their pure-PyTorch reference)", bool
    )


def setting_fields() -> list[Any]:
    """The dataclass fields of `TrainSettings`, with their help text and types in `metadata`."""
    return list(fields(TrainSettings))


@dataclass(frozen=True)
class Recipe:
    """`settings` with the preset applied: the model to build, what every option left None
    became, and the two stages' `FitOptions`. What follows from the data (window, pooling, PCA
    components) is chosen later, from the training part."""

    settings: TrainSettings
    preset: Preset
    model: ModelSpec
    windows_per_image: int
    variance: float
    spectral_branch: bool
    temperature: str
    init_scale: float
    prototypes: str
    refit: bool
    compare_linear: bool
    cnn: FitOptions
    semantic: FitOptions


def resolve(settings: TrainSettings) -> Recipe:
    """Apply the preset to `settings`: each option left None takes the preset's value, and every
    stage option given applies to both stages. Raises a ValueError for an unknown model or
    preset and a `ConfigError` for a malformed scale range."""
    preset = get_preset(settings.preset)
    given = {
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "weight_decay": settings.weight_decay,
        "patience": settings.patience,
        "balance": settings.balance,
    }
    common = {k: v for k, v in given.items() if v is not None}
    common.update(optimizer=settings.optimizer, num_workers=settings.num_workers, amp=settings.amp)
    cnn = replace(preset.cnn, **common, augment=_augment(settings, preset.cnn.augment))
    semantic = replace(
        preset.semantic, **common, augment=_augment(settings, preset.semantic.augment)
    )
    if settings.epochs is not None:
        cnn = replace(cnn, epochs=settings.epochs)
    if settings.semantic_epochs is not None:
        semantic = replace(semantic, epochs=settings.semantic_epochs)
    if settings.label_smoothing is not None:
        cnn = replace(cnn, label_smoothing=settings.label_smoothing)
    if settings.text_targets is not None:
        cnn = replace(cnn, text_targets=settings.text_targets)
    return Recipe(
        settings=settings,
        preset=preset,
        model=get_model(settings.stage),
        windows_per_image=_given(settings.windows_per_image, preset.windows_per_image),
        variance=_given(settings.variance, preset.variance),
        spectral_branch=_given(settings.spectral_branch, preset.spectral_branch),
        temperature=_given(settings.temperature, preset.temperature),
        init_scale=_given(settings.init_scale, preset.init_scale),
        prototypes=_given(settings.prototypes, preset.prototypes),
        refit=_given(settings.refit, preset.refit),
        compare_linear=_given(settings.compare_linear, preset.compare_linear),
        cnn=cnn,
        semantic=semantic,
    )


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def _augment(settings: TrainSettings, base: Augment | None) -> Augment:
    base = base or Augment(scale=None)
    changes: dict[str, Any] = {}
    if settings.augment_scale is not None:
        scale = tuple(settings.augment_scale) or None
        if scale is not None and len(scale) != 2:
            raise ConfigError(
                f"augment_scale = {settings.augment_scale}; expected two numbers lo hi"
            )
        changes["scale"] = scale
    for name in ("flip", "rot90", "noise"):
        if getattr(settings, name) is not None:
            changes[name] = getattr(settings, name)
    return replace(base, **changes)
