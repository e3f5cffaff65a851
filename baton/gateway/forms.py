"""A submission form drawn from a process's input contract (its JSON Schema), and read back.

The contract is the one source of truth: the form shows its fields, titles, descriptions,
choices and bounds, and what comes back is converted to JSON types and then checked by
the same :func:`baton.client.prepare_case` the CLI uses, so the web says exactly what
``baton start`` would ("requested_amount: Input should be greater than 0"). Fields the
form cannot draw as one input (a nested object, a list) are a JSON text area.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class FormField:
    """One input of the form."""

    name: str
    label: str
    kind: str  # text | textarea | number | integer | checkbox | select | json | date | datetime-local
    required: bool
    help: str = ""
    choices: tuple[str, ...] = ()
    default: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` (``anyOf`` with null) read as X."""
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return {**schema, **options[0]} if len(options) == 1 else schema


def form_fields(contract: type[BaseModel]) -> list[FormField]:
    """The inputs for ``contract``'s fields, in its declared order."""
    schema = contract.model_json_schema()
    required = set(schema.get("required", []))
    found: list[FormField] = []
    for name, raw in schema.get("properties", {}).items():
        prop = _plain(raw)
        kind, attrs = "json", {}
        choices: tuple[str, ...] = ()
        if "enum" in prop:
            kind, choices = "select", tuple(str(c) for c in prop["enum"])
        elif prop.get("type") in ("number", "integer"):
            kind = prop["type"]
            for key, attr in (("minimum", "min"), ("maximum", "max")):
                if key in prop:
                    attrs[attr] = prop[key]
            attrs["step"] = "1" if kind == "integer" else "any"
        elif prop.get("type") == "boolean":
            kind = "checkbox"
        elif prop.get("type") == "string":
            long = prop.get("maxLength", 0) > 200
            kind = {"date": "date", "date-time": "datetime-local"}.get(prop.get("format", ""), "text")
            if kind == "text" and long:
                kind = "textarea"
            if "maxLength" in prop:
                attrs["maxlength"] = prop["maxLength"]
        found.append(
            FormField(
                name=name,
                label=str(prop.get("title") or name),
                kind=kind,
                required=name in required,
                help=str(prop.get("description", "")),
                choices=choices,
                default=prop.get("default"),
                attrs=attrs,
            )
        )
    return found


def read_form(fields: list[FormField], form: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The case typed from the posted ``form``, and the fields that could not be read as their type."""
    case: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields:
        text = form.get(f.name, "")
        if f.kind == "checkbox":
            case[f.name] = text == "on"
            continue
        if text.strip() == "":
            continue  # missing: the contract says whether that is allowed
        try:
            if f.kind == "integer":
                case[f.name] = int(text.strip())
            elif f.kind == "number":
                number = float(text.strip())
                if not math.isfinite(number):
                    raise ValueError(text)
                case[f.name] = number
            elif f.kind == "json":
                case[f.name] = json.loads(text)
            else:
                case[f.name] = text
        except (ValueError, RecursionError):
            expected = {"integer": "a whole number", "number": "a finite number", "json": "JSON"}[f.kind]
            problems.append(f"{f.name}: expected {expected}")
    return case, problems
