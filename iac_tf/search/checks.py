"""Argument validation shared by the search-space layers and functions."""

from __future__ import annotations


def check_positive_int(owner: str, key: str, value) -> int:
    """``value`` if it is a positive ``int`` (not a bool), else ``ValueError`` naming ``owner.key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {key} must be a positive int, got {value!r}")
    return value
