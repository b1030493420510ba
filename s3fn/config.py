"""Run configuration of `s3fn train`: every option, its default, and TOML / YAML files.

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

CONFIG_FILE = "config.yaml"
STAGES = ("two-stage", "joint", "cnn", "spectral-mean")
_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    (int, float): "a number",
    bool: "true or false",
    list: "a list",
}


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message names the file and the key."""


def _meta(help: str, kind: type | tuple[type, ...], **extra: Any) -> dict[str, Any]:
    """Field metadata: the help text, the accepted type(s) and any choices."""
    return {"help": help, "kind": kind, **extra}


def _option(default: Any, help: str, kind: type | tuple[type, ...], **extra: Any) -> Any:
    """A dataclass field with an immutable default and its metadata."""
    return field(default=default, metadata=_meta(help, kind, **extra))


@dataclass
class TrainConfig:
    """Everything `s3fn train` needs; the field names are the config keys (`--key-name` flags)."""

    data: str | None = _option(
        None,
        "object dataset folder (root/<class>/<cubes>), a CSV manifest (path,label[,mask]), a "
        "scene cube (with --labels), or builtin:materials / builtin:materials-scene",
        str,
    )
    labels: str | None = _option(None, "label map of a scene cube (0 = unlabelled)", str)
    classes: list[str] | None = field(
        default=None,
        metadata=_meta("class names (scene: labels 1..K; objects: folder names, in order)", list),
    )
    key: str | None = _option(None, "array name inside .mat/.npz/HDF5 cube files", str)
    labels_key: str | None = _option(None, "array name inside the label-map file", str)
    descriptions: str | None = _option(
        None, "class descriptions file (JSON/YAML), or bundled:materials", str
    )
    embeddings: str | None = _option(
        None, "class embeddings file from `s3fn embed` (instead of --descriptions)", str
    )
    encoder: str | None = _option(
        None, "text encoder: a Hugging Face name or folder (default: bundled MiniLM)", str
    )
    pooling: str = _option(
        "label-token", "text pooling", str, choices=("label-token", "mean", "cls")
    )
    stage: str = _option("two-stage", "what to train", str, choices=STAGES)
    preset: str = _option(
        "default",
        "training recipe: default (measured best) or paper (the paper's exact recipe)",
        str,
        choices=("default", "paper"),
    )
    split: str | None = _option(
        None, "split.json of an earlier run on the same data, to reuse its split", str
    )
    window: int | None = _option(
        None, "window side in pixels (default: fitted to the objects / the scene)", int
    )
    windows_per_image: int | None = _option(
        None, "random windows per object image (default: the preset's)", int
    )
    n_components: int | None = _option(
        None, "PCA components (default: --variance, within a range the preset sets)", int
    )
    variance: float | None = _option(
        None, "PCA variance kept (default: the preset's)", (int, float)
    )
    train: float = _option(
        0.6, "training part: a fraction, or images per class when >= 1", (int, float)
    )
    val: float = _option(0.2, "validation part: a fraction, or images per class", (int, float))
    block_size: int | None = _option(
        None, "scene split block side (default: the side that balances the parts best)", int
    )
    seed: int = _option(0, "seed of the split, the windows and the training", int)
    epochs: int | None = _option(None, "maximum epochs of the CNN stage", int)
    semantic_epochs: int | None = _option(None, "maximum epochs of the semantic/joint stage", int)
    patience: int | None = _option(None, "early-stopping patience in epochs", int)
    batch_size: int | None = _option(None, "(global) batch size", int)
    lr: float | None = _option(None, "learning rate", (int, float))
    weight_decay: float | None = _option(None, "weight decay", (int, float))
    optimizer: str = _option("adam", "optimizer", str, choices=("adam", "adamw"))
    augment_scale: list[float] | None = field(
        default=None,
        metadata=_meta("random global scale range (lo hi); an empty list turns it off", list),
    )
    flip: bool | None = _option(None, "random flips", bool)
    rot90: bool | None = _option(None, "random 90-degree rotations", bool)
    noise: float | None = _option(None, "Gaussian noise added to training windows", (int, float))
    label_smoothing: float | None = _option(
        None, "label smoothing of the CNN stage's cross-entropy", (int, float)
    )
    spectral_branch: bool | None = _option(
        None, "feed the window's mean spectrum to the feature layer", bool
    )
    temperature: str | None = _option(
        None, "cosine-logit scale", str, choices=("fixed", "learnable")
    )
    init_scale: float | None = _option(None, "(initial) scale of the cosine logits", (int, float))
    prototypes: str | None = _option(
        None,
        "class vectors of the cosine logits: the text embeddings (fixed) or learnt from them",
        str,
        choices=("fixed", "learnable"),
    )
    text_targets: float | None = _option(
        None,
        "target mass the CNN stage moves onto the classes with the most similar descriptions",
        (int, float),
    )
    head_dim: int | None = _option(None, "semantic head width (default: text dimension)", int)
    channels: list[int] = field(
        default_factory=lambda: [32, 64, 128],
        metadata=_meta("3D-CNN channels of the three convs", list),
    )
    padding: int = _option(0, "3D-CNN zero padding", int)
    voting: str = _option("majority", "image voting", str, choices=("majority", "mean-prob"))
    device: str | None = _option(None, "cpu, cuda, cuda:1 ... (default: CUDA if available)", str)
    threads: int | None = _option(None, "CPU threads (torch.set_num_threads)", int)
    num_workers: int = _option(0, "DataLoader worker processes", int)
    amp: bool = _option(True, "mixed precision on CUDA", bool)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (YAML/JSON-ready)."""
        return asdict(self)

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
    """The dataclass fields of `TrainConfig`, with their help text and types in `metadata`."""
    return list(fields(TrainConfig))


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
    check_values(data, str(path))
    return data


def check_values(values: Mapping[str, Any], where: str) -> None:
    """Raise `ConfigError` for an unknown key, a wrong type or a value outside its choices."""
    known = {f.name: f for f in option_fields()}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown option {key!r}; expected one of {', '.join(sorted(known))}"
            )
        if value is None:
            continue
        meta = known[key].metadata
        kind = meta["kind"]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{where}: {key} = {value!r}; expected {_KIND_NAMES[kind]}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{where}: {key} = {value!r}; expected one of {', '.join(choices)}")


def resolve(*layers: Mapping[str, Any]) -> TrainConfig:
    """The defaults updated by each layer in turn (config file, then command line)."""
    values: dict[str, Any] = {}
    for layer in layers:
        values.update(layer)
    return TrainConfig(**values)
