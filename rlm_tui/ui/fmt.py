"""Short human numbers for a narrow terminal: ``37.5k``, ``$0.04``, ``41s``."""

from __future__ import annotations

from pathlib import Path

from ..model.fmt import cell_name, tokens  # noqa: F401  (one formatter for the app, headless and exports)


def dollars(x: float) -> str:
    """Costs: enough digits that a sub-cent call is not shown as $0.00."""
    if x == 0:
        return "$0"
    if x < 0.0001:
        return "<$0.0001"
    if x < 0.01:
        return f"${x:.4f}"
    if x < 100:
        return f"${x:.2f}"
    return f"${x:,.0f}"


def seconds(s: float) -> str:
    """Durations: 0.4s, 41s, 3m05s, 1h02m."""
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def home_path(path: str | Path) -> str:
    """A path with the home directory written as ``~``, as users type it."""
    text = str(path)
    home = str(Path.home())
    if text == home or text.startswith(home + "/"):
        return "~" + text[len(home):]
    return text
