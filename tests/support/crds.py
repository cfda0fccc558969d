"""Validate Kubernetes objects against the upstream CRDs, as the API server would.

The CRDs are data kept outside the repository (see shared/crds/README.md). Tests find them
through $TCP_ACCESS_CRDS, or beside the repository at ../shared/crds; they are never copied in.

Each object goes through the API server's steps, in its order:
1. the schema's defaults are filled in;
2. the structural schema is checked (types, required, enum, bounds, patterns, formats, list
   types, junctors), and so is ObjectMeta (name, namespace, labels, annotations);
3. the x-kubernetes-validations CEL rules run, unless step 2 found a type or enum error.

It is stricter than the API server on purpose: unknown fields and nulls, which the API server
drops silently, are reported, because in what our function emits they are bugs.

CEL rules are parsed with cel-python's parser and run by the small evaluator below: cel-python's
interpreter needs about a second for the (quadratic) listener rules of a 32-listener
ListenerSet, and it lacks the Kubernetes extension functions.
"""

import base64
import binascii
import functools
import ipaddress
import json
import math
import os
import re
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import yaml
from celpy.celparser import CELParseError, CELParser
from celpy.evaluation import celbytes, celstr

ENV_VAR = "TCP_ACCESS_CRDS"
MISSING_CRDS = (
    "upstream CRDs not found at {}; set TCP_ACCESS_CRDS to the folder holding gateway-api/, "
    "crossplane/, provider-kubernetes/ and envoy-gateway/"
)

# The files each Gateway API flavour of the function validates against (see the CRDs' README).
FLAVOUR_FILES = {
    "v1.6": (
        "gateway-api/v1.6.1-standard-listenersets.yaml",
        "gateway-api/v1.6.1-standard-tcproutes.yaml",
    ),
    "v1.5": (
        "gateway-api/v1.6.1-standard-listenersets.yaml",
        "gateway-api/v1.5.1-experimental-tcproutes.yaml",
    ),
    "v1.4": (
        "gateway-api/v1.4.1-experimental-xlistenersets.yaml",
        "gateway-api/v1.4.1-experimental-tcproutes.yaml",
    ),
}
COMMON_FILES = (
    "gateway-api/v1.6.1-standard-gateways.yaml",
    "gateway-api/v1.6.1-standard-referencegrants.yaml",
    "provider-kubernetes/v1.2.1-kubernetes.crossplane.io_objects.yaml",
    "provider-kubernetes/v1.2.1-kubernetes.m.crossplane.io_objects.yaml",
    "envoy-gateway/v1.9.0-gateway.envoyproxy.io_securitypolicies.yaml",
    "envoy-gateway/v1.9.0-gateway.envoyproxy.io_clienttrafficpolicies.yaml",
)
_WRAPPER_GROUPS = frozenset({"kubernetes.crossplane.io", "kubernetes.m.crossplane.io"})


def configured_crd_dir() -> Path:
    """Where the CRDs should be: $TCP_ACCESS_CRDS, else <repo root>/../shared/crds."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    here = Path(__file__).resolve()
    repo_root = next(folder for folder in here.parents if (folder / "pyproject.toml").is_file())
    return repo_root.parent / "shared" / "crds"


def crd_dir() -> Path | None:
    """The CRD folder, or None when it does not exist."""
    path = configured_crd_dir()
    return path if path.is_dir() else None


# --- Go (RE2) regular expressions -----------------------------------------------------------

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": r"\x00-\x7f",
    "blank": r"\t ",
    "cntrl": r"\x00-\x1f\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": r"!-/:-@\[-`{-~",
    "space": r"\t\n\v\f\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}


@functools.cache
def go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go (RE2) regular expression with Python's re, keeping RE2's meaning.

    Differences handled: RE2's `$` (without the m flag) and `\\z` match only at the very end,
    where Python's `$` also matches before a final newline; RE2's \\d, \\w, \\s and \\b are
    ASCII-only; RE2's [[:alpha:]] classes and \\x{...} escapes. RE2 syntax Python lacks
    (\\p{...}, \\Q...\\E, \\C) raises re.error instead of being guessed at. Kubernetes searches
    (unanchored) with these patterns, so callers use .search().
    """
    multiline = re.search(r"\(\?[a-zA-Z]*m", pattern) is not None
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i = _translate_escape(pattern, i, in_class, out)
            continue
        if in_class and pattern.startswith("[:", i):
            end = pattern.find(":]", i)
            name = pattern[i + 2 : end] if end > 0 else ""
            if name not in _POSIX_CLASSES:
                raise re.error(f"unsupported POSIX class [:{name}:] in {pattern!r}")
            out.append(_POSIX_CLASSES[name])
            i = end + 2
            continue
        if in_class:
            in_class = char != "]"
            # Escaped so that Python does not read them as (future) set operations.
            out.append("\\" + char if char in "[&|~" else char)
        elif char == "[":
            in_class = True
            out.append(char)
            # A leading `^`, then a leading `]`, belong to the class rather than ending it.
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):
                out.append(r"\]")
                i += 1
        elif char == "$" and not multiline:
            out.append(r"\Z")
        else:
            out.append(char)
        i += 1
    return re.compile("".join(out), re.ASCII)


def _translate_escape(pattern: str, i: int, in_class: bool, out: list[str]) -> int:
    """Translate the escape at pattern[i]; return the index after it."""
    escape = pattern[i : i + 2]
    if escape == r"\z":
        out.append(r"\Z")
    elif escape == r"\s":
        # RE2's \s is [\t\n\f\r ]; Python's ASCII \s adds \v.
        out.append(r"\t\n\f\r " if in_class else r"[\t\n\f\r ]")
    elif escape in (r"\p", r"\P", r"\Q", r"\C"):
        raise re.error(f"RE2 escape {escape} has no Python equivalent")
    elif escape == r"\x" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i)
        try:
            code = int(pattern[i + 3 : end] if end > 0 else "", 16)
        except ValueError:
            raise re.error(r"invalid \x{...} escape") from None
        out.append(f"\\U{code:08x}")
        return end + 1
    else:
        out.append(escape)
    return i + 2


# --- CEL ------------------------------------------------------------------------------------


class CelError(Exception):
    """A CEL expression failed while running (the API server reports these too)."""


class CelCompileError(Exception):
    """A CEL expression does not parse, or names a function or variable we do not provide."""


@dataclass(frozen=True, order=True)
class CelDuration:
    """A CEL duration (google.protobuf.Duration), kept in nanoseconds like Go's time.Duration."""

    nanos: int


@dataclass(frozen=True)
class CelType:
    """A CEL type as a value: what type() returns and what `int`, `string`, ... name."""

    name: str


_Eval = Callable[[dict[str, Any]], Any]
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_IP = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_CIDR = (ipaddress.IPv4Interface, ipaddress.IPv6Interface)
_NUMBERS = (int, float)
_ORDERED = (int, float, str, bytes, bool, CelDuration)
_TYPE_IDENTS = frozenset({"bool", "int", "double", "string", "bytes", "list", "map", "null_type"})
_TYPE_NAMES = {
    bool: "bool",
    int: "int",
    float: "double",
    str: "string",
    bytes: "bytes",
    list: "list",
    dict: "map",
    type(None): "null_type",
    CelType: "type",
    CelDuration: "google.protobuf.Duration",
    ipaddress.IPv4Address: "net.IP",
    ipaddress.IPv6Address: "net.IP",
    ipaddress.IPv4Interface: "net.CIDR",
    ipaddress.IPv6Interface: "net.CIDR",
}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _no_overload(function: str, *args: Any) -> CelError:
    types = ", ".join(_type_name(arg) for arg in args)
    return CelError(f"no matching overload for {function}({types})")


def _int_result(value: int) -> int:
    if _INT_MIN <= value <= _INT_MAX:
        return value
    raise CelError("integer overflow")


def _cel_eq(a: Any, b: Any) -> bool:
    """CEL equality: numbers compare by value across int and double; other types never equal."""
    type_a, type_b = type(a), type(b)
    if type_a is type_b:
        if type_a is list:
            return len(a) == len(b) and all(map(_cel_eq, a, b))
        if type_a is dict:
            return a.keys() == b.keys() and all(_cel_eq(item, b[key]) for key, item in a.items())
        return a == b
    return type_a in _NUMBERS and type_b in _NUMBERS and a == b


def _compare(a: Any, b: Any, function: str) -> int:
    type_a, type_b = type(a), type(b)
    if (type_a is type_b and type_a in _ORDERED) or (type_a in _NUMBERS and type_b in _NUMBERS):
        return (a > b) - (a < b)
    raise _no_overload(function, a, b)


def _in(item: Any, container: Any) -> bool:
    if type(container) is list:
        return any(_cel_eq(item, element) for element in container)
    if type(container) is dict:
        if type(item) is str:
            return item in container
        return any(_cel_eq(item, key) for key in container)
    raise _no_overload("@in", item, container)


