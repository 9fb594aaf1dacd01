"""The one token-count formatter: the app, the headless printer and the exports all print ``37.5k``, ``1k``."""

from __future__ import annotations


def tokens(n: float) -> str:
    """Token counts: exact below 1000, then k/M with one decimal (dropped when it is 0: ``1k``)."""
    if n < 1000:
        return str(int(n))
    if n < 1_000_000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{n / 1_000_000:.1f}M".replace(".0M", "M")


def cell_name(number: object, by: str | None = None) -> str:
    """How every view names a cell: ``cell 3``, or ``cell 3 (you)`` for one the user ran."""
    return f"cell {number}" + (" (you)" if by == "user" else "")
