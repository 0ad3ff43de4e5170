"""How numbers read in messages: short, with units, the way an SRE writes them."""

from __future__ import annotations

import math


def seconds(value: float | None) -> str:
    """`0.0123` → `12.3ms`, `1.8` → `1.8s`, None → `n/a`."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "∞"
    if value < 1.0:
        return f"{value * 1000:.3g}ms"
    return f"{value:.3g}s"


def number(value: float) -> str:
    """Three significant digits, no exponent for everyday sizes."""
    if math.isinf(value):
        return "∞"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 0.001:
        return "0"
    return f"{value:.3g}"
