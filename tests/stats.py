"""Counters that the test run prints at its end (simulated reconciles, fuzzed requests)."""

from collections import Counter

COUNTS: Counter = Counter()


def count(what: str, n: int = 1) -> None:
    COUNTS[what] += n