def _add(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is int:
            return _int_result(a + b)
        if kind in (float, str, bytes, list):
            return a + b
        if kind is CelDuration:
            return _duration_result(a.nanos + b.nanos)
    raise _no_overload("_+_", a, b)


def _subtract(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b) and kind in _NUMBERS:
        return _int_result(a - b) if kind is int else a - b
    if kind is type(b) is CelDuration:
        return _duration_result(a.nanos - b.nanos)
    raise _no_overload("_-_", a, b)


def _multiply(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b) and kind in _NUMBERS:
        return _int_result(a * b) if kind is int else a * b
    raise _no_overload("_*_", a, b)


def _divide(a: Any, b: Any) -> Any:
    if type(a) is type(b) is int:
        if b == 0:
            raise CelError("division by zero")
        quotient = abs(a) // abs(b)  # CEL, like Go, truncates toward zero
        return _int_result(quotient if (a < 0) == (b < 0) else -quotient)
    if type(a) is type(b) is float:
        if b == 0:  # IEEE 754, as in Go: no error
            b_sign = math.copysign(1.0, b)
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * b_sign
        return a / b
    raise _no_overload("_/_", a, b)


def _modulo(a: Any, b: Any) -> int:
    if type(a) is type(b) is int:
        if b == 0:
            raise CelError("modulus by zero")
        remainder = abs(a) % abs(b)  # the sign follows the dividend, as in Go
        return -remainder if a < 0 else remainder
    raise _no_overload("_%_", a, b)


def _negate(a: Any) -> Any:
    if type(a) is int:
        return _int_result(-a)
    if type(a) is float:
        return -a
    if type(a) is CelDuration:
        return _duration_result(-a.nanos)
    raise _no_overload("-_", a)


def _logical_not(a: Any) -> bool:
    if type(a) is bool:
        return not a
    raise _no_overload("!_", a)


def _select(value: Any, name: str) -> Any:
    if type(value) is dict:
        try:
            return value[name]
        except KeyError:
            raise CelError(f"no such key: {name}") from None
    raise CelError(f"cannot select field '{name}' from {_type_name(value)}")


def _index(value: Any, key: Any) -> Any:
    if type(value) is list:
        if type(key) is not int:
            raise _no_overload("_[_]", value, key)
        if not 0 <= key < len(value):
            raise CelError(f"index out of range: {key}")
        return value[key]
    if type(value) is dict:
        try:
            return value[key]
        except (KeyError, TypeError):
            raise CelError(f"no such key: {key!r}") from None
    raise _no_overload("_[_]", value, key)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "relation_eq": _cel_eq,
    "relation_ne": lambda a, b: not _cel_eq(a, b),
    "relation_lt": lambda a, b: _compare(a, b, "_<_") < 0,
    "relation_le": lambda a, b: _compare(a, b, "_<=_") <= 0,
    "relation_gt": lambda a, b: _compare(a, b, "_>_") > 0,
    "relation_ge": lambda a, b: _compare(a, b, "_>=_") >= 0,
    "relation_in": _in,
    "addition_add": _add,
    "addition_sub": _subtract,
    "multiplication_mul": _multiply,
    "multiplication_div": _divide,
    "multiplication_mod": _modulo,
}


# Standard functions and the Kubernetes extension libraries (strings, regex, ip, cidr).
# Anything else (url, quantity, lists, optional types, timestamps, uint) is not provided,
# and a rule that uses it fails to compile, so it is reported rather than passed.


def _string(value: Any, function: str) -> str:
    if type(value) is str:
        return value
    raise _no_overload(function, value)


def _integer(value: Any, function: str) -> int:
    if type(value) is int:
        return value
    raise _no_overload(function, value)


def _size(value: Any) -> int:
    if type(value) in (str, bytes, list, dict):
        return len(value)  # a string's size counts code points, as CEL does
    raise _no_overload("size", value)


def _matches(text: Any, pattern: Any) -> bool:
    try:
        compiled = go_regex(_string(pattern, "matches"))
    except re.error as error:
        raise CelError(f"invalid regular expression {pattern!r}: {error}") from None
    return compiled.search(_string(text, "matches")) is not None


def _contains(text: Any, part: Any) -> bool:
    return _string(part, "contains") in _string(text, "contains")


def _starts_with(text: Any, prefix: Any) -> bool:
    return _string(text, "startsWith").startswith(_string(prefix, "startsWith"))


def _ends_with(text: Any, suffix: Any) -> bool:
    return _string(text, "endsWith").endswith(_string(suffix, "endsWith"))


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def _split(text: Any, separator: Any, limit: Any = -1) -> list[str]:
    """Go's strings.SplitN: limit < 0 splits everywhere, 0 gives no parts, n > 0 at most n."""
    text, separator = _string(text, "split"), _string(separator, "split")
    limit = _integer(limit, "split")
    if limit == 0:
        return []
    if separator:
        return text.split(separator, limit - 1 if limit > 0 else -1)
    parts = list(text)  # an empty separator splits between code points (Go: between runes)
    if 0 < limit < len(parts):
        parts[limit - 1 :] = ["".join(parts[limit - 1 :])]
    return parts


def _join(parts: Any, separator: Any = "") -> str:
    if type(parts) is not list or any(type(part) is not str for part in parts):
        raise _no_overload("join", parts)
    return _string(separator, "join").join(parts)


def _replace(text: Any, old: Any, new: Any, limit: Any = -1) -> str:
    text, old, new = (_string(value, "replace") for value in (text, old, new))
    return text.replace(old, new, _integer(limit, "replace"))


def _index_of(text: Any, part: Any, start: Any = 0) -> int:
    text, part = _string(text, "indexOf"), _string(part, "indexOf")
    start = _integer(start, "indexOf")
    if not 0 <= start <= len(text):
        raise CelError(f"index out of range: {start}")
    return text.find(part, start)


def _last_index_of(text: Any, part: Any, last: Any = None) -> int:
    text, part = _string(text, "lastIndexOf"), _string(part, "lastIndexOf")
    if last is None:
        return text.rfind(part)
    last = _integer(last, "lastIndexOf")
    if not 0 <= last < max(len(text), 1):
        raise CelError(f"index out of range: {last}")
    return text.rfind(part, 0, last + len(part))


def _substring(text: Any, start: Any, end: Any = None) -> str:
    text, start = _string(text, "substring"), _integer(start, "substring")
    end = len(text) if end is None else _integer(end, "substring")
    if not 0 <= start <= end <= len(text):
        raise CelError(f"substring({start}, {end}) out of range for {len(text)} characters")
    return text[start:end]


def _char_at(text: Any, index: Any) -> str:
    text, index = _string(text, "charAt"), _integer(index, "charAt")
    if not 0 <= index <= len(text):
        raise CelError(f"index out of range: {index}")
    return text[index : index + 1]


_DECIMAL = re.compile(r"[-+]?[0-9]+", re.ASCII)
_TRUE_TEXTS = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE_TEXTS = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value) and _INT_MIN <= value <= _INT_MAX:
        return int(value)  # truncates toward zero, like CEL
    if type(value) is str and _DECIMAL.fullmatch(value):
        return _int_result(int(value))
    raise CelError(f"cannot convert {_type_name(value)} {value!r} to int")


def _to_double(value: Any) -> float:
    if type(value) in _NUMBERS:
        return float(value)
    if type(value) is str:
        try:
            return float(value)
        except ValueError:
            raise CelError(f"cannot convert {value!r} to double") from None
    raise _no_overload("double", value)


def _to_string(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) in _NUMBERS or isinstance(value, _IP):
        return str(value)
    if type(value) is CelDuration:  # CEL prints seconds, as protobuf's JSON form does
        seconds, nanos = divmod(abs(value.nanos), 1_000_000_000)
        sign = "-" if value.nanos < 0 else ""
        return f"{sign}{seconds}.{nanos:09d}".rstrip("0").rstrip(".") + "s"
    if type(value) is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise CelError("bytes are not valid UTF-8") from None
    raise _no_overload("string", value)


def _to_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is str and value in _TRUE_TEXTS | _FALSE_TEXTS:
        return value in _TRUE_TEXTS
    raise CelError(f"cannot convert {_type_name(value)} {value!r} to bool")


def _to_bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    return _string(value, "bytes").encode("utf-8")


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address as Kubernetes' ip() accepts it: no zone, no IPv4-mapped IPv6."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if "%" in text or (address.version == 6 and address.ipv4_mapped is not None):
        return None
    return address


