"""Argument validation shared by the search-space layers and functions."""

from __future__ import annotations


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(owner: str, key: str, value) -> int:
    """``value`` if it is a positive ``int`` (not a bool), else ``ValueError`` naming ``owner.key``."""
    if not _is_positive_int(value):
        raise ValueError(f"{owner}: {key} must be a positive int, got {value!r}")
    return value


def check_upsampling(owner: str, size) -> tuple[int, int] | None:
    """None, or ``(sh, sw)`` positive ints (an int means both)."""
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    size = tuple(size)
    if len(size) != 2 or not all(_is_positive_int(v) for v in size):
        raise ValueError(f"{owner}: input0_upsampling must be None or two positive ints, got {size!r}")
    return size
