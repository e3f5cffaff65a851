"""Typed handoff contracts: pydantic models named in a spec by import path.

A contract is ``"package.module:ClassName"``. The workflow validates every
agent output against its contract before any later agent sees it; the client
validates every case against the input contract before anything starts.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError


class ContractError(Exception):
    """An import path does not name a pydantic model."""


_ALIASES: dict[str, str] = {}


def alias_modules(aliases: dict[str, str]) -> None:
    """Resolve contracts of module ``old`` from module ``new`` (an app's ``contract_aliases``).

    A spec snapshot names its contracts by import path and lives in each case's
    history, so renaming a contract module would strand every running case. An
    alias keeps old paths resolving. Set before any case runs (the worker and the
    CLI do it when they load the app); later additions clear the resolution cache.
    """
    changed = {old: new for old, new in aliases.items() if _ALIASES.get(old) != new}
    if changed:
        _ALIASES.update(changed)
        resolve_contract.cache_clear()


@lru_cache(maxsize=256)
def resolve_contract(path: str) -> type[BaseModel]:
    """Import the model named by ``module:Class``; raises ContractError if it does not resolve."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise ContractError(f"{path!r} is not of the form 'package.module:ClassName'")
    module_name = _ALIASES.get(module_name, module_name)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ContractError(f"{path!r}: cannot import {module_name!r} ({exc})") from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ContractError(f"{path!r}: {module_name!r} has no {qualname!r}") from None
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise ContractError(f"{path!r} is not a pydantic model")
    return target


def validation_problems(error: ValidationError) -> list[str]:
    """One ``field.path: message`` line per error, the way a person reads them."""
    problems = []
    for item in error.errors(include_url=False):
        where = format_location(item["loc"]) or "(whole object)"
        problems.append(f"{where}: {item['msg']}")
    return problems


def format_location(loc: tuple[str | int, ...] | list[str | int]) -> str:
    """``("flow", 2, "agent")`` → ``flow[2].agent``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def check_against(model: type[BaseModel], data: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """Validate ``data``; return the canonical JSON-ready dict, or the problems."""
    try:
        return model.model_validate(data).model_dump(mode="json"), []
    except ValidationError as exc:
        return None, validation_problems(exc)
