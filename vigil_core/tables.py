"""TOML tables read into pydantic models: the rule table and the incidents file.

A shipped default file is overlaid key by key by the operator's file; a bad value fails at load with the file,
the key and what was expected (never later, inside an alert).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vigil_core.errors import VigilError

__all__ = ["ConfigFileError", "load_toml_overlaid", "validated"]

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(VigilError, ValueError):
    """A configuration file is invalid: `path`, `key` and `expected` say where and what."""

    def __init__(self, path: Path, key: str, expected: str) -> None:
        self.path = path
        self.key = key
        self.expected = expected
        super().__init__(f"{path}: {key}: {expected}")


def load_toml_overlaid(default: Path, path: Path | None) -> tuple[dict[str, Any], Path]:
    """`default` parsed, with the tables of `path` (if given) merged over it key by key; (raw, file named in errors)."""

    def read(p: Path) -> dict[str, Any]:
        try:
            with open(p, "rb") as fh:
                return tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(p, "(file)", f"valid TOML ({exc})") from exc
        except OSError as exc:
            raise ConfigFileError(p, "(file)", f"a readable file ({exc.strerror})") from exc

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    raw = read(default)
    if path is None:
        return raw, default
    return merge(raw, read(Path(path))), Path(path)


def validated(model: type[M], raw: dict[str, Any], path: Path) -> M:
    """`raw` as `model`, or ConfigFileError naming the first wrong key and what it should be."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "(table)"
        raise ConfigFileError(path, key, err["msg"]) from exc
