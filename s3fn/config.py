"""Run configuration of `s3fn train`: the training settings (`s3fn.train.TrainSettings`) plus
what the run itself needs (data, labels, descriptions, split, threads), and TOML / YAML files.

Precedence: the defaults here < a config file (`--config run.toml` or `.yaml`) < command-line
options. The run folder gets `config.yaml`, the configuration actually used, which
`s3fn train --config` and `--resume` read back.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from s3fn.data.splits import HOLDOUTS
from s3fn.run_folder import CONFIG_FILE
from s3fn.settings_fields import ConfigError, check_values, meta, option
from s3fn.train.settings import TrainSettings, setting_fields

__all__ = [
    "CONFIG_FILE",
    "ConfigError",
    "TrainConfig",
    "check_values",
    "load_config_file",
    "option_fields",
    "resolve",
]


@dataclass
class TrainConfig(TrainSettings):
    """Everything `s3fn train` needs: the run's own fields below, and every `TrainSettings`
    field; the field names are the config keys (`--key-name` flags)."""

    data: str | None = option(
        None,
        "object dataset folder (root/<class>/<cubes>), a CSV manifest (path,label[,mask]), a "
        "scene cube (with --labels), or builtin:materials / builtin:materials-scene",
        str,
    )
    labels: str | None = option(None, "label map of a scene cube (0 = unlabelled)", str)
    classes: list[str] | None = field(
        default=None,
        metadata=meta("class names (scene: labels 1..K; objects: folder names, in order)", list),
    )
    key: str | None = option(None, "array name inside .mat/.npz/HDF5 cube files", str)
    labels_key: str | None = option(None, "array name inside the label-map file", str)
    descriptions: str | None = option(
        None, "class descriptions file (JSON/YAML), or bundled:materials", str
    )
    embeddings: str | None = option(
        None, "class embeddings file from `s3fn embed` (instead of --descriptions)", str
    )
    encoder: str | None = option(
        None, "text encoder: a Hugging Face name or folder (default: bundled MiniLM)", str
    )
    pooling: str = option(
        "label-token", "text pooling", str, choices=("label-token", "mean", "cls")
    )
    split: str | None = option(
        None, "split.json of an earlier run on the same data, to reuse its split", str
    )
    train: float | None = option(
        None,
        "training part: a fraction, or images per class when >= 1 (default: every label not "
        "held out; when given without --test, what is left is tested)",
        (int, float),
    )
    val: float = option(0.2, "validation part: a fraction, or images per class", (int, float))
    test: float | None = option(
        None, "test part held out of training: a fraction, or images per class", (int, float)
    )
    test_labels: str | None = option(
        None, "a separate label map of the scene's pixels to score the run on (never trained)", str
    )
    block_size: int | None = option(
        None, "scene split block side (default: the side that balances the parts best)", int
    )
    holdout: str = option(
        "fields",
        "what a scene's validation part holds out whole: labelled fields (blocks for a class "
        "labelled in one field) or blocks",
        str,
        choices=HOLDOUTS,
    )
    threads: int | None = option(None, "CPU threads (torch.set_num_threads)", int)

    def settings(self) -> TrainSettings:
        """The training settings part of this configuration."""
        return TrainSettings(**{f.name: getattr(self, f.name) for f in setting_fields()})

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (YAML/JSON-ready), the run's own fields first."""
        values = asdict(self)
        return {f.name: values[f.name] for f in option_fields()}

    def save(self, folder: str | os.PathLike, reasons: Mapping[str, str] | None = None) -> Path:
        """Write `config.yaml` into `folder`, with `reasons` ({option: why}) for the values
        chosen from the data as comments at the end; returns its path."""
        path = Path(folder) / CONFIG_FILE
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if reasons:
            text += "# chosen from the data:\n" + "".join(
                f"#   {key}: {why}\n" for key, why in reasons.items()
            )
        path.write_text(text)
        return path


def option_fields() -> list[Any]:
    """The dataclass fields of `TrainConfig`, the run's own first, with their help text and
    types in `metadata`."""
    settings = {f.name for f in setting_fields()}
    own = [f for f in fields(TrainConfig) if f.name not in settings]
    return own + setting_fields()


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file into checked {key: value}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        else:
            raise ConfigError(f"{path}: unknown config format {suffix!r}; expected .toml or .yaml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {reason}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table of options at the top level")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    check_values(data, option_fields(), str(path))
    return data


def resolve(*layers: Mapping[str, Any]) -> TrainConfig:
    """The defaults updated by each layer in turn (config file, then command line)."""
    values: dict[str, Any] = {}
    for layer in layers:
        values.update(layer)
    return TrainConfig(**values)


def run_config(
    out: str | None,
    resume: str | None,
    config_file: str | None,
    given: Mapping[str, Any],
) -> tuple[TrainConfig, Path]:
    """The configuration of a run and its folder: the defaults < the resumed run's config.yaml
    < `config_file` < `given` (the command line). A new run's folder must not hold a run yet;
    a resumed one must."""
    if resume:
        if out and Path(out) != Path(resume):
            raise ConfigError("--resume RUN_DIR continues that folder; leave out --out")
        folder = Path(resume)
        saved = folder / CONFIG_FILE
        if not saved.is_file():
            raise FileNotFoundError(f"{saved}: not found; expected a run folder of s3fn train")
        base = load_config_file(saved)
    elif out:
        folder = Path(out)
        if (folder / CONFIG_FILE).exists():
            raise ConfigError(
                f"{folder}: already holds a run; pass --resume {folder} to continue it, or "
                "another --out"
            )
        base = {}
    else:
        raise ConfigError("no run folder: pass --out RUN_DIR (or --resume RUN_DIR)")
    from_file = load_config_file(config_file) if config_file else {}
    return resolve(base, from_file, given), folder
