"""`s3fn train`: data + descriptions -> a run folder (config, log, checkpoints, windows, metrics,
report, inference bundle). Every option is also a config key; see `s3fn.config.TrainConfig`.
The run itself is `s3fn.train.run.train_run`.
"""

from __future__ import annotations

import argparse

from s3fn.cli.common import set_threads
from s3fn.config import TrainConfig, option_fields, run_config
from s3fn.progress import Progress

_ITEM_TYPES = {"classes": (str, "NAME"), "channels": (int, "N"), "augment_scale": (float, "X")}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and one flag per `TrainConfig` field."""
    parser.description = (
        "Train S3FN (or a baseline) and write a run folder: config.yaml (the configuration "
        "used), train.log, checkpoints/, metrics.json, report.md + PNGs and bundle/ (the "
        "inference bundle). Every option below is also a key of a TOML/YAML --config file "
        "(the command line wins)."
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
    from s3fn.train.run import train_run

    given = {f.name: getattr(args, f.name) for f in option_fields() if hasattr(args, f.name)}
    config, out = run_config(args.out, args.resume, args.config, given)
    set_threads(config.threads)
    train_run(config, out, resume=bool(args.resume), progress=Progress(args.quiet))
    return 0
