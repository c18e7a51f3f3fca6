"""A tiny JSONPath subset for picking userinfo fields: ``$.a.b``, ``$..a``, ``[0]``, ``a;b``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# `..name` (search at any depth), `.name`, `['name']`, or `[index]`.
_SEGMENT = re.compile(
    r"(?P<deep>\.\.)(?P<dname>[^.\[\]]+)"
    r"|\.(?P<name>[^.\[\]]+)"
    r"|\[['\"](?P<quoted>[^'\"]+)['\"]\]"
    r"|\[(?P<index>-?\d+)\]"
)


class JsonPathError(ValueError):
    """The expression is outside the supported subset."""


def _segments(path: str) -> list[tuple[str, str | int]]:
    if not path.startswith("$"):
        raise JsonPathError(f"JSONPath must start with '$': {path!r}")
    rest, position, parsed = path[1:], 0, []
    while position < len(rest):
        match = _SEGMENT.match(rest, position)
        if match is None:
            raise JsonPathError(f"Unsupported JSONPath: {path!r}")
        if match["deep"]:
            parsed.append(("deep", match["dname"]))
        elif match["index"] is not None:
            parsed.append(("index", int(match["index"])))
        else:
            parsed.append(("key", match["name"] or match["quoted"]))
        position = match.end()
    return parsed


def _descend(value: Any, name: str) -> Iterator[Any]:
    """Every value stored under ``name`` anywhere below ``value``, breadth by document order."""
    if isinstance(value, dict):
        if name in value:
            yield value[name]
        for child in value.values():
            yield from _descend(child, name)
    elif isinstance(value, list):
        for child in value:
            yield from _descend(child, name)


def _step(value: Any, kind: str, arg: str | int) -> list[Any]:
    """What one path segment selects from one value."""
    if kind == "deep":
        return list(_descend(value, str(arg)))
    if kind == "key" and isinstance(value, dict) and arg in value:
        return [value[arg]]
    if kind == "index" and isinstance(value, list) and isinstance(arg, int):
        return [value[arg]] if -len(value) <= arg < len(value) else []
    return []


def _matches(document: Any, path: str) -> list[Any]:
    current = [document]
    for kind, arg in _segments(path):
        current = [hit for value in current for hit in _step(value, kind, arg)]
    return current


def first_value(document: Any, expression: str) -> str | None:
    """The first non-empty hit of the first ``;``-separated path that has one, as text.

    A list hit yields its first element, as the original's ``jsonpath_query`` did.
    """
    for path in (p.strip() for p in expression.split(";")):
        if not path:
            continue
        for hit in _matches(document, path):
            if isinstance(hit, list):
                hit = hit[0] if hit else None
            if isinstance(hit, bool) or hit is None or isinstance(hit, dict | list):
                continue
            text = str(hit).strip()
            if text:
                return text
    return None