def _parse_cidr(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    """A CIDR as Kubernetes' cidr() accepts it; like Kubernetes, it keeps the host bits."""
    address, slash, _ = text.partition("/")
    if not slash or _parse_ip(address) is None:
        return None
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        return None


def _is_ip(text: Any) -> bool:
    return _parse_ip(_string(text, "isIP")) is not None


def _ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = _parse_ip(_string(text, "ip"))
    if address is None:
        raise CelError(f"IP address {text!r} parse error")
    return address


def _is_cidr(text: Any) -> bool:
    return _parse_cidr(_string(text, "isCIDR")) is not None


def _cidr(text: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    prefix = _parse_cidr(_string(text, "cidr"))
    if prefix is None:
        raise CelError(f"network address {text!r} parse error")
    return prefix


def _want_ip(value: Any, function: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, _IP) and not isinstance(value, _CIDR):
        return value
    raise _no_overload(function, value)


def _want_cidr(value: Any, function: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if isinstance(value, _CIDR):
        return value
    raise _no_overload(function, value)


_LINK_LOCAL_MULTICAST = (ipaddress.ip_network("224.0.0.0/24"), ipaddress.ip_network("ff02::/16"))
_IPV4_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _ip_is_link_local_multicast(value: Any) -> bool:
    address = _want_ip(value, "isLinkLocalMulticast")
    return any(address in net for net in _LINK_LOCAL_MULTICAST if net.version == address.version)


def _ip_is_link_local_unicast(value: Any) -> bool:
    return _want_ip(value, "isLinkLocalUnicast").is_link_local


def _ip_is_global_unicast(value: Any) -> bool:
    """Go's net.IP.IsGlobalUnicast: private ranges count as global."""
    address = _want_ip(value, "isGlobalUnicast")
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or address.is_link_local
        or address == _IPV4_BROADCAST
    )


def _cidr_contains_ip(value: Any, other: Any) -> bool:
    network = _want_cidr(value, "containsIP").network
    address = _ip(other) if type(other) is str else _want_ip(other, "containsIP")
    return address.version == network.version and address in network


def _cidr_contains_cidr(value: Any, other: Any) -> bool:
    network = _want_cidr(value, "containsCIDR").network
    inner = (_cidr(other) if type(other) is str else _want_cidr(other, "containsCIDR")).network
    return inner.version == network.version and inner.subnet_of(network)  # type: ignore[arg-type]


def _cidr_prefix_length(value: Any) -> int:
    return _want_cidr(value, "prefixLength").network.prefixlen


# Go's time.ParseDuration, which Kubernetes' CEL duration() uses: a sign, then one or more
# decimal numbers each with a unit, e.g. "300ms", "-1.5h", "2h45m". "0" alone needs no unit.
_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
# CEL bounds durations to about +-10,000 years (the protobuf Duration range).
_DURATION_MAX = 315_576_000_000 * 1_000_000_000


def _duration_result(nanos: int) -> CelDuration:
    if -_DURATION_MAX <= nanos <= _DURATION_MAX:
        return CelDuration(nanos)
    raise CelError("duration out of range")


def _parse_duration(text: Any) -> CelDuration:
    if type(text) is CelDuration:
        return text
    original = _string(text, "duration")
    sign, rest = 1, original
    if rest[:1] in ("-", "+"):
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    if rest == "0":
        return CelDuration(0)
    if not rest:
        raise CelError(f"invalid duration {original!r}")
    total, position = 0, 0
    while position < len(rest):
        match = _DURATION_PART.match(rest, position)
        number = match.group(1) if match else ""
        if not match or number in ("", "."):
            raise CelError(f"invalid duration {original!r}")
        whole, _, fraction = number.partition(".")
        scale = _DURATION_UNITS[match.group(2)]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        position = match.end()
    return _duration_result(sign * total)


def _duration_part(unit: int) -> Callable[[Any], int]:
    def part(value: Any) -> int:
        if type(value) is not CelDuration:
            raise _no_overload("duration accessor", value)
        whole = abs(value.nanos) // unit  # Go truncates toward zero
        return whole if value.nanos >= 0 else -whole

    return part


@dataclass(frozen=True)
class _Function:
    impl: Callable[..., Any]
    arities: tuple[int, ...]  # accepted argument counts, a method's receiver not counted


_FUNCTIONS = {
    "size": _Function(_size, (1,)),
    "matches": _Function(_matches, (2,)),
    "int": _Function(_to_int, (1,)),
    "double": _Function(_to_double, (1,)),
    "string": _Function(_to_string, (1,)),
    "bool": _Function(_to_bool, (1,)),
    "bytes": _Function(_to_bytes, (1,)),
    "dyn": _Function(lambda value: value, (1,)),
    "type": _Function(lambda value: CelType(_type_name(value)), (1,)),
    "isIP": _Function(_is_ip, (1,)),
    "ip": _Function(_ip, (1,)),
    "isCIDR": _Function(_is_cidr, (1,)),
    "cidr": _Function(_cidr, (1,)),
    "duration": _Function(_parse_duration, (1,)),
}
_METHODS = {
    "size": _Function(_size, (0,)),
    "matches": _Function(_matches, (1,)),
    "contains": _Function(_contains, (1,)),
    "startsWith": _Function(_starts_with, (1,)),
    "endsWith": _Function(_ends_with, (1,)),
    "lowerAscii": _Function(lambda s: _string(s, "lowerAscii").translate(_ASCII_LOWER), (0,)),
    "upperAscii": _Function(lambda s: _string(s, "upperAscii").translate(_ASCII_UPPER), (0,)),
    "trim": _Function(lambda s: _string(s, "trim").strip(), (0,)),
    "split": _Function(_split, (1, 2)),
    "join": _Function(_join, (0, 1)),
    "replace": _Function(_replace, (2, 3)),
    "indexOf": _Function(_index_of, (1, 2)),
    "lastIndexOf": _Function(_last_index_of, (1, 2)),
    "substring": _Function(_substring, (1, 2)),
    "charAt": _Function(_char_at, (1,)),
    "family": _Function(lambda ip: _want_ip(ip, "family").version, (0,)),
    "isUnspecified": _Function(lambda ip: _want_ip(ip, "isUnspecified").is_unspecified, (0,)),
    "isLoopback": _Function(lambda ip: _want_ip(ip, "isLoopback").is_loopback, (0,)),
    "isLinkLocalMulticast": _Function(_ip_is_link_local_multicast, (0,)),
    "isLinkLocalUnicast": _Function(_ip_is_link_local_unicast, (0,)),
    "isGlobalUnicast": _Function(_ip_is_global_unicast, (0,)),
    "containsIP": _Function(_cidr_contains_ip, (1,)),
    "containsCIDR": _Function(_cidr_contains_cidr, (1,)),
    "ip": _Function(lambda prefix: _want_cidr(prefix, "ip").ip, (0,)),
    "masked": _Function(
        lambda prefix: ipaddress.ip_interface(_want_cidr(prefix, "masked").network.with_prefixlen),
        (0,),
    ),
    "prefixLength": _Function(_cidr_prefix_length, (0,)),
    "getHours": _Function(_duration_part(3600 * 1_000_000_000), (0,)),
    "getMinutes": _Function(_duration_part(60 * 1_000_000_000), (0,)),
    "getSeconds": _Function(_duration_part(1_000_000_000), (0,)),
    "getMilliseconds": _Function(_duration_part(1_000_000), (0,)),
}


def _call(name: str, impl: Callable[..., Any], arguments: list[_Eval]) -> _Eval:
    def call(act: dict[str, Any]) -> Any:
        values = [argument(act) for argument in arguments]
        try:
            return impl(*values)
        except (TypeError, ValueError, AttributeError) as error:
            raise CelError(f"{name}: {error}") from None

    return call


def _attempt(evaluate: _Eval, act: dict[str, Any]) -> Any:
    """The value, or the CelError in its place (for CEL's error-absorbing operators)."""
    try:
        return evaluate(act)
    except CelError as error:
        return error


def _logical(left: _Eval, right: _Eval, *, decisive: bool) -> _Eval:
    """CEL's commutative && (decisive False) and || (decisive True).

    A decisive side wins even when the other side is an error: `false && error` is false.
    """
    name = "_||_" if decisive else "_&&_"

    def run(act: dict[str, Any]) -> bool:
        first = _attempt(left, act)
        if first is decisive:
            return decisive
        second = _attempt(right, act)
        if second is decisive:
            return decisive
        for side in (first, second):
            if isinstance(side, CelError):
                raise side
        if first is (not decisive) and second is (not decisive):
            return not decisive
        raise _no_overload(name, first, second)

    return run


def _items(value: Any) -> list[Any]:
    """What a macro iterates: a list's elements or a map's keys."""
    if type(value) is list:
        return value
    if type(value) is dict:
        return list(value)
    raise CelError(f"cannot iterate over {_type_name(value)}")


def _boolean(value: Any, function: str) -> bool:
    if type(value) is bool:
        return value
    raise _no_overload(function, value)


def _quantifier(target: _Eval, var: str, predicate: _Eval, *, decisive: bool) -> _Eval:
    """all() (decisive False) and exists() (decisive True), absorbing errors as cel-go does."""
    name = "exists" if decisive else "all"

    def run(act: dict[str, Any]) -> bool:
        error = None
        for item in _items(target(act)):
            result = _attempt(predicate, {**act, var: item})
            if result is decisive:
                return decisive
            if result is not (not decisive) and error is None:
                error = result if isinstance(result, CelError) else _no_overload(name, result)
        if error is not None:
            raise error
        return not decisive

    return run


def _exists_one(target: _Eval, var: str, predicate: _Eval) -> _Eval:
    def run(act: dict[str, Any]) -> bool:
        count = 0
        for item in _items(target(act)):
            count += _boolean(predicate({**act, var: item}), "exists_one")
        return count == 1

    return run


def _map(target: _Eval, var: str, *bodies: _Eval) -> _Eval:
    *condition, transform = bodies  # map(x, f) or map(x, p, f)

    def run(act: dict[str, Any]) -> list[Any]:
        results = []
        for item in _items(target(act)):
            scope = {**act, var: item}
            if not condition or _boolean(condition[0](scope), "map"):
                results.append(transform(scope))
        return results

    return run


def _filter(target: _Eval, var: str, predicate: _Eval) -> _Eval:
    def run(act: dict[str, Any]) -> list[Any]:
        items = _items(target(act))
        return [item for item in items if _boolean(predicate({**act, var: item}), "filter")]

    return run


_MACROS: dict[str, tuple[Callable[..., _Eval], tuple[int, ...]]] = {
    "all": (functools.partial(_quantifier, decisive=False), (2,)),
    "exists": (functools.partial(_quantifier, decisive=True), (2,)),
    "exists_one": (_exists_one, (2,)),
    "map": (_map, (2, 3)),
    "filter": (_filter, (2,)),
}

# Grammar rules that only wrap their single child.
_WRAPPERS = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
    }
)


