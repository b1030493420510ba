"""`s3fn train`: data + descriptions -> a run folder (config, log, checkpoints, windows, metrics,
report, inference bundle). Every option is also a config key; see `s3fn.config.TrainConfig`.

Under `torchrun --nproc-per-node N -m s3fn train ...` it trains data-parallel: rank 0 alone
writes the run folder; the other ranks cut their windows into a temporary folder and read the
checkpoints of rank 0 when resuming. The window stores are deleted once a run has finished
(a resumed run cuts them again, identically).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from s3fn.cli.common import print_outputs, set_threads
from s3fn.cli.datasets import SPLIT_FILE, load_split, make_split, open_data, split_to_dict
from s3fn.cli.embeddings import encode, load_embeddings, read_descriptions
from s3fn.cli.outputs import METRICS_FILE, scene_maps, score, summary_line, write_results
from s3fn.cli.progress import CountingObjects, Progress
from s3fn.config import CONFIG_FILE, TrainConfig, load_config_file, option_fields, resolve
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.defaults import Choice
from s3fn.data.errors import S3FNDataError
from s3fn.data.splits import SceneSplit
from s3fn.inference import Classifier
from s3fn.train import Augment, FitOptions, train_classifier
from s3fn.train import distributed as dist
from s3fn.train.allocator import keep_freed_memory
from s3fn.train.presets import get_preset

BUNDLE_DIR, LOG_FILE, WINDOWS_DIR = "bundle", "train.log", "windows"
PLANS = {
    "two-stage": ("s3fn", ("cnn", "semantic")),
    "joint": ("s3fn", ("joint",)),
    "cnn": ("cnn", ("cnn",)),
    "spectral-mean": ("spectral-mean", ("cnn",)),
}
LABELS = {
    "two-stage": "S3FN (two-stage)",
    "joint": "S3FN (joint)",
    "cnn": "3D-CNN",
    "spectral-mean": "Spectral-mean MLP",
}
_ITEM_TYPES = {"classes": (str, "NAME"), "channels": (int, "N"), "augment_scale": (float, "X")}


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register the subcommand, one flag per `TrainConfig` field."""
    parser = commands.add_parser(
        "train",
        parents=[parent],
        help="train a classifier into a run folder",
        description="Train S3FN (or a baseline) and write a run folder: config.yaml (the "
        "configuration used), train.log, checkpoints/, metrics.json, report.md + PNGs and "
        "bundle/ (the inference bundle). Every option below is also a key of a TOML/YAML "
        "--config file (the command line wins).",
    )
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    run_group.add_argument("--config", metavar="FILE", help="TOML or YAML file of options")
    run_group.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a killed run from its checkpoints"
    )
    options = parser.add_argument_group("options (also config keys, with _ for -)")
    defaults = TrainConfig().to_dict()
    for spec in option_fields():
        flag = "--" + spec.name.replace("_", "-")
        meta = spec.metadata
        shown = defaults[spec.name]
        text = meta["help"] if shown is None else f"{meta['help']} (default: {shown})"
        common = {"dest": spec.name, "default": argparse.SUPPRESS, "help": text}
        if meta["kind"] is bool:
            options.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif meta["kind"] is list:
            nargs = "*" if spec.name == "augment_scale" else "+"
            item, metavar = _ITEM_TYPES[spec.name]
            options.add_argument(flag, nargs=nargs, type=item, metavar=metavar, **common)
        else:
            kind = meta["kind"] if isinstance(meta["kind"], type) else float
            options.add_argument(flag, type=kind, choices=meta.get("choices"), **common)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the configuration (defaults < resumed run < --config < flags) and train."""
    given = {f.name: getattr(args, f.name) for f in option_fields() if hasattr(args, f.name)}
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise S3FNDataError("--resume RUN_DIR continues that folder; leave out --out")
        out = Path(args.resume)
        saved = out / CONFIG_FILE
        if not saved.is_file():
            raise FileNotFoundError(f"{saved}: not found; expected a run folder of s3fn train")
        base = load_config_file(saved)
    elif args.out:
        out = Path(args.out)
        if (out / CONFIG_FILE).exists():
            raise S3FNDataError(
                f"{out}: already holds a run; pass --resume {out} to continue it, or another --out"
            )
        base = {}
    else:
        raise S3FNDataError("no run folder: pass --out RUN_DIR (or --resume RUN_DIR)")
    from_file = load_config_file(args.config) if args.config else {}
    config = resolve(base, from_file, given)
    train_run(config, out, resume=bool(args.resume), progress=Progress(args.quiet))
    return 0


def fit_options(config: TrainConfig) -> tuple[FitOptions, FitOptions]:
    """The options of the CNN stage and of the semantic / joint stage: the preset's, with every
    option the config gives applied to both."""
    recipe = get_preset(config.preset)
    given = {
        "batch_size": config.batch_size,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "patience": config.patience,
    }
    common = {k: v for k, v in given.items() if v is not None}
    common.update(optimizer=config.optimizer, num_workers=config.num_workers, amp=config.amp)
    first = replace(recipe.cnn, **common, augment=_augment(config, recipe.cnn.augment))
    second = replace(recipe.semantic, **common, augment=_augment(config, recipe.semantic.augment))
    if config.epochs is not None:
        first = replace(first, epochs=config.epochs)
    if config.semantic_epochs is not None:
        second = replace(second, epochs=config.semantic_epochs)
    if config.label_smoothing is not None:
        first = replace(first, label_smoothing=config.label_smoothing)
    if config.text_targets is not None:
        first = replace(first, text_targets=config.text_targets)
    return first, second


def _augment(config: TrainConfig, base: Augment | None) -> Augment:
    base = base or Augment(scale=None)
    changes: dict = {}
    if config.augment_scale is not None:
        scale = tuple(config.augment_scale) or None
        if scale is not None and len(scale) != 2:
            raise S3FNDataError(
                f"augment_scale = {config.augment_scale}; expected two numbers lo hi"
            )
        changes["scale"] = scale
    for name in ("flip", "rot90", "noise"):
        if getattr(config, name) is not None:
            changes[name] = getattr(config, name)
    return replace(base, **changes)


def class_embeddings(
    config: TrainConfig, class_names: list[str], progress: Progress
) -> tuple[torch.Tensor | None, str | None]:
    """The class embeddings an S3FN stage needs (None for the baselines), and the encoder."""
    if PLANS[config.stage][0] != "s3fn":
        return None, None
    if config.embeddings:
        return load_embeddings(config.embeddings, class_names), f"file {config.embeddings}"
    if not config.descriptions:
        raise S3FNDataError(
            f"stage {config.stage!r} needs --descriptions FILE (or --embeddings FILE); "
            "--stage cnn trains the plain 3D-CNN"
        )
    descriptions = read_descriptions(config.descriptions)
    return encode(
        descriptions, class_names, progress, encoder=config.encoder, pooling=config.pooling
    )


def train_run(config: TrainConfig, out: Path, *, resume: bool, progress: Progress) -> list[Path]:
    """Train as `config` says into `out`; returns the files written (rank 0)."""
    group = dist.init_from_env()
    writer = group is None or group.is_writer
    progress = progress if writer else Progress(quiet=True)
    try:
        files = _train(config, out, resume, progress, group)
        # Every rank past its last collective before the group goes: gloo torn down on one
        # rank while another still used it aborted that process now and then.
        dist.barrier()
        return files
    finally:
        dist.shutdown()


def _train(
    config: TrainConfig,
    out: Path,
    resume: bool,
    progress: Progress,
    group: dist.Distributed | None,
) -> list[Path]:
    writer = group is None or group.is_writer
    set_threads(config.threads)
    keep_freed_memory()
    data = open_data(
        config.data,
        labels=config.labels,
        classes=config.classes,
        key=config.key,
        labels_key=config.labels_key,
    )
    embeddings, encoder = class_embeddings(config, data.class_names, progress)
    if config.split:
        split, choices = load_split(data, config.split), {}
    else:
        split, choices = make_split(
            data,
            train=config.train,
            val=config.val,
            seed=config.seed,
            window=config.window,
            block_size=config.block_size,
        )
    window = split.window[0] if isinstance(split, SceneSplit) else config.window
    options, semantic_options = fit_options(config)
    with ExitStack() as stack:
        if writer:
            out.mkdir(parents=True, exist_ok=True)
            (out / "checkpoints").mkdir(exist_ok=True)
            config.save(out)
            (out / SPLIT_FILE).write_text(json.dumps(split_to_dict(data, split)) + "\n")
            stack.callback(_log_to(out / LOG_FILE))
        dist.barrier()
        workdir = out if writer else _rank_workdir(out, stack)
        model, stages = PLANS[config.stage]
        dataset = CountingObjects(data) if isinstance(data, ObjectDataset) else data
        if isinstance(dataset, CountingObjects):
            reads = 2 * len(split.train) + len(dataset)
            stack.enter_context(dataset.counting(progress.bar(reads, "cutting windows", "image")))
        stack.enter_context(progress.epochs())
        start = time.perf_counter()
        classifier = train_classifier(
            dataset,
            split,
            preset=config.preset,
            model=model,
            class_embeddings=embeddings,
            window=window,
            windows_per_image=config.windows_per_image,
            n_components=config.n_components,
            variance=config.variance,
            channels=config.channels,
            padding=config.padding,
            spectral_branch=config.spectral_branch,
            head_dim=config.head_dim,
            temperature=config.temperature,
            init_scale=config.init_scale,
            prototypes=config.prototypes,
            stages=stages,
            options=options,
            semantic_options=semantic_options,
            voting=config.voting,
            seed=config.seed,
            device=config.device,
            workdir=workdir,
            resume=resume,
            in_memory=True,
        )
        seconds = time.perf_counter() - start
    if not writer:
        return []
    _record_choices(config, out, choices, classifier)
    return _finish(config, out, data, split.test, classifier, encoder, seconds, progress)


def _finish(
    config: TrainConfig,
    out: Path,
    data: ObjectDataset | SceneDataset,
    test: np.ndarray,
    classifier: Classifier,
    encoder: str | None,
    seconds: float,
    progress: Progress,
) -> list[Path]:
    """Save the bundle, score the test part, write metrics and report, print where they went."""
    classifier.info["text_encoder"] = encoder
    bundle = classifier.save(out / BUNDLE_DIR)
    shutil.rmtree(out / WINDOWS_DIR, ignore_errors=True)  # a resume cuts them again
    histories = classifier.info["histories"]
    epochs = ", ".join(f"{stage} {len(h)} epochs" for stage, h in histories.items())
    print(f"trained {LABELS[config.stage]} ({epochs}, {seconds:.0f} s)")
    extra = {
        "train_seconds": round(seconds, 1),
        "stage_seconds": classifier.info.get("stage_seconds"),
        "text_encoder": encoder,
    }
    if len(test) == 0:
        metrics = out / METRICS_FILE
        record = {"scalars": None, "test": None, "histories": histories, **extra}
        metrics.write_text(json.dumps(record, indent=2) + "\n")
        print(
            "no test part (the split left none): the bundle is not scored; "
            "score it on other data with `s3fn evaluate`"
        )
        files = [metrics]
    else:
        evaluation = score(classifier, data, test, progress)
        scene = scene_maps(classifier, data, progress) if isinstance(data, SceneDataset) else None
        files = write_results(
            out,
            LABELS[config.stage],
            evaluation,
            title=f"s3fn train: {LABELS[config.stage]} on {config.data}",
            histories=histories,
            config=config.to_dict(),
            scene=scene,
            extra=extra,
        )
        print(f"test {summary_line(evaluation)}")
    written = [out / CONFIG_FILE, out / LOG_FILE, out / "checkpoints", bundle, *files]
    print_outputs(f"run folder {out}:", written)
    return written


def _record_choices(
    config: TrainConfig, out: Path, choices: dict[str, Choice], classifier: Classifier
) -> None:
    """Print what was chosen from the data and why, and write it into config.yaml: the values
    as options (so --resume and --config repeat them), the reasons as comments."""
    reasons = {key: (c.value, c.reason) for key, c in choices.items()}
    for key, made in classifier.info.get("choices", {}).items():
        reasons.setdefault(key, (made["value"], made["reason"]))
    for key, (value, why) in reasons.items():
        print(f"chose {key} = {value}: {why}")
    values = {
        k: v for k, (v, _) in reasons.items() if k in ("window", "block_size", "n_components")
    }
    if not config.split:
        config = replace(config, **values)
    config.save(out, {key: f"{value} ({why})" for key, (value, why) in reasons.items()})


def _log_to(path: Path) -> Callable[[], None]:
    """Send the package's log (epoch lines included) to `path`; returns the undo."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logger = logging.getLogger("s3fn")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()

    return undo


def _rank_workdir(out: Path, stack: ExitStack) -> Path:
    """A private folder for a non-zero rank's windows, its checkpoints linked to rank 0's."""
    folder = Path(tempfile.mkdtemp(prefix="s3fn-rank-"))
    stack.callback(shutil.rmtree, folder, True)
    (folder / "checkpoints").symlink_to((out / "checkpoints").resolve(), target_is_directory=True)
    return folder
