"""Dotted field paths (`spec.parameters.size`) and `{field.path}` templates over objects."""

import functools
import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_MISSING = object()


class MissingField(LookupError):
    """A field path that names nothing in the object."""

    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


def split(path: str) -> list[str]:
    parts = path.split(".")
    if not path or any(p == "" for p in parts):
        raise ValueError(f"{path!r} is not a dotted field path")
    return parts


@functools.lru_cache(maxsize=4096)
def _parts(path: str) -> tuple[str, ...]:
    # The same few paths are read over every object of every request.
    return tuple(split(path))


def get(obj: Any, path: str, default: Any = _MISSING) -> Any:
    """Return the value at `path`; raise MissingField (or return `default`) when absent."""
    current = obj
    for part in _parts(path):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            if default is _MISSING:
                raise MissingField(path)
            return default
    return current


def set_value(obj: dict, path: str, value: Any) -> None:
    """Set `path` to `value`, creating objects on the way; a number indexes a list (its
    length appends). Never overwrite a field of another type to get there (TypeError)."""
    parts = split(path)
    current: Any = obj
    for number, part in enumerate(parts):
        last = number == len(parts) - 1
        where = ".".join(parts[: number + 1])
        if isinstance(current, list):
            if not part.isdigit() or int(part) > len(current):
                raise TypeError(f"{where}: a list takes an index up to {len(current)}")
            if int(part) == len(current):
                current.append(value if last else {})
            elif last:
                current[int(part)] = value
            current = current[int(part)]
            continue
        if last:
            current[part] = value
            return
        child = current.get(part)
        if child is None:
            child = current[part] = {}
        elif not isinstance(child, dict | list):
            raise TypeError(f"{where} is a {type(child).__name__}, not an object")
        current = child


def kind_of(value: Any) -> str:
    """`value`'s type as a person reads it in a message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else "null"


def clash(obj: Any, path: str) -> str | None:
    """Why an object cannot be written at `path` of `obj` without replacing a value of
    another type (a field on the way, or at `path`, that is not an object); None if it can.
    Null counts as absent."""
    parts = split(path)
    current = obj
    for number, part in enumerate(parts):
        value = current.get(part) if isinstance(current, dict) else None
        if value is None:
            return None
        if not isinstance(value, dict):
            return f"{'.'.join(parts[: number + 1])} is {kind_of(value)}, not an object"
        current = value
    return None


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def render(template: str, *sources: dict) -> str:
    """Replace each `{field.path}` with its value from the first source that has it."""

    def lookup(match: re.Match) -> str:
        path = match.group(1).strip()
        found = None
        for source in sources:
            value = get(source, path, None)
            if value is not None and not isinstance(value, dict | list):
                return _scalar(value)
            found = found if value is None else value
        if found is not None:
            raise ValueError(f"XR field {path} is {kind_of(found)}, not a value")
        raise MissingField(path)

    return _PLACEHOLDER.sub(lookup, template)


def _scalar(value: Any) -> str:
    # Struct numbers arrive as floats: 3.0 must render as "3".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Safe readers for objects we did not write: a field of the wrong type reads as absent.


def mapping(obj: Any, path: str) -> dict:
    value = get(obj, path, None)
    return value if isinstance(value, dict) else {}


def items(obj: Any, path: str) -> list:
    value = get(obj, path, None)
    return value if isinstance(value, list) else []


def text(obj: Any, path: str) -> str | None:
    value = get(obj, path, None)
    return value if isinstance(value, str) and value else None