def _unwrap(node: Any) -> Any:
    """The first node below `node` that is more than a single-child wrapper."""
    while (
        str(node.data) in _WRAPPERS
        and len(node.children) == 1
        and hasattr(node.children[0], "data")
    ):
        node = node.children[0]
    return node


def _arguments(rest: list[Any]) -> list[Any]:
    """The expressions of an optional exprlist/mapinits node."""
    return list(rest[0].children) if rest else []


def _literal_value(token: Any) -> Any:
    kind, text = token.type, str(token)
    if kind == "INT_LIT":
        value = int(text, 16) if "x" in text.lower() else int(text)
        if not _INT_MIN <= value <= _INT_MAX:
            raise CelCompileError(f"integer literal out of range: {text}")
        return value
    if kind == "FLOAT_LIT":
        return float(text)
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        return str(celstr(token))
    if kind == "BYTES_LIT":
        return bytes(celbytes(token))
    if kind == "BOOL_LIT":
        return text == "true"
    if kind == "NULL_LIT":
        return None
    raise CelCompileError(f"unsupported literal {text} (uint is not supported)")


class _Compiler:
    """Turns a cel-python parse tree into nested Python closures over an activation dict."""

    def __init__(self, variables: Iterable[str]) -> None:
        self.variables = frozenset(variables)
        self.bound: list[str] = []  # macro variables in scope, innermost last
        self.referenced: set[str] = set()  # free variables the expression uses

    def compile(self, node: Any) -> _Eval:
        rule = str(node.data)
        if (rule in _WRAPPERS and len(node.children) == 1) or rule == "paren_expr":
            return self.compile(node.children[0])
        handler = getattr(self, f"_{rule}", None)
        if handler is None:
            raise CelCompileError(f"unsupported syntax: {rule}")
        return handler(node.children)

    def _expr(self, children: list[Any]) -> _Eval:
        condition, if_true, if_false = (self.compile(child) for child in children)

        def choose(act: dict[str, Any]) -> Any:
            test = condition(act)
            if test is True:
                return if_true(act)
            if test is False:
                return if_false(act)
            raise _no_overload("_?_:_", test)

        return choose

    def _conditionalor(self, children: list[Any]) -> _Eval:
        left, right = (self.compile(child) for child in children)
        return _logical(left, right, decisive=True)

    def _conditionaland(self, children: list[Any]) -> _Eval:
        left, right = (self.compile(child) for child in children)
        return _logical(left, right, decisive=False)

    def _binary(self, children: list[Any]) -> _Eval:
        operator, right_node = children
        apply = _BINARY[str(operator.data)]
        left, right = self.compile(operator.children[0]), self.compile(right_node)
        return lambda act: apply(left(act), right(act))

    _relation = _addition = _multiplication = _binary

    def _unary(self, children: list[Any]) -> _Eval:
        apply = _logical_not if str(children[0].data) == "unary_not" else _negate
        operand = self.compile(children[1])
        return lambda act: apply(operand(act))

    def _member_dot(self, children: list[Any]) -> _Eval:
        target, name = self.compile(children[0]), str(children[1])
        return lambda act: _select(target(act), name)

    def _member_index(self, children: list[Any]) -> _Eval:
        target, key = (self.compile(child) for child in children)
        return lambda act: _index(target(act), key(act))

    def _member_dot_arg(self, children: list[Any]) -> _Eval:
        name, args = str(children[1]), _arguments(children[2:])
        if name in _MACROS:
            return self._macro(name, children[0], args)
        function = _METHODS.get(name)
        if function is None or len(args) not in function.arities:
            raise CelCompileError(f"undeclared method '{name}' with {len(args)} argument(s)")
        receiver = self.compile(children[0])
        return _call(name, function.impl, [receiver, *map(self.compile, args)])

    def _ident_arg(self, children: list[Any]) -> _Eval:
        name, args = str(children[0]), _arguments(children[1:])
        if name == "has":
            return self._has(args)
        function = _FUNCTIONS.get(name)
        if function is None or len(args) not in function.arities:
            raise CelCompileError(f"undeclared function '{name}' with {len(args)} argument(s)")
        return _call(name, function.impl, list(map(self.compile, args)))

    _dot_ident_arg = _ident_arg

    def _ident(self, children: list[Any]) -> _Eval:
        name = str(children[0])
        if name in self.bound or name in self.variables:
            if name not in self.bound:
                self.referenced.add(name)
            return lambda act: act[name]
        if name in _TYPE_IDENTS:
            value = CelType(name)
            return lambda act: value
        raise CelCompileError(f"undeclared reference to '{name}'")

    _dot_ident = _ident

    def _literal(self, children: list[Any]) -> _Eval:
        value = _literal_value(children[0])
        return lambda act: value

    def _list_lit(self, children: list[Any]) -> _Eval:
        items = [self.compile(child) for child in _arguments(children)]
        return lambda act: [item(act) for item in items]

    def _map_lit(self, children: list[Any]) -> _Eval:
        entries = [self.compile(child) for child in _arguments(children)]
        pairs = list(zip(entries[::2], entries[1::2], strict=True))

        def build(act: dict[str, Any]) -> dict[Any, Any]:
            result: dict[Any, Any] = {}
            for key_of, value_of in pairs:
                key = key_of(act)
                if type(key) not in (str, int, bool) or key in result:
                    raise CelError(f"invalid or repeated map key {key!r}")
                result[key] = value_of(act)
            return result

        return build

    def _has(self, args: list[Any]) -> _Eval:
        selection = _unwrap(args[0]) if len(args) == 1 else None
        if selection is None or str(selection.data) != "member_dot":
            raise CelCompileError("has() takes a field selection, like has(self.field)")
        target, name = self.compile(selection.children[0]), str(selection.children[1])

        def present(act: dict[str, Any]) -> bool:
            value = target(act)
            if type(value) is dict:
                return name in value
            raise CelError(f"has() cannot test a field of {_type_name(value)}")

        return present

    def _macro(self, name: str, target_node: Any, args: list[Any]) -> _Eval:
        build, arities = _MACROS[name]
        variable = _unwrap(args[0]) if args else None
        if len(args) not in arities or variable is None or str(variable.data) != "ident":
            raise CelCompileError(f"{name}() takes a variable name and {arities[-1] - 1} expr")
        var = str(variable.children[0])
        target = self.compile(target_node)
        self.bound.append(var)
        try:
            bodies = [self.compile(arg) for arg in args[1:]]
        finally:
            self.bound.pop()
        return build(target, var, *bodies)


@dataclass(frozen=True)
class CelProgram:
    """A compiled CEL expression; call it with the variables: program({"self": value})."""

    expression: str
    variables: frozenset[str]  # the free variables it uses
    run: _Eval = field(repr=False)

    def __call__(self, activation: dict[str, Any]) -> Any:
        missing = self.variables - activation.keys()
        if missing:
            raise CelError(f"no value for {', '.join(sorted(missing))}")
        return self.run(activation)


@functools.cache
def compile_cel(
    expression: str, variables: frozenset[str] = frozenset({"self", "oldSelf"})
) -> CelProgram:
    """Compile (once: cached) a CEL expression with Kubernetes' libraries.

    Raises CelCompileError for syntax errors and for functions or variables we do not provide.
    """
    try:
        tree = CELParser().parse(expression)
    except CELParseError as error:
        raise CelCompileError(f"syntax error: {error.args[0]}") from None
    compiler = _Compiler(variables)
    run = compiler.compile(tree)
    return CelProgram(expression, frozenset(compiler.referenced), run)


