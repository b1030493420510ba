"""Dataclass fields that carry their help text, accepted types and choices: what the command
line flags and the config-file checks of `s3fn train` are built from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import Field, field
from typing import Any

KIND_NAMES = {
    str: "a string",
    int: "an integer",
    (int, float): "a number",
    bool: "true or false",
    list: "a list",
}


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message names the file and the key."""


def meta(help: str, kind: type | tuple[type, ...], **extra: Any) -> dict[str, Any]:
    """Field metadata: the help text, the accepted type(s) and any `choices`."""
    return {"help": help, "kind": kind, **extra}


def option(default: Any, help: str, kind: type | tuple[type, ...], **extra: Any) -> Any:
    """A dataclass field with an immutable default and its metadata."""
    return field(default=default, metadata=meta(help, kind, **extra))


def check_values(values: Mapping[str, Any], known: Iterable[Field], where: str) -> None:
    """Raise `ConfigError` for a key that is not one of the `known` fields, a value of the wrong
    type or a value outside the field's choices; `where` names the file (or the command line)."""
    known = {f.name: f for f in known}
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
            raise ConfigError(f"{where}: {key} = {value!r}; expected {KIND_NAMES[kind]}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{where}: {key} = {value!r}; expected one of {', '.join(choices)}")
