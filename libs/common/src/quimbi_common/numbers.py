"""Small numeric rules the domain modules share."""

from __future__ import annotations


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    """`value` held within [low, high] (by default a 0..1 fraction)."""
    return max(low, min(high, value))
