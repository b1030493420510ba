"""Training recipes by name: "default" (measured best on the accuracy suite) and "paper".

A preset fixes how a classifier is trained; the data-fitted choices (window, pooling, scene
blocks, PCA components) apply on top wherever the preset leaves them open (None). Any option
given explicitly to `train_classifier` or `s3fn train` wins over the preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s3fn.train.augment import Augment
from s3fn.train.options import FitOptions

PAPER_CONV_L2 = (("blocks.0.weight", 2e-2), ("blocks.1.weight", 2e-3), ("blocks.2.weight", 2e-4))


@dataclass(frozen=True)
class Preset:
    """One training recipe: model shape, preprocessing policy and the two stages' options."""

    name: str
    description: str
    window: int | None
    largest_window: int
    variance: float
    limit_components: bool
    spectral_branch: bool
    windows_per_image: int
    temperature: str
    init_scale: float
    prototypes: str
    refit: bool
    compare_linear: bool
    cnn: FitOptions = field(default_factory=FitOptions)
    semantic: FitOptions = field(default_factory=lambda: FitOptions(epochs=50))


PRESETS: dict[str, Preset] = {
    "default": Preset(
        name="default",
        description="data-fitted window (at most 16 px) and PCA (at most 30 components), a "
        "spectral branch, flips/rotations and noise, label smoothing, a learnable temperature; "
        "a refit on training + validation, and the linear pixel model kept instead where the "
        "network does not beat it on validation",
        window=None,
        largest_window=16,
        variance=0.999,
        limit_components=True,
        spectral_branch=True,
        windows_per_image=20,
        temperature="learnable",
        init_scale=10.0,
        prototypes="fixed",
        refit=True,
        compare_linear=True,
        cnn=FitOptions(
            epochs=40,
            patience=8,
            batch_size=64,
            weight_decay=1e-3,
            augment=Augment(scale=(0.9, 1.1), flip=True, rot90=True, noise=0.05),
            label_smoothing=0.1,
        ),
        semantic=FitOptions(
            epochs=30,
            patience=8,
            batch_size=64,
            weight_decay=1e-4,
            augment=Augment(scale=(0.9, 1.1), flip=True, rot90=True, noise=0.05),
        ),
    ),
    "paper": Preset(
        name="paper",
        description="the paper's recipe: 32x32 object windows, PCA at 99.9 % variance, the "
        "3D-CNN with Keras L2 1e-2/1e-3/1e-4 on its convolutions, Adam, batch 4, 100 epochs "
        "(patience 15), random scale 0.9-1.1, then the semantic head with a plain cosine",
        window=32,
        largest_window=32,
        variance=0.999,
        limit_components=False,
        spectral_branch=False,
        windows_per_image=20,
        temperature="fixed",
        init_scale=1.0,
        prototypes="fixed",
        refit=False,
        compare_linear=False,
        cnn=FitOptions(
            epochs=100,
            patience=15,
            batch_size=4,
            weight_decay=0.0,
            layer_weight_decay=PAPER_CONV_L2,
            augment=Augment(scale=(0.9, 1.1)),
        ),
        semantic=FitOptions(
            epochs=50, patience=15, batch_size=4, weight_decay=0.0, augment=Augment(scale=None)
        ),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; a ValueError lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]
