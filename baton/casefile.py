"""Reading a case file (JSON or YAML) into plain data, or one line saying what is wrong.

A case file is written by a person or exported by another system, so every way it
can be unreadable is an expected condition: the caller gets a
:class:`~baton.errors.BatonUsageError` that names the file, the cause and the fix,
never a Python traceback. That covers bytes that are not UTF-8, syntax errors (with
line and column), numbers too long to convert, and nesting so deep that a parser,
pydantic or ``json`` would exhaust the interpreter's recursion limit later.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from baton.errors import BatonUsageError

MAX_DEPTH = 64
"""Deepest nesting of objects and lists a case may have.

Real cases are a handful of levels deep; the bound keeps every later recursive
walk (pydantic validation, JSON encoding, the CEL guards) far from Python's
recursion limit, whatever the file holds.
"""

MAX_VALUES = 200_000
"""Most values (scalars and containers, counted as expanded) a case may hold.

A YAML alias repeats its anchor without copying it, so a few lines can stand for
millions of values ("billion laughs"); every later step copies them out in full.
A case within ``BATON_MAX_CASE_BYTES`` holds far fewer.
"""

YAML_SUFFIXES = (".yaml", ".yml")


def read_case_file(path: str) -> Any:
    """Read a JSON or YAML case file (YAML when it ends in ``.yaml``/``.yml``).

    Args:
        path: the file to read.

    Returns:
        The parsed value: usually a dict, checked against the input contract later.

    Raises:
        BatonUsageError: the file cannot be read, is not UTF-8, does not parse, or
            is nested more than :data:`MAX_DEPTH` levels deep. The message is one
            line naming the file, the cause and what to do.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BatonUsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        # utf-8-sig: accept the byte-order mark some editors write, which json rejects.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatonUsageError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    try:
        value = _parse_yaml(path, text) if path.endswith(YAML_SUFFIXES) else _parse_json(path, text)
    except RecursionError:
        # The parsers recurse once per level; the interpreter stopped them long after MAX_DEPTH.
        raise _too_deep(path) from None
    check_shape(value, path)
    return value


def check_shape(value: Any, source: str) -> None:
    """Refuse ``value`` if it nests deeper than :data:`MAX_DEPTH` or expands past :data:`MAX_VALUES`.

    The walk recurses at most ``MAX_DEPTH + 1`` levels and visits each container
    once, so YAML aliases repeating one list many times cost nothing here, while
    the count says what they would cost every later step. A YAML anchor that
    contains itself is named, since any later walk would loop on it forever.

    Raises:
        BatonUsageError: too deep, too many values, or the value contains itself.
    """
    shapes: dict[int, tuple[int, int]] = {}  # id of a container -> (height, values inside)
    on_path: set[int] = set()

    def shape(node: Any, level: int) -> tuple[int, int]:
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            return 0, 1
        key = id(node)
        if key in on_path:
            raise BatonUsageError(
                f"{source}: a value contains itself (a YAML alias inside its own anchor); "
                "write the data out instead"
            )
        known = shapes.get(key)
        if known is None:
            if level > MAX_DEPTH:
                raise _too_deep(source)
            on_path.add(key)
            height, count = 0, 1
            for child in children:
                child_height, child_count = shape(child, level + 1)
                height, count = max(height, child_height), count + child_count
                if count > MAX_VALUES:
                    raise BatonUsageError(
                        f"{source}: more than {MAX_VALUES} values (counting each YAML alias "
                        "in full); store large data elsewhere and pass a reference"
                    )
            on_path.discard(key)
            known = shapes[key] = (height + 1, count)
        if level + known[0] - 1 > MAX_DEPTH:  # a shared container seen before, now deeper down
            raise _too_deep(source)
        return known

    shape(value, 1)


def _too_deep(source: str) -> BatonUsageError:
    return BatonUsageError(f"{source}: nested too deeply (more than {MAX_DEPTH} levels); flatten the case")


def _too_long(source: str) -> BatonUsageError:
    return BatonUsageError(
        f"{source}: a number has more than {sys.get_int_max_str_digits()} digits; write it as a string"
    )


def _parse_json(path: str, text: str) -> Any:
    def parse_int(digits: str) -> int:
        # Checked here: int() of a longer string raises a ValueError that json passes on bare.
        if len(digits.lstrip("-")) > sys.get_int_max_str_digits():
            raise _too_long(path)
        return int(digits)

    try:
        return json.loads(text, parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise BatonUsageError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


class _CaseLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing integers too long for ``int()`` with a clear error."""

    source = "<case>"


def _construct_int(loader: _CaseLoader, node: yaml.ScalarNode) -> int:
    digits = str(node.value).replace("_", "").lstrip("+-")
    if len(digits) > sys.get_int_max_str_digits():
        raise _too_long(loader.source)
    value: int = loader.construct_yaml_int(node)
    return value


_CaseLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _parse_yaml(path: str, text: str) -> Any:
    loader = _CaseLoader(text)
    loader.source = path
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise BatonUsageError(f"{path}: {where}{problem}{context}") from None
    except yaml.YAMLError as exc:
        raise BatonUsageError(f"{path}: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
