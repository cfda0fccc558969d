"""Kubernetes names and label values that stay valid and unique at any length."""

import hashlib
import json
import re

MAX_NAME = 63
_HASH_LEN = 8
_INVALID = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
# Marks a name `owned` shortened: the only double hyphen in it, right before its hash.
SHORTENED = "--"
# 64 bits. Two composed names share a hash only if the hashes of two (UID, key) pairs
# collide: with 50,000 XRs of ~8 composed objects each (n = 400,000 hashes, as if all had
# one head) the chance that any two collide is about n^2 / 2^65 = 4e-9; a tenant cannot aim
# at one, as it picks neither its UID nor another's.
OWNED_HASH_LEN = 16
# The names of claims and tickets (`tcp-<pool>-<port>`, `tcp-<pool>-wait-<hash>`, and
# either cut by `fit`): an XR's own object never takes one, whatever its templates render.
_PLATFORM_SHAPE = re.compile(r"^tcp-.*-(\d+|wait-[0-9a-f]{10}|[0-9a-f]{8})$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # Service names
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def digest(text: str, length: int = _HASH_LEN) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def fit(name: str, limit: int = MAX_NAME) -> str:
    """Return `name` as a DNS-1123 label of at most `limit` characters.

    A name that is already valid is returned unchanged, so short names stay readable.
    Anything else is lowercased, cleaned, cut, and given a hash of the *original* text.
    For names the platform picks (claims, tickets): a valid name can be another's cut one,
    so names rendered from what a tenant picks go through `owned`.
    """
    if len(name) <= limit and DNS_LABEL.match(name):
        return name
    cleaned = _INVALID.sub("-", name.lower()).strip("-")
    suffix = digest(name)
    head = cleaned[: limit - len(suffix) - 1].strip("-")
    return f"{head}-{suffix}" if head else suffix


def owned(name: str, uid: str, key: str, *, shorten: bool = False) -> str:
    """The name of the object an XR composes under desired-resource `key`: `name` as it is
    when it is a DNS-1123 label of at most 63 characters that could not be another XR's,
    else `<name, cleaned and cut>--<hash of uid and key>`.

    `name` is rendered from the XR's name, which its tenant picks; `uid` is the XR's UID,
    which the API server picks. A name is kept only if it has no double hyphen and does not
    read like a claim or ticket name (`shorten` asks for the hash anyway); a shortened one
    has exactly one double hyphen, right before the hash. So a kept name is never another
    XR's shortened one, and two shortened names are equal only if their UID and key are.
    The Object wrapping an object and the object itself are named under one key: they
    share the hash.
    """
    kept = is_dns_label(name) and SHORTENED not in name and not _PLATFORM_SHAPE.match(name)
    if kept and not shorten:
        return name
    suffix = digest(json.dumps([uid, key]), OWNED_HASH_LEN)
    cleaned = _DASHES.sub("-", _INVALID.sub("-", name.lower()))
    head = cleaned.strip("-")[: MAX_NAME - len(SHORTENED) - OWNED_HASH_LEN].strip("-")
    return f"{head or 'x'}{SHORTENED}{suffix}"


def label_value(value: str) -> str:
    """Return `value` as a valid label value (at most 63 characters), hashing when cut."""
    if is_label_value(value):
        return value
    return fit(value)


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(LABEL_VALUE.match(value))


def is_dns_label(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(DNS_LABEL.match(value))


def is_dns_1035_label(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(DNS_1035_LABEL.match(value))


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(DNS_SUBDOMAIN.match(value))
