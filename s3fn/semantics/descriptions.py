"""Class descriptions: the in-memory type, the JSON/YAML file format, and the bundled sets.

A descriptions file is `{"classes": {"<class name>": ["paragraph", ...], ...}, "meta": {...}}`
in JSON (`.json`) or YAML (`.yaml`/`.yml`). Class order in the file is kept; `meta` is free-form.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from s3fn.atomic import atomic_write_bytes

TOP_LEVEL_KEYS = ("classes", "meta")
_JSON_SUFFIXES = (".json",)
_YAML_SUFFIXES = (".yaml", ".yml")


class DescriptionsError(ValueError):
    """A descriptions file or mapping that does not have the expected shape."""


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_classes(classes: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(classes, Mapping):
        raise DescriptionsError(
            f"{where}: classes: expected a mapping of class name to a list of paragraphs, "
            f"got {_type_name(classes)}"
        )
    if not classes:
        raise DescriptionsError(f"{where}: classes: expected at least one class, got none")
    checked: dict[str, tuple[str, ...]] = {}
    for name, paragraphs in classes.items():
        if not isinstance(name, str) or not name.strip():
            raise DescriptionsError(
                f"{where}: classes: expected non-empty string class names, got {name!r}"
            )
        if name != name.strip():
            raise DescriptionsError(
                f"{where}: classes: class name {name!r} has leading or trailing whitespace"
            )
        if isinstance(paragraphs, str) or not isinstance(paragraphs, Sequence):
            raise DescriptionsError(
                f"{where}: classes.{name}: expected a list of paragraphs, "
                f"got {_type_name(paragraphs)}"
            )
        if not paragraphs:
            raise DescriptionsError(
                f"{where}: classes.{name}: expected at least one paragraph, got an empty list"
            )
        for i, paragraph in enumerate(paragraphs):
            if not isinstance(paragraph, str) or not paragraph.strip():
                shown = repr(paragraph) if isinstance(paragraph, str) else _type_name(paragraph)
                raise DescriptionsError(
                    f"{where}: classes.{name}[{i}]: expected a non-empty string, got {shown}"
                )
        checked[name] = tuple(p.strip() for p in paragraphs)
    return checked


@dataclass(frozen=True, eq=False)
class Descriptions:
    """Paragraphs describing each class, in class order, plus free-form metadata.

    Construction validates the shape (paragraphs become stripped tuples), so every
    `Descriptions` can be encoded and saved; `source` names the origin in error messages.
    Equality compares the class order too, since it fixes the rows of the class embeddings.
    """

    classes: Mapping[str, Sequence[str]]
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: str = field(default="descriptions", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", _check_classes(self.classes, self.source))
        if not isinstance(self.meta, Mapping):
            raise DescriptionsError(
                f"{self.source}: meta: expected a mapping, got {_type_name(self.meta)}"
            )
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def names(self) -> list[str]:
        """The class names, in order."""
        return list(self.classes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Descriptions):
            return NotImplemented
        same_order = list(self.classes) == list(other.classes)
        return same_order and self.classes == other.classes and self.meta == other.meta

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.classes)

    def __getitem__(self, name: str) -> Sequence[str]:
        return self.classes[name]

    def select(self, names: Sequence[str]) -> Descriptions:
        """These descriptions restricted to and ordered as `names` (e.g. a dataset's classes).

        Raises when a name has no description, so embeddings can never be matched to the
        wrong class; classes not in `names` are left out.
        """
        missing = [n for n in names if n not in self.classes]
        if missing:
            raise DescriptionsError(
                f"{self.source}: classes: missing {', '.join(map(repr, missing))}; "
                f"described classes are {', '.join(map(repr, self.classes))}"
            )
        if len(set(names)) != len(names):
            raise DescriptionsError(f"{self.source}: select: duplicate class names in {names!r}")
        return Descriptions({n: self.classes[n] for n in names}, self.meta, self.source)

    def to_dict(self) -> dict[str, Any]:
        """The file representation: `{"classes": {name: [paragraphs]}, "meta": {...}}`."""
        return {
            "classes": {name: list(paragraphs) for name, paragraphs in self.classes.items()},
            "meta": dict(self.meta),
        }


def _reject_duplicate_keys(pairs: list[tuple[str, Any]], where: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DescriptionsError(f"{where}: duplicate key {key!r}")
        result[key] = value
    return result


def _yaml_loader(where: str) -> type[yaml.SafeLoader]:
    class _Loader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, Hashable) and key in seen:
                    raise DescriptionsError(f"{where}: duplicate key {key!r}")
                if isinstance(key, Hashable):
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return _Loader


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _JSON_SUFFIXES + _YAML_SUFFIXES:
        raise DescriptionsError(
            f"{path}: expected a .json, .yaml or .yml descriptions file, "
            f"got {suffix or 'no suffix'!r}"
        )
    return suffix


def parse_descriptions(data: object, *, source: str = "descriptions") -> Descriptions:
    """Validate an already-parsed `{"classes": ..., "meta": ...}` object into `Descriptions`."""
    if not isinstance(data, Mapping):
        raise DescriptionsError(
            f"{source}: expected a mapping with keys 'classes' and 'meta', got {_type_name(data)}"
        )
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise DescriptionsError(
            f"{source}: unknown key {', '.join(map(repr, unknown))}; expected only "
            f"{' and '.join(map(repr, TOP_LEVEL_KEYS))}"
        )
    if "classes" not in data:
        raise DescriptionsError(
            f"{source}: classes: missing; expected a mapping of class name to a list of paragraphs"
        )
    return Descriptions(data["classes"], data.get("meta") or {}, source)


def load_descriptions(
    path: str | os.PathLike[str], *, classes: Sequence[str] | None = None
) -> Descriptions:
    """Read a JSON or YAML descriptions file; with `classes`, check and order it to match them.

    Every error names the file, the field and what was expected.
    """
    path = Path(path)
    suffix = _suffix(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DescriptionsError(f"{path}: cannot read descriptions file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise DescriptionsError(f"{path}: expected UTF-8 text ({exc.reason})") from exc
    try:
        if suffix in _JSON_SUFFIXES:
            data = json.loads(
                text, object_pairs_hook=lambda pairs: _reject_duplicate_keys(pairs, str(path))
            )
        else:
            data = yaml.load(text, Loader=_yaml_loader(str(path)))
    except json.JSONDecodeError as exc:
        raise DescriptionsError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except yaml.YAMLError as exc:
        raise DescriptionsError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from exc
    descriptions = parse_descriptions(data, source=str(path))
    return descriptions if classes is None else descriptions.select(classes)


def save_descriptions(path: str | os.PathLike[str], descriptions: Descriptions) -> Path:
    """Write `descriptions` as JSON or YAML (by the suffix), atomically; returns the path."""
    path = Path(path)
    if _suffix(path) in _JSON_SUFFIXES:
        text = json.dumps(descriptions.to_dict(), indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(
            descriptions.to_dict(), sort_keys=False, allow_unicode=True, width=100
        )
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def bundled_names() -> list[str]:
    """Names of the description sets shipped with s3fn (e.g. `"materials"`)."""
    folder = resources.files("s3fn.semantics") / "data"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def bundled_descriptions(name: str = "materials") -> Descriptions:
    """A description set shipped with s3fn; `"materials"` covers the built-in dataset's classes."""
    available = bundled_names()
    if name not in available:
        raise DescriptionsError(
            f"bundled descriptions: unknown set {name!r}; available: {', '.join(available)}"
        )
    resource = resources.files("s3fn.semantics") / "data" / f"{name}.json"
    with resources.as_file(resource) as path:
        return load_descriptions(path)
