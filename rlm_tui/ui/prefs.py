"""The user's config folder: remembered theme and user theme files.

``$XDG_CONFIG_HOME/rlm-tui`` (``~/.config/rlm-tui`` by default) holds
``config.toml`` and ``themes/``. The UI writes only the top-level ``theme``
key and keeps every other line (settings and comments other parts of rlm-tui
or the user put there) as it was.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from pathlib import Path

from ..core.config import config_dir, config_path

__all__ = ["config_dir", "config_path", "user_themes_dir", "load_theme_name", "save_theme_name"]
_THEME_LINE = re.compile(r"^\s*theme\s*=")


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def load_theme_name() -> str | None:
    """The theme last chosen, or None (also when the file is unreadable: a theme is not worth failing for)."""
    try:
        with open(config_path(), "rb") as handle:
            value = tomllib.load(handle).get("theme")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return value if isinstance(value, str) else None


def save_theme_name(name: str) -> None:
    """Remember a theme: replace or add the top-level ``theme`` line; the file stays mode 0600."""
    path = config_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    new_line = f"theme = {json.dumps(name)}"
    top_level_end = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    for i in range(top_level_end):
        if _THEME_LINE.match(lines[i]):
            lines[i] = new_line
            break
    else:
        lines.insert(0, new_line)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
