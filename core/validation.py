"""Decode request bodies with msgspec and turn its errors into Kontena's 422 trees."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from core.errors import ErrorTree, Invalid, InvalidJson

T = TypeVar("T")

_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_SEGMENT = re.compile(r"\.(\w+)|\[(\d+|\.\.\.)\]")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")

# msgspec's wording → the `mutations` gem's wording Kontena clients show to users.
_MESSAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^Expected `int`.*got"), "isn't an integer"),
    (re.compile(r"^Expected `(float|number)`.*got"), "isn't a number"),
    (re.compile(r"^Expected `str`.*got"), "isn't a string"),
    (re.compile(r"^Expected `bool`.*got"), "isn't a boolean"),
    (re.compile(r"^Expected `array`.*got"), "isn't an array"),
    (re.compile(r"^Expected `object`.*got"), "isn't a hash"),
    (re.compile(r"^Expected `\w+` of length >="), "is too short"),
    (re.compile(r"^Expected `\w+` of length <="), "is too long"),
    (re.compile(r"^Expected `\w+` matching regex"), "isn't in the right format"),
    (re.compile(r"^Expected `\w+` >="), "is too small"),
    (re.compile(r"^Expected `\w+` <="), "is too big"),
    (re.compile(r"^Invalid enum value"), "isn't an option"),
    (re.compile(r"^Object contains unknown field"), "isn't allowed"),
]


def titleize(key: str) -> str:
    """``initial_size`` → ``Initial size``, as the mutations gem names fields."""
    return key.replace("_", " ").capitalize()


def set_error(tree: ErrorTree, path: list[str | int], message: str) -> None:
    """Place ``message`` at ``path`` in ``tree``; integer steps make lists."""
    node: Any = tree
    for step, nxt in zip(path, [*path[1:], None], strict=True):
        if nxt is None:
            _assign(node, step, message)
            return
        child = _get(node, step)
        if child is None:
            child = [] if isinstance(nxt, int) else {}
            _assign(node, step, child)
        node = child


def _get(node: Any, step: str | int) -> Any:
    if isinstance(node, list):
        assert isinstance(step, int)
        return node[step] if step < len(node) else None
    return node.get(step)


def _assign(node: Any, step: str | int, value: Any) -> None:
    if isinstance(node, list):
        assert isinstance(step, int)
        node.extend([None] * (step + 1 - len(node)))
        node[step] = value
    else:
        node[step] = value


def error_tree(exc: msgspec.ValidationError) -> ErrorTree | str:
    """Translate one msgspec validation error into a Kontena error tree."""
    text = str(exc)
    path: list[str | int] = []
    if match := _PATH.search(text):
        for key, index in _SEGMENT.findall(match.group("path")):
            if key:
                path.append(key)
            elif index != "...":
                path.append(int(index))
        text = text[: match.start()]
    if missing := _MISSING.match(text):
        field = missing.group("field")
        tree: ErrorTree = {}
        set_error(tree, [*path, field], f"{titleize(field)} is required")
        return tree
    if not path:
        return "Body must be a JSON object" if "object" in text else text
    label = _label(path)
    # Optional fields say `int | null`; the wording is the same as for `int`.
    text = text.replace(" | null`", "`")
    message = next((f"{label} {w}" for p, w in _MESSAGES if p.search(text)), f"{label} {text}")
    tree = {}
    set_error(tree, path, message)
    return tree


def _label(path: list[str | int]) -> str:
    """Name the field the way Kontena does: the last key, with ``[i]`` for list items."""
    label = ""
    for step in path:
        label = f"{label}[{step}]" if isinstance(step, int) else titleize(step)
    return label


def parse_json(raw: bytes) -> Any:
    """Parse a request body; empty means ``{}`` as in Kontena."""
    if not raw.strip():
        return {}
    if b"\\u0000" in raw:
        raise InvalidJson()  # valid JSON, but no database stores a NUL in text
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidJson() from exc


def convert(data: Any, type_: type[T]) -> T:
    """Convert decoded JSON into ``type_`` or raise a 422 naming the field."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        raise Invalid(error_tree(exc)) from exc


def decode_body(raw: bytes, type_: type[T]) -> T:
    """Parse and validate a JSON request body in one step."""
    return convert(parse_json(raw), type_)
