"""Kubernetes names and label values that stay valid and unique at any length."""

import hashlib
import re

MAX_NAME = 63
_HASH_LEN = 8
_INVALID = re.compile(r"[^a-z0-9-]+")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # Service names
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def digest(text: str, length: int = _HASH_LEN) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def fit(name: str, limit: int = MAX_NAME) -> str:
    """Return `name` as a DNS-1123 label of at most `limit` characters.

    A name that is already valid is returned unchanged, so short names stay readable.
    Anything else is lowercased, cleaned, cut, and given a hash of the *original* text,
    so two different inputs never end on the same name.
    """
    if len(name) <= limit and DNS_LABEL.match(name):
        return name
    cleaned = _INVALID.sub("-", name.lower()).strip("-")
    suffix = digest(name)
    head = cleaned[: limit - len(suffix) - 1].strip("-")
    return f"{head}-{suffix}" if head else suffix


def label_value(value: str) -> str:
    """Return `value` as a valid label value (at most 63 characters), hashing when cut."""
    if len(value) <= MAX_NAME and LABEL_VALUE.match(value):
        return value
    return fit(value)


def is_dns_label(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(DNS_LABEL.match(value))


def is_dns_1035_label(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(DNS_1035_LABEL.match(value))


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(DNS_SUBDOMAIN.match(value))
