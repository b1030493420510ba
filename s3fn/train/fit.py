"""`fit`: one training stage with validation, early stopping, checkpoints and resume."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function
from torch.utils.data import DataLoader, Dataset

from s3fn.train import distributed
from s3fn.train.augment import Augment
from s3fn.train.checkpoint import load_checkpoint, save_checkpoint
from s3fn.train.early_stopping import EarlyStopping
from s3fn.train.frozen import backbone_features, can_cache, feature_plan
from s3fn.train.loading import make_loader, on_device
from s3fn.train.options import MONITORS, FitOptions
from s3fn.train.precision import Precision
from s3fn.train.seeding import (
    derive_seed,
    deterministic_algorithms,
    rng_state,
    seed_everything,
    set_rng_state,
)
from s3fn.train.stages import StagePlan, plan_stage

log = logging.getLogger("s3fn.train")

Callback = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    """What a `fit` call did: one history record per epoch and where it ended."""

    stage: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    stopped_early: bool = False
    checkpoint: Path | None = None
    seconds: float = 0.0  # wall time of this call: feature caching, epochs, checkpoints

    @property
    def epochs_run(self) -> int:
        """Number of epochs trained (including those before a resume)."""
        return len(self.history)


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None = None,
    *,
    stage: str = "cnn",
    options: FitOptions | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    verbose: bool = False,
    **changes: Any,
) -> FitResult:
    """Train `model` for one stage ("cnn", "semantic" or "joint", see `plan_stage`).

    Data are Datasets of (window, label[, image id]) items (or DataLoaders, used as given);
    windows are C x h x w or 1 x C x h x w. `options` (default `FitOptions()`) updated by
    `changes` (e.g. `epochs=20, lr=3e-4`) set the hyper-parameters. Every epoch reseeds from
    (`seed`, epoch), so CPU runs are bit-reproducible on one machine. With `checkpoint_dir`,
    the state after each epoch is written atomically to `<checkpoint_dir>/<stage>.pt`;
    `resume=True` continues from it (or starts afresh if there is none) and ends on the same
    weights as an uninterrupted run. `callbacks` get each epoch's record after its checkpoint
    is written. The model ends in eval mode, on `device` (default: CUDA if available, else CPU).
    A "semantic" stage computes the frozen backbone's features once (once per augmentation
    draw, `frozen_draws`, where augmentation changes the windows) and trains the head on them
    (`cache_frozen`; without augmentation, the result of running the backbone each epoch, up to
    float rounding).
    Inside an initialised torch.distributed group, training is data-parallel (see
    `s3fn.train.distributed`): `batch_size` is the global batch and rank 0 alone writes.
    """
    began = time.perf_counter()
    opts = replace(options or FitOptions(), **changes)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    plan = plan_stage(
        model, stage, label_smoothing=opts.label_smoothing, text_targets=opts.text_targets
    )
    ddp = distributed.current()
    writer = ddp is None or ddp.is_writer
    cached = (
        opts.cache_frozen
        and ddp is None
        and can_cache(model, stage)
        and not isinstance(train_data, DataLoader)
        and not isinstance(val_data, DataLoader)
    )
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{stage}.pt"
    architecture = model.config() if hasattr(model, "config") else type(model).__name__
    settings = {"stage": stage, "seed": seed, "model": architecture, **opts.fingerprint()}
    monitored = opts.monitor == "train_loss" or val_data is not None
    with deterministic_algorithms(opts.deterministic):
        seed_everything(seed)
        optimizer = opts.make_optimizer(plan.named_params)
        scheduler = opts.scheduler(optimizer) if opts.scheduler is not None else None
        precision = Precision(device, opts.amp)
        stopper = EarlyStopping(
            opts.patience, mode=MONITORS[opts.monitor], min_delta=opts.min_delta
        )
        result = FitResult(stage, checkpoint=path)
        parts = (model, optimizer, scheduler, precision, stopper)
        resumable = resume and path is not None and path.exists()
        if resumable and _restore(path, settings, parts, result):
            return _finish(model, result, began, verbose and writer)
        augment = opts.augment
        train_sets = [train_data]
        if cached:
            train_sets = _feature_draws(model, train_data, opts, seed, device)
            if val_data is not None:
                val_data = backbone_features(model, val_data, opts.eval_batch_size, device)
            plan, augment = feature_plan(plan), None
        loaders = [
            make_loader(data, opts.batch_size, True, opts.num_workers, device, ddp, opts.balance)
            for data in train_sets
        ]
        val_loader = None
        if val_data is not None:
            val_loader, _ = make_loader(
                val_data, opts.eval_batch_size, False, opts.num_workers, device, ddp
            )
        train_plan = plan if ddp is None else ddp.wrap(plan)
        augment_generator = torch.Generator(device=device)
        for epoch in range(result.epochs_run + 1, opts.epochs + 1):
            start = time.perf_counter()
            train_loader, generator = loaders[(epoch - 1) % len(loaders)]
            torch.manual_seed(derive_seed(seed, epoch, 0))
            if generator is not None:
                generator.manual_seed(derive_seed(seed, epoch, 1))
            augment_generator.manual_seed(derive_seed(seed, epoch, 2))
            record: dict[str, Any] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            record["train_loss"], record["windows"] = _train_epoch(
                train_plan,
                train_loader,
                optimizer,
                precision,
                augment,
                augment_generator,
                device,
                ddp,
            )
            record["train_seconds"] = time.perf_counter() - start
            if val_loader is not None:
                with record_function("s3fn.validate"):
                    record["val_loss"], record["val_accuracy"] = _validate(
                        plan.module, val_loader, precision, device, ddp
                    )
            improved = monitored and stopper.step(record[opts.monitor], epoch, model)
            record["improved"] = improved
            record["seconds"] = time.perf_counter() - start
            _step_scheduler(scheduler, record.get(opts.monitor))
            result.history.append(record)
            result.stopped_early = monitored and stopper.should_stop
            finished = result.stopped_early or epoch == opts.epochs
            if finished and monitored and opts.restore_best:
                stopper.restore(model)
            result.best_epoch, result.best_score = _best(stopper, monitored, result)
            if path is not None and writer:
                with record_function("s3fn.checkpoint"):
                    _save(path, settings, parts, result, finished)
            _report(record, opts, stage, verbose and writer)
            for callback in callbacks:
                callback(record)
            if result.stopped_early:
                break
    return _finish(model, result, began, verbose and writer)


def _feature_draws(
    model: nn.Module, data: Dataset, opts: FitOptions, seed: int, device: torch.device
) -> list[Dataset]:
    """The frozen backbone's features of the training windows: once, or once per augmentation
    draw (`opts.frozen_draws` copies, draw d seeded as the per-epoch path seeds epoch d + 1)."""
    if opts.augment is None or not opts.augment.changes_input:
        return [backbone_features(model, data, opts.eval_batch_size, device)]
    sets = []
    for draw in range(min(opts.frozen_draws, opts.epochs)):  # no epoch would take the others
        generator = torch.Generator(device=device).manual_seed(derive_seed(seed, draw + 1, 2))
        sets.append(
            backbone_features(model, data, opts.eval_batch_size, device, opts.augment, generator)
        )
    return sets


def _train_epoch(
    plan: StagePlan,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    augment: Augment | None,
    generator: torch.Generator,
    device: torch.device,
    ddp: distributed.Distributed | None,
) -> tuple[float, int]:
    """One pass over `loader`: (mean training loss, windows trained on, over all ranks)."""
    plan.module.train()
    if ddp is not None:
        augment = ddp.shard_augment(augment)
    total, count = torch.zeros((), device=device), 0
    for batch in loader:
        x, y = on_device(batch, device)
        if augment is not None:
            with record_function("s3fn.augment"):
                x = augment(x, generator)
        optimizer.zero_grad(set_to_none=True)
        with record_function("s3fn.forward"), precision.autocast():
            loss = plan.loss(x, y)
        with record_function("s3fn.backward"):
            precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
        total += loss.detach().float() * len(y)
        count += len(y)
    if ddp is not None:
        total, count = ddp.sum(total, count)
    if count == 0:
        raise ValueError("fit: the training data yielded no batches")
    return float(total) / count, int(count)


@torch.no_grad()
def _validate(
    module: nn.Module,
    loader: Iterable,
    precision: Precision,
    device: torch.device,
    ddp: distributed.Distributed | None,
) -> tuple[float, float]:
    module.eval()
    total, correct, count = 0.0, 0, 0
    for batch in loader:
        x, y = on_device(batch, device)
        with precision.autocast():
            logits = module(x)
        total += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        count += len(y)
    if ddp is not None:
        total, correct, count = ddp.sum(total, correct, count)
    if count == 0:
        raise ValueError("fit: the validation data yielded no batches")
    return total / count, correct / count


def _step_scheduler(scheduler: Any, score: float | None) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if score is not None:
            scheduler.step(score)
    else:
        scheduler.step()


def _best(
    stopper: EarlyStopping, monitored: bool, result: FitResult
) -> tuple[int | None, float | None]:
    if monitored:
        return stopper.best_epoch, stopper.best_score
    return result.epochs_run, None


def _save(path: Path, settings: dict, parts: tuple, result: FitResult, finished: bool) -> None:
    model, optimizer, scheduler, precision, stopper = parts
    save_checkpoint(
        path,
        {
            "settings": settings,
            "epoch": result.epochs_run,
            "finished": finished,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "scaler": precision.scaler.state_dict(),
            "early_stopping": stopper.state_dict(),
            "history": result.history,
            "stopped_early": result.stopped_early,
            "rng": rng_state(),
        },
    )


def _restore(path: Path, settings: dict, parts: tuple, result: FitResult) -> bool:
    """Load a checkpoint into the run; returns whether that stage had already finished."""
    model, optimizer, scheduler, precision, stopper = parts
    state = load_checkpoint(path)
    for key, value in settings.items():
        if state["settings"].get(key) != value:
            raise ValueError(
                f"{path}: written with {key}={state['settings'].get(key)!r}, this run has "
                f"{key}={value!r}; pass the same settings to resume, or resume=False"
            )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    precision.scaler.load_state_dict(state["scaler"])
    stopper.load_state_dict(state["early_stopping"])
    set_rng_state(state["rng"])
    result.history = list(state["history"])
    result.stopped_early = bool(state["stopped_early"])
    monitored = stopper.best_epoch is not None
    result.best_epoch, result.best_score = _best(stopper, monitored, result)
    log.info("resumed %s after epoch %d from %s", result.stage, result.epochs_run, path)
    return bool(state["finished"])


def _report(record: dict[str, Any], opts: FitOptions, stage: str, verbose: bool) -> None:
    parts = [f"[{stage}] epoch {record['epoch']}/{opts.epochs}"]
    parts += [
        f"{k} {record[k]:.4f}" for k in ("train_loss", "val_loss", "val_accuracy") if k in record
    ]
    parts.append(f"{record['seconds']:.1f}s" + (" *" if record["improved"] else ""))
    line = "  ".join(parts)
    log.info(line)
    if verbose:
        print(line, flush=True)


def _finish(model: nn.Module, result: FitResult, began: float, verbose: bool) -> FitResult:
    model.eval()
    result.seconds = time.perf_counter() - began
    if result.checkpoint is not None and verbose:
        print(f"[{result.stage}] checkpoint: {result.checkpoint}", flush=True)
    return result
