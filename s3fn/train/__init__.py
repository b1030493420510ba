"""Training: `fit` for the stages "cnn", "semantic" and "joint", with early stopping on validation
data, atomic per-epoch checkpoints, resume, augmentation and seeding for reproducible runs;
`train_classifier` goes from a dataset, a split and `TrainSettings` to a `s3fn.Classifier`;
`s3fn.train.run.train_run` is a whole `s3fn train` run into a run folder."""

from s3fn.train.allocator import keep_freed_memory
from s3fn.train.augment import Augment
from s3fn.train.checkpoint import load_checkpoint, save_checkpoint
from s3fn.train.early_stopping import EarlyStopping
from s3fn.train.fit import FitResult, fit
from s3fn.train.options import MONITORS, OPTIMIZERS, FitOptions
from s3fn.train.pipeline import train_classifier
from s3fn.train.seeding import (
    derive_seed,
    deterministic_algorithms,
    rng_state,
    seed_everything,
    seed_worker,
    set_rng_state,
)
from s3fn.train.settings import Recipe, TrainSettings, resolve
from s3fn.train.stages import STAGES, StagePlan, plan_stage

__all__ = [
    "MONITORS",
    "OPTIMIZERS",
    "STAGES",
    "Augment",
    "EarlyStopping",
    "FitOptions",
    "FitResult",
    "Recipe",
    "StagePlan",
    "TrainSettings",
    "derive_seed",
    "deterministic_algorithms",
    "fit",
    "keep_freed_memory",
    "load_checkpoint",
    "plan_stage",
    "resolve",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "seed_worker",
    "set_rng_state",
    "train_classifier",
]