def evaluate_cel(expression: str, **variables: Any) -> Any:
    """Evaluate a CEL expression, e.g. evaluate_cel("self.split('/')", self="a/b")."""
    return compile_cel(expression, frozenset(variables))(variables)


# --- Structural schemas ---------------------------------------------------------------------

_ABSENT: Any = object()
_Check = Callable[[Any, str, "_Report"], None]


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _entry(path: str, key: str) -> str:
    return f"{path}[{key}]"


class _Report:
    """The problems found in one object, as readable strings."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.blocking = False  # a type or enum error: the API server then skips the CEL rules

    def add(
        self,
        path: str,
        kind: str,
        detail: str = "",
        value: Any = _ABSENT,
        *,
        blocking: bool = False,
    ) -> None:
        text = f"{path or '<root>'}: {kind}"
        if value is not _ABSENT:
            text += f": {_show(value)}"
        if detail:
            text += f": {detail}"
        self.problems.append(text)
        self.blocking = self.blocking or blocking


def _is_integer(value: Any) -> bool:
    # A whole float such as 5.0 is not an integer here: the function must emit real ints.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda value: isinstance(value, bool),
}


def _enum_check(options: list[Any]) -> _Check:
    detail = "supported values: " + ", ".join(_show(option) for option in options)

    def check(value: Any, path: str, report: _Report) -> None:
        if not any(_cel_eq(value, option) for option in options):
            report.add(path, "Unsupported value", detail, value, blocking=True)

    return check


def _bound_check(limit: float, *, exclusive: bool, upper: bool) -> _Check:
    relation = ("less than" if upper else "greater than") + ("" if exclusive else " or equal to")
    detail = f"should be {relation} {limit}"

    def check(value: Any, path: str, report: _Report) -> None:
        if not _is_number(value):
            return
        beyond = value > limit if upper else value < limit
        if beyond or (exclusive and value == limit):
            report.add(path, "Invalid value", detail, value)

    return check


def _multiple_check(step: float) -> _Check:
    def check(value: Any, path: str, report: _Report) -> None:
        if _is_number(value) and value / step != round(value / step):
            report.add(path, "Invalid value", f"should be a multiple of {step}", value)

    return check


# keyword: (the type it applies to, is an upper limit, error kind, detail)
_SIZE_LIMITS = {
    "minLength": (str, False, "Invalid value", "should be at least {} chars long"),
    "maxLength": (str, True, "Too long", "may not be longer than {} characters"),
    "minItems": (list, False, "Invalid value", "should have at least {} items"),
    "maxItems": (list, True, "Too many", "must have at most {} items"),
    "minProperties": (dict, False, "Invalid value", "should have at least {} properties"),
    "maxProperties": (dict, True, "Too many", "must have at most {} properties"),
}


def _size_check(keyword: str, limit: int) -> _Check:
    applies_to, upper, kind, detail = _SIZE_LIMITS[keyword]

    def check(value: Any, path: str, report: _Report) -> None:
        if isinstance(value, applies_to) and (len(value) > limit if upper else len(value) < limit):
            shown = value if applies_to is str else len(value)
            report.add(path, kind, detail.format(limit), shown)

    return check


def _pattern_problem(pattern: str | None) -> str | None:
    if pattern is None:
        return None
    try:
        go_regex(pattern)
    except re.error as error:
        return f"pattern {pattern!r} cannot be checked: {error}"
    return None


def _pattern_check(pattern: str) -> _Check:
    problem = _pattern_problem(pattern)
    detail = f"should match '{pattern}'"

    def check(value: Any, path: str, report: _Report) -> None:
        if not isinstance(value, str):
            return
        if problem:
            report.add(path, "Internal error", problem)
        elif go_regex(pattern).search(value) is None:
            report.add(path, "Invalid value", detail, value)

    return check


_DATE_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _is_date_time(text: str) -> bool:
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return False
    try:
        datetime.strptime(f"{match[1]}T{match[2]}", "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return True


def _ip_version(text: str) -> int | None:
    try:
        return None if "%" in text else ipaddress.ip_address(text).version
    except ValueError:
        return None


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        return False
    return True


_INT_FORMATS = {"int32": (-(2**31), 2**31 - 1), "int64": (_INT_MIN, _INT_MAX)}
_STRING_FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": _is_date_time,
    "ipv4": lambda text: _ip_version(text) == 4,
    "ipv6": lambda text: _ip_version(text) == 6,
    "byte": _is_base64,
}


def _format_check(name: str) -> _Check | None:
    if name in _INT_FORMATS:
        low, high = _INT_FORMATS[name]

        def in_range(value: Any, path: str, report: _Report) -> None:
            if _is_integer(value) and not low <= value <= high:
                report.add(path, "Invalid value", f"out of the {name} range", value)

        return in_range
    valid = _STRING_FORMATS.get(name)
    if valid is None:
        return None  # like the API server, formats it does not know are not checked

    def check(value: Any, path: str, report: _Report) -> None:
        if isinstance(value, str) and not valid(value):
            report.add(path, "Invalid value", f"must be a valid {name}", value)

    return check


def _unique_check(raw: dict) -> _Check:
    """x-kubernetes-list-type set (whole items) or map (the list-map-keys) must not repeat."""
    is_map = raw.get("x-kubernetes-list-type") == "map"
    keys = raw.get("x-kubernetes-list-map-keys") if is_map else None

    def identity(item: Any) -> Any:
        if keys is not None and isinstance(item, dict):
            return {key: item.get(key) for key in keys}
        return item

    def check(value: Any, path: str, report: _Report) -> None:
        if not isinstance(value, list):
            return
        seen: set[str] = set()
        for index, item in enumerate(value):
            key = json.dumps(identity(item), sort_keys=True, default=str)
            if key in seen:
                report.add(f"{path}[{index}]", "Duplicate value", value=identity(item))
            seen.add(key)

    return check


def _junctor_checks(raw: dict) -> list[_Check]:
    checks: list[_Check] = [_Schema(sub, lenient=True).check for sub in raw.get("allOf", ())]
    if "anyOf" in raw:
        any_of = [_Schema(sub, lenient=True) for sub in raw["anyOf"]]

        def check_any_of(value: Any, path: str, report: _Report) -> None:
            if not any(option.accepts(value) for option in any_of):
                detail = "must validate at least one schema (anyOf)"
                report.add(path, "Invalid value", detail, value)

        checks.append(check_any_of)
    if "oneOf" in raw:
        one_of = [_Schema(sub, lenient=True) for sub in raw["oneOf"]]

        def check_one_of(value: Any, path: str, report: _Report) -> None:
            matching = sum(option.accepts(value) for option in one_of)
            if matching != 1:
                detail = f"must validate one and only one schema (oneOf), not {matching}"
                report.add(path, "Invalid value", detail, value)

        checks.append(check_one_of)
    if "not" in raw:
        forbidden = _Schema(raw["not"], lenient=True)

        def check_not(value: Any, path: str, report: _Report) -> None:
            if forbidden.accepts(value):
                report.add(path, "Invalid value", "must not validate the schema (not)", value)

        checks.append(check_not)
    return checks


def _value_checks(raw: dict) -> list[_Check]:
    checks: list[_Check] = []
    if "enum" in raw:
        checks.append(_enum_check(raw["enum"]))
    if "minimum" in raw:
        exclusive = bool(raw.get("exclusiveMinimum"))
        checks.append(_bound_check(raw["minimum"], exclusive=exclusive, upper=False))
    if "maximum" in raw:
        exclusive = bool(raw.get("exclusiveMaximum"))
        checks.append(_bound_check(raw["maximum"], exclusive=exclusive, upper=True))
    if "multipleOf" in raw:
        checks.append(_multiple_check(raw["multipleOf"]))
    checks.extend(_size_check(keyword, raw[keyword]) for keyword in _SIZE_LIMITS if keyword in raw)
    if "pattern" in raw:
        checks.append(_pattern_check(raw["pattern"]))
    format_check = _format_check(raw["format"]) if "format" in raw else None
    if format_check is not None:
        checks.append(format_check)
    if raw.get("x-kubernetes-list-type") in ("set", "map") or raw.get("uniqueItems"):
        checks.append(_unique_check(raw))
    checks.extend(_junctor_checks(raw))
    return checks


# Kubernetes escapes property names for CEL: CEL keywords become __keyword__, and __ . - /
# are spelled out. Names that are still not identifiers cannot be reached from CEL.
_CEL_RESERVED = frozenset(
    {
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)
_CEL_ESCAPES = (("__", "__underscores__"), (".", "__dot__"), ("-", "__dash__"), ("/", "__slash__"))
_CEL_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*", re.ASCII)


def _cel_field_name(name: str) -> str | None:
    if name in _CEL_RESERVED:
        return f"__{name}__"
    for plain, escaped in _CEL_ESCAPES:
        name = name.replace(plain, escaped)
    return name if _CEL_IDENT.fullmatch(name) else None


_REASONS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
}


def _compiled(expression: str | None) -> tuple[CelProgram | None, str | None]:
    """The program, or the reason it does not compile."""
    if expression is None:
        return None, None
    try:
        return compile_cel(expression), None
    except CelCompileError as error:
        return None, f"rule {expression!r} cannot be compiled: {error}"


class _Rule:
    """One x-kubernetes-validations entry."""

    def __init__(self, raw: dict) -> None:
        self.text: str = raw["rule"]
        self.message: str | None = raw.get("message")
        self.kind = _REASONS.get(raw.get("reason", ""), "Invalid value")
        self.field_path: str = raw.get("fieldPath", "")
        self.program, rule_problem = _compiled(self.text)
        self.message_program, message_problem = _compiled(raw.get("messageExpression"))
        self.problem = rule_problem or message_problem
        # Transition rules compare with the old object. On create there is none, so the API
        # server skips them, and so do we.
        self.skipped = bool(raw.get("optionalOldSelf")) or (
            self.program is not None and "oldSelf" in self.program.variables
        )

    def check(self, cel_self: Any, path: str, label: str, report: _Report) -> None:
        if self.problem:
            report.add(path, "Internal error", self.problem)
            return
        if self.skipped or self.program is None:
            return
        try:
            result = self.program({"self": cel_self})
        except CelError as error:
            # The API server's wording for a rule that fails with an error.
            detail = f"{error} evaluating rule: {self.message or self.text}"
            report.add(path, "Invalid value", detail, label)
            return
        if result is not True:
            if result is False:
                detail = self._failure_message(cel_self)
            else:
                detail = f"rule {self.text!r} gave {_type_name(result)}, not bool"
            where = path + self.field_path if path else self.field_path.lstrip(".")
            report.add(where, self.kind, detail, label)

    def _failure_message(self, cel_self: Any) -> str:
        # As in the API server: messageExpression wins when it gives a non-empty string.
        if self.message_program is not None:
            try:
                message = self.message_program({"self": cel_self})
            except CelError:
                message = None
            if isinstance(message, str) and message.strip():
                return message
        return self.message or f"failed rule: {self.text}"


class _Schema:
    """One node of a structural OpenAPI v3 schema, prepared once for many validations.

    `lenient` nodes are subschemas of allOf/anyOf/oneOf/not. In structural schemas they only add
    value validations, so they neither require a type nor reject undeclared fields.
    """

    def __init__(self, raw: dict, *, lenient: bool = False) -> None:
        self.lenient = lenient
        self.type: str | None = raw.get("type")
        self.nullable = bool(raw.get("nullable"))
        self.int_or_string = bool(raw.get("x-kubernetes-int-or-string"))
        self.preserve_unknown = bool(raw.get("x-kubernetes-preserve-unknown-fields"))
        self.embedded = bool(raw.get("x-kubernetes-embedded-resource"))
        self.default = raw.get("default", _ABSENT)
        self.required: tuple[str, ...] = tuple(raw.get("required", ()))
        self.label = self.type or ("int-or-string" if self.int_or_string else "any")
        properties = raw.get("properties", {})
        if self.embedded:
            # Kubernetes types an embedded object's apiVersion, kind and metadata even when the
            # schema leaves them to x-kubernetes-preserve-unknown-fields.
            properties = {**_ROOT_FIELDS, **properties, "metadata": _OBJECT_META}
        self.properties = {name: _Schema(sub, lenient=lenient) for name, sub in properties.items()}
        additional = raw.get("additionalProperties")
        self.additional: _Schema | bool = bool(additional)
        if isinstance(additional, dict):
            self.additional = _Schema(additional, lenient=lenient)
        items = raw.get("items")
        self.items = _Schema(items, lenient=lenient) if isinstance(items, dict) else None
        self.checks = _value_checks(raw)
        self.pattern_problem = _pattern_problem(raw.get("pattern"))
        self.rules = () if lenient else tuple(map(_Rule, raw.get("x-kubernetes-validations", ())))
        self.cel_names = {
            name: escaped for name in self.properties if (escaped := _cel_field_name(name))
        }
        self.with_default = [(n, s) for n, s in self.properties.items() if s.default is not _ABSENT]
        children = self._children()
        self.defaults_below = bool(self.with_default) or any(c.defaults_below for c in children)
        self.rules_below = bool(self.rules) or any(child.rules_below for child in children)

    def _children(self) -> list["_Schema"]:
        children = list(self.properties.values())
        if isinstance(self.additional, _Schema):
            children.append(self.additional)
        if self.items is not None:
            children.append(self.items)
        return children

    def _child(self, key: str, path: str) -> tuple["_Schema | None", str]:
        """The schema of a field or map entry, and its path."""
        child = self.properties.get(key)
        if child is not None:
            return child, _field(path, key)
        if isinstance(self.additional, _Schema):
            return self.additional, _entry(path, key)
        return None, _field(path, key)

    def defaulted(self, value: Any) -> Any:
        """`value` with the schema's defaults filled in; shares unchanged parts, never mutates.

        As in the API server, a default also replaces a null in a non-nullable field, and what
        a default brings in is defaulted in turn.
        """
        if not self.defaults_below:
            return value
        if isinstance(value, dict):
            filled = dict(value)
            for name, child in self.with_default:
                if filled.get(name) is None and not (name in filled and child.nullable):
                    filled[name] = child.default
            for key, item in filled.items():
                child, _ = self._child(key, "")
                if child is not None:
                    filled[key] = child.defaulted(item)
            return filled
        if isinstance(value, list) and self.items is not None:
            return [self.items.defaulted(item) for item in value]
        return value

    def _type_ok(self, value: Any) -> bool:
        if self.type is not None:
            test = _TYPE_TESTS.get(self.type)
            return test is not None and test(value)
        if self.int_or_string:
            return isinstance(value, str) or _is_integer(value)
        return True

    def check(self, value: Any, path: str, report: _Report) -> None:
        """The structural checks, down the whole value."""
        if value is None:
            if not (self.nullable or self.lenient or self.label == "any"):
                # The API server would drop the field; in our output that is a bug.
                detail = f"must be of type {self.label}: null is allowed only where nullable"
                report.add(path, "Invalid value", detail, None, blocking=True)
            return
        if not self._type_ok(value):
            report.add(path, "Invalid value", f"must be of type {self.label}", value, blocking=True)
            return
        for check in self.checks:
            check(value, path, report)
        if isinstance(value, dict):
            self._check_fields(value, path, report)
        elif isinstance(value, list) and self.items is not None:
            for index, item in enumerate(value):
                self.items.check(item, f"{path}[{index}]", report)

    def _check_fields(self, value: dict, path: str, report: _Report) -> None:
        for name in self.required:
            if name not in value:
                report.add(_field(path, name), "Required value")
        for key, item in value.items():
            child, where = self._child(key, path)
            if child is not None:
                child.check(item, where, report)
            elif not (self.additional or self.preserve_unknown or self.lenient):
                # The API server prunes unknown fields silently; for us they are bugs.
                report.add(where, "Unknown field", "not declared in the schema")
        if self.embedded:
            for name in ("apiVersion", "kind"):
                if not value.get(name):
                    report.add(_field(path, name), "Required value", "an embedded object needs it")

    def accepts(self, value: Any) -> bool:
        trial = _Report()
        self.check(value, "", trial)
        return not trial.problems

    def to_cel(self, value: Any) -> Any:
        """The value as a CEL rule sees it: declared fields under their escaped names, and
        numbers of `type: number` as doubles."""
        if isinstance(value, dict):
            if self.properties:
                return {
                    self.cel_names[key]: self.properties[key].to_cel(item)
                    for key, item in value.items()
                    if key in self.cel_names
                }
            if isinstance(self.additional, _Schema):
                return {key: self.additional.to_cel(item) for key, item in value.items()}
            return value
        if isinstance(value, list):
            return value if self.items is None else [self.items.to_cel(item) for item in value]
        if self.type == "number" and isinstance(value, int):
            return float(value)
        return value

    def run_rules(self, value: Any, path: str, report: _Report) -> None:
        """The CEL rules, at every node that has some, with `self` bound to the node's value."""
        if not self.rules_below or value is None:
            return
        if self.rules:
            cel_self = self.to_cel(value)
            for rule in self.rules:
                rule.check(cel_self, path, self.label, report)
        if isinstance(value, dict):
            for key, item in value.items():
                child, where = self._child(key, path)
                if child is not None:
                    child.run_rules(item, where, report)
        elif isinstance(value, list) and self.items is not None:
            for index, item in enumerate(value):
                self.items.run_rules(item, f"{path}[{index}]", report)

    def problems(self, path: str) -> Iterator[str]:
        """What this schema cannot check: rules that do not compile, untranslatable patterns."""
        where = path or "<root>"
        if self.pattern_problem:
            yield f"{where}: {self.pattern_problem}"
        yield from (f"{where}: {rule.problem}" for rule in self.rules if rule.problem)
        for name, child in self.properties.items():
            yield from child.problems(_field(path, name))
        if isinstance(self.additional, _Schema):
            yield from self.additional.problems(_entry(path, "*"))
        if self.items is not None:
            yield from self.items.problems(f"{path}[*]")


