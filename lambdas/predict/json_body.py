"""The request body's JSON parser (the resolver's `json_body_deserializer`): strict where `json.loads`
is lenient. A key twice in one object is refused with its path (json.loads keeps the last one, so an
invalid value followed by a valid one would pass unseen); so are NaN and Infinity (not JSON),
integers too long to convert, and nesting too deep to parse (a RecursionError, not a 500)."""

import json
import re
from typing import Any

# A client-supplied key is echoed (and logged) only if it looks like a field name.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


class BodyError(ValueError):
    """A body this API refuses before validating it against the schema: a 422 with one problem."""

    def __init__(self, path: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.path, self.kind, self.message = path, kind, message


class _Duplicated(dict[str, Any]):
    """An object that had `key` more than once; marked so its path can be found after parsing."""

    key: str


def parse(text: str) -> Any:
    """`text` as JSON; raises `BodyError` (or `json.JSONDecodeError` for a syntax error)."""
    duplicated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicated
        value = dict(items)
        if len(value) == len(items):
            return value
        duplicated = True
        marked = _Duplicated(value)
        marked.key = _repeated(items)
        return marked

    try:
        document = json.loads(text, object_pairs_hook=pairs, parse_constant=_not_json)
    except RecursionError:
        raise BodyError("$", "json_too_deep", "the JSON is nested too deeply") from None
    except (json.JSONDecodeError, BodyError):
        raise
    except ValueError:  # an integer of more than 4,300 digits
        raise BodyError("$", "json_invalid", "a number in the JSON is too long to read") from None
    if duplicated:
        path, key = _first_duplicate(document)
        raise BodyError(f"{path}{key_path(key)}", "duplicate_key", "this key appears more than once in its object")
    return document


def key_path(key: str) -> str:
    """One step of a JSON path for a client-supplied key: `.key`, or `.<key>` if it is not name-like."""
    return f".{key}" if _NAME.fullmatch(key) else ".<key>"


def _repeated(items: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no key is repeated")


def _not_json(constant: str) -> Any:
    raise BodyError("$", "json_invalid", "NaN and Infinity are not JSON")


def _first_duplicate(document: Any) -> tuple[str, str]:
    """The path of the first object (in document order) that had a key twice, and the key. Iterative:
    the document may be nested nearly as deep as the parser allows."""
    stack: list[tuple[Any, str]] = [(document, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Duplicated):
            return path, value.key
        if isinstance(value, dict):
            stack.extend((v, f"{path}{key_path(k)}") for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    raise AssertionError("a duplicated object was parsed but not found")