# --- ObjectMeta -----------------------------------------------------------------------------

_OBJECT_META = yaml.safe_load(
    """
type: object
properties:
  name: {type: string}
  generateName: {type: string}
  namespace: {type: string}
  uid: {type: string}
  resourceVersion: {type: string}
  selfLink: {type: string}
  generation: {type: integer, format: int64}
  creationTimestamp: {type: string, format: date-time, nullable: true}
  deletionTimestamp: {type: string, format: date-time, nullable: true}
  deletionGracePeriodSeconds: {type: integer, format: int64}
  labels: {type: object, additionalProperties: {type: string}}
  annotations: {type: object, additionalProperties: {type: string}}
  finalizers: {type: array, items: {type: string}, x-kubernetes-list-type: set}
  ownerReferences:
    type: array
    items:
      type: object
      required: [apiVersion, kind, name, uid]
      properties:
        apiVersion: {type: string}
        kind: {type: string}
        name: {type: string}
        uid: {type: string}
        controller: {type: boolean}
        blockOwnerDeletion: {type: boolean}
  managedFields:
    type: array
    items: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
)
# Every object has these, whatever its schema says (CRDs say only `metadata: {type: object}`).
_ROOT_FIELDS = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", re.ASCII)
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII
)
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", re.ASCII)
_ANNOTATIONS_LIMIT = 256 * 1024


def _pattern_problems(text: str, limit: int, pattern: re.Pattern, message: str) -> list[str]:
    """The API server's two complaints about a name-like string: too long, wrong form."""
    problems = [f"must be no more than {limit} characters"] if len(text) > limit else []
    if not pattern.fullmatch(text):
        problems.append(message)
    return problems


def _dns_label_problems(text: str) -> list[str]:
    return _pattern_problems(
        text,
        63,
        _DNS_LABEL,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
        "'-', and must start and end with an alphanumeric character",
    )


def _dns_subdomain_problems(text: str) -> list[str]:
    return _pattern_problems(
        text,
        253,
        _DNS_SUBDOMAIN,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character",
    )


def _qualified_name_problems(text: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix and '/', then a name."""
    parts = text.split("/")
    if len(parts) > 2:
        return ["must be a name with an optional DNS subdomain prefix and '/'"]
    problems = []
    if len(parts) == 2:
        prefix_problems = _dns_subdomain_problems(parts[0]) if parts[0] else ["must be non-empty"]
        problems += [f"prefix part {problem}" for problem in prefix_problems]
    name = parts[-1]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if name and not _NAME_PART.fullmatch(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return problems


def _label_value_problems(text: str) -> list[str]:
    return _pattern_problems(
        text,
        63,
        _LABEL_VALUE,
        "a valid label must be an empty string or consist of alphanumeric characters, '-', "
        "'_' or '.', and must start and end with an alphanumeric character",
    )


def _check_metadata(meta: Any, namespaced: bool, path: str, report: _Report) -> None:
    """The ObjectMeta rules the API server applies to every object, beyond the field types."""
    at = _field(path, "metadata")
    meta = meta if isinstance(meta, dict) else {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not name:
        report.add(_field(at, "name"), "Required value", "name is required")
    elif isinstance(name, str):
        for problem in _dns_subdomain_problems(name):
            report.add(_field(at, "name"), "Invalid value", problem, name)
    if namespaced and not namespace:
        report.add(_field(at, "namespace"), "Required value", "the kind is namespaced")
    elif namespaced and isinstance(namespace, str):
        for problem in _dns_label_problems(namespace):
            report.add(_field(at, "namespace"), "Invalid value", problem, namespace)
    elif not namespaced and namespace:
        report.add(_field(at, "namespace"), "Forbidden", "the kind is cluster-scoped", namespace)
    labels = meta.get("labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            where = _entry(_field(at, "labels"), key)
            for problem in _qualified_name_problems(key):
                report.add(where, "Invalid value", f"label key: {problem}", key)
            if isinstance(value, str):
                for problem in _label_value_problems(value):
                    report.add(where, "Invalid value", f"label value: {problem}", value)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        for key in annotations:
            for problem in _qualified_name_problems(key.lower()):
                report.add(_entry(_field(at, "annotations"), key), "Invalid value", problem, key)
        size = sum(len(f"{key}{value}".encode()) for key, value in annotations.items())
        if size > _ANNOTATIONS_LIMIT:
            detail = f"may not be more than {_ANNOTATIONS_LIMIT} bytes in total"
            report.add(_field(at, "annotations"), "Too long", detail, size)


# --- Built-in kinds (no CRD): hand-made schemas, checked by the same engine -----------------

_QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
_BUILTIN_KINDS = yaml.safe_load(
    r"""
- apiVersion: coordination.k8s.io/v1
  kind: Lease
  scope: Namespaced
  schema:
    type: object
    properties:
      spec:
        type: object
        properties:
          holderIdentity: {type: string}
          leaseDurationSeconds: {type: integer, format: int32, minimum: 1}
          acquireTime: {type: string, format: date-time}
          renewTime: {type: string, format: date-time}
          leaseTransitions: {type: integer, format: int32, minimum: 0}
          strategy: {type: string, enum: [OldestEmulationVersion]}
          preferredHolder: {type: string}
        x-kubernetes-validations:
          - rule: '!has(self.preferredHolder) || has(self.strategy)'
            message: preferredHolder may only be set together with strategy

- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  scope: Namespaced
  schema:
    type: object
    properties:
      spec:
        type: object
        required: [podSelector]
        properties:
          podSelector: &selector
            type: object
            properties:
              matchLabels:
                type: object
                additionalProperties:
                  type: string
                  maxLength: 63
                  pattern: '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'
                x-kubernetes-validations:
                  - rule: >-
                      self.all(k, k.matches(r'QUALIFIED_NAME')
                      && k.split('/')[0].size() <= 253)
                    message: >-
                      label keys must be an optional DNS subdomain prefix and '/',
                      then a name of at most 63 characters
              matchExpressions:
                type: array
                items:
                  type: object
                  required: [key, operator]
                  properties:
                    key: {type: string, pattern: 'QUALIFIED_NAME'}
                    operator: {type: string, enum: [In, NotIn, Exists, DoesNotExist]}
                    values: {type: array, items: {type: string}}
                  x-kubernetes-validations:
                    - rule: >-
                        self.operator in ['In', 'NotIn']
                        ? has(self.values) && size(self.values) > 0
                        : !has(self.values) || size(self.values) == 0
                      message: >-
                        values must be non-empty for In and NotIn,
                        and empty for Exists and DoesNotExist
          policyTypes:
            type: array
            maxItems: 2
            items: {type: string, enum: [Ingress, Egress]}
          ingress:
            type: array
            items:
              type: object
              properties:
                from: &peers
                  type: array
                  items:
                    type: object
                    properties:
                      podSelector: *selector
                      namespaceSelector: *selector
                      ipBlock:
                        type: object
                        required: [cidr]
                        properties:
                          cidr: {type: string}
                          except: {type: array, items: {type: string}}
                        x-kubernetes-validations:
                          - rule: isCIDR(self.cidr)
                            message: cidr must be a CIDR, like 10.0.0.0/8
                          - rule: >-
                              !has(self.except) || self.except.all(e, isCIDR(e)
                              && cidr(self.cidr).containsCIDR(e)
                              && cidr(e).prefixLength() > cidr(self.cidr).prefixLength())
                            message: each except entry must be a CIDR strictly inside cidr
                    x-kubernetes-validations:
                      - rule: >-
                          has(self.ipBlock)
                          ? !has(self.podSelector) && !has(self.namespaceSelector)
                          : has(self.podSelector) || has(self.namespaceSelector)
                        message: a peer needs either ipBlock or podSelector and/or namespaceSelector
                ports: &ports
                  type: array
                  items:
                    type: object
                    properties:
                      protocol: {type: string, enum: [TCP, UDP, SCTP], default: TCP}
                      port:
                        x-kubernetes-int-or-string: true
                        anyOf:
                          - {type: integer, minimum: 1, maximum: 65535}
                          - type: string
                            maxLength: 15
                            pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
                      endPort: {type: integer, format: int32, minimum: 1, maximum: 65535}
                    x-kubernetes-validations:
                      - rule: >-
                          !has(self.endPort) || (has(self.port) && type(self.port) == int
                          && self.endPort >= self.port)
                        message: endPort needs a numeric port that is not above it
                      - rule: >-
                          !has(self.port) || type(self.port) == int
                          || (self.port.matches('[a-z]') && !self.port.contains('--'))
                        message: a named port must contain a letter and no '--' (IANA service name)
          egress:
            type: array
            items:
              type: object
              properties:
                to: *peers
                ports: *ports

- apiVersion: v1
  kind: Secret
  scope: Namespaced
  schema:
    type: object
    properties:
      type: {type: string}
      immutable: {type: boolean}
      data:
        type: object
        additionalProperties: {type: string, format: byte}
        x-kubernetes-validations: &keys
          - rule: "self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$'))"
            message: keys must consist of alphanumeric characters, '-', '_' or '.' (at most 253)
      stringData:
        type: object
        additionalProperties: {type: string}
        x-kubernetes-validations: *keys
""".replace("QUALIFIED_NAME", _QUALIFIED_NAME)
)


# --- Validator ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    api_version: str
    kind: str
    namespaced: bool
    served: bool
    schema: _Schema
    source: str


def _root_schema(raw: dict) -> _Schema:
    properties = {**raw.get("properties", {}), **_ROOT_FIELDS, "metadata": _OBJECT_META}
    return _Schema({**raw, "properties": properties})


def _kinds_of_crd(crd: Any, source: str) -> list[_Kind]:
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{source}: not a CustomResourceDefinition")
    spec = crd["spec"]
    kinds = []
    for version in spec["versions"]:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        kinds.append(
            _Kind(
                api_version=f"{spec['group']}/{version['name']}",
                kind=spec["names"]["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                served=bool(version.get("served")),
                schema=_root_schema(schema or {"x-kubernetes-preserve-unknown-fields": True}),
                source=source,
            )
        )
    return kinds


@functools.cache
def _builtin_kinds() -> tuple[_Kind, ...]:
    return tuple(
        _Kind(
            entry["apiVersion"],
            entry["kind"],
            entry["scope"] == "Namespaced",
            True,
            _root_schema(entry["schema"]),
            "built-in",
        )
        for entry in _BUILTIN_KINDS
    )


@functools.cache
def _file_kinds(root: Path, name: str) -> tuple[_Kind, ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with (root / name).open(encoding="utf-8") as stream:
        documents = [document for document in yaml.load_all(stream, Loader=loader) if document]
    return tuple(kind for document in documents for kind in _kinds_of_crd(document, name))


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _is_wrapper(obj: Any) -> bool:
    """A provider-kubernetes Object, which wraps another object in spec.forProvider.manifest."""
    if not isinstance(obj, dict) or obj.get("kind") != "Object":
        return False
    return str(obj.get("apiVersion", "")).split("/")[0] in _WRAPPER_GROUPS


def _label(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "<not an object>"
    name = _dig(obj, "metadata", "name")
    return f"{obj.get('kind') or '<no kind>'}/{name or '<no name>'}"


class Validator:
    """Validates objects against a chosen set of CRDs plus the built-in Lease, NetworkPolicy
    and Secret, as the API server would.

    Build one with from_files(), for_flavour() or from_crds(). `wrapped` is a policy on top:
    True means every object must be a provider-kubernetes Object (the function's wrap mode),
    False means none may be, None checks neither.
    """

    def __init__(self, kinds: Iterable[_Kind], *, wrapped: bool | None = None) -> None:
        self.wrapped = wrapped
        self._kinds: dict[tuple[str, str], _Kind] = {}
        for kind in (*_builtin_kinds(), *kinds):
            key = (kind.api_version, kind.kind)
            if key in self._kinds:
                other = self._kinds[key].source
                raise ValueError(
                    f"{kind.api_version} {kind.kind} is defined by both {other} and "
                    f"{kind.source}: choose the release to validate against"
                )
            self._kinds[key] = kind

    @classmethod
    def from_crds(cls, crds: Iterable[dict], *, wrapped: bool | None = None) -> Self:
        """From CRD documents already loaded."""
        kinds = [kind for crd in crds for kind in _kinds_of_crd(crd, _dig(crd, "metadata", "name"))]
        return cls(kinds, wrapped=wrapped)

    @classmethod
    def from_files(
        cls, files: Iterable[str], *, root: Path | None = None, wrapped: bool | None = None
    ) -> Self:
        """From CRD files named relative to the CRD folder (root, else crd_dir())."""
        base = root or crd_dir()
        if base is None:
            raise FileNotFoundError(MISSING_CRDS.format(configured_crd_dir()))
        return cls([kind for name in files for kind in _file_kinds(base, name)], wrapped=wrapped)

    @classmethod
    def for_flavour(cls, flavour: str, wrapped: bool) -> "Validator":
        """The (cached) validator of a Gateway API flavour: "v1.6", "v1.5" or "v1.4"."""
        return _flavour_validator(flavour, wrapped, crd_dir())

    def validate(self, obj: dict) -> list[str]:
        """Every problem, as "Kind/name: path: kind: value: detail" strings; [] means valid."""
        problems = self._wrapping_problems(obj) + self._problems(obj, "")
        label = _label(obj)
        return [f"{label}: {problem}" for problem in dict.fromkeys(problems)]

    def defaulted(self, obj: dict) -> dict:
        """obj with its schema's defaults applied, as the API server would store it."""
        kind = self._kinds.get((obj.get("apiVersion"), obj.get("kind")))
        if kind is None:
            raise ValueError(f"no schema for {obj.get('apiVersion')} {obj.get('kind')}")
        return kind.schema.defaulted(obj)

    def schema_problems(self) -> list[str]:
        """What the loaded schemas ask for that this validator cannot check (e.g. a rule that
        uses a function we do not provide); [] means everything is checked."""
        return [
            f"{kind.api_version} {kind.kind} ({kind.source}): {problem}"
            for kind in self._kinds.values()
            for problem in kind.schema.problems("")
        ]

    def _wrapping_problems(self, obj: Any) -> list[str]:
        report = _Report()
        if self.wrapped and not _is_wrapper(obj):
            detail = "in wrapped mode every object must be a provider-kubernetes Object"
            report.add("", "Forbidden", detail)
        elif self.wrapped is False and _is_wrapper(obj):
            detail = "in unwrapped mode no object may be a provider-kubernetes Object"
            report.add("", "Forbidden", detail)
        return report.problems

    def _problems(self, obj: Any, path: str) -> list[str]:
        report = _Report()
        kind = self._resolve(obj, path, report)
        if kind is None:
            return report.problems
        value = kind.schema.defaulted(obj)
        kind.schema.check(value, path, report)
        _check_metadata(value.get("metadata"), kind.namespaced, path, report)
        if report.blocking and kind.schema.rules_below:
            detail = (
                "some validation rules were not checked because the object was invalid; "
                "correct the existing errors to complete validation"
            )
            report.add(path, "Invalid value", detail)
        elif not report.blocking:
            kind.schema.run_rules(value, path, report)
        if _is_wrapper(value):
            return report.problems + self._manifest_problems(value, path)
        return report.problems

    def _resolve(self, obj: Any, path: str, report: _Report) -> _Kind | None:
        if not isinstance(obj, dict):
            report.add(path, "Invalid value", "must be an object", obj)
            return None
        api_version, kind_name = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind_name, str):
            report.add(path, "Required value", "apiVersion and kind must be strings")
            return None
        kind = self._kinds.get((api_version, kind_name))
        if kind is None:
            known = sorted(k.api_version for k in self._kinds.values() if k.kind == kind_name)
            hint = f" (known: {', '.join(known)})" if known else ""
            detail = f"no schema for {kind_name} {api_version} in this validator{hint}"
            report.add(path, "Invalid value", detail)
            return None
        if not kind.served:
            detail = f"{api_version} {kind_name} is not served by {kind.source}"
            report.add(_field(path, "apiVersion"), "Invalid value", detail, api_version)
            return None
        return kind

    def _manifest_problems(self, obj: dict, path: str) -> list[str]:
        """The wrapped object, validated against its own kind's schema."""
        manifest = _dig(obj, "spec", "forProvider", "manifest")
        if not isinstance(manifest, dict):
            return []  # the Object's own schema has reported it
        metadata = manifest.get("metadata", {})
        outer_name = _dig(obj, "metadata", "name")
        if isinstance(metadata, dict) and not metadata.get("name") and outer_name:
            # provider-kubernetes names the object after its Object when the manifest has none.
            manifest = {**manifest, "metadata": {**metadata, "name": outer_name}}
        return self._problems(manifest, _field(path, "spec.forProvider.manifest"))


@functools.cache
def _flavour_validator(flavour: str, wrapped: bool, root: Path | None) -> Validator:
    if flavour not in FLAVOUR_FILES:
        raise ValueError(f"unknown flavour {flavour!r}; known: {', '.join(FLAVOUR_FILES)}")
    files = [*FLAVOUR_FILES[flavour], *COMMON_FILES]
    return Validator.from_files(files, root=root, wrapped=wrapped)
