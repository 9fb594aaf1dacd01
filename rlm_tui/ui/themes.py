"""Theme files: TOML mapping onto ``textual.theme.Theme`` fields.

Bundled themes live in ``<checkout>/themes`` (or ``rlm_tui/_themes`` in an
installed wheel); the user's own go in ``~/.config/rlm-tui/themes`` and
override a bundled theme of the same name. One extra key, ``code_theme``,
names the Pygments style for code in the transcript.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound
from textual.color import Color, ColorParseError
from textual.theme import BUILTIN_THEMES, Theme

from .prefs import user_themes_dir

DEFAULT_THEME = "rlm-midnight"
_COLOR_KEYS = ("primary", "secondary", "warning", "error", "success", "accent",
               "foreground", "background", "surface", "panel", "boost")
_OTHER_KEYS = {"name", "dark", "luminosity_spread", "text_alpha", "variables", "code_theme"}
_PACKAGE = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ThemeFile:
    theme: Theme
    code_theme: str
    path: Path


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the key."""


def bundled_dirs() -> list[Path]:
    """Where bundled themes are: the source checkout, then the installed package."""
    return [d for d in (_PACKAGE.parent / "themes", _PACKAGE / "_themes") if d.is_dir()]


def parse_theme(path: Path) -> ThemeFile:
    """Read one theme file, checking every key so a typo is reported, not ignored."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ThemeError(f"{path}: {exc}") from exc
    unknown = set(data) - set(_COLOR_KEYS) - _OTHER_KEYS
    if unknown:
        raise ThemeError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"allowed: {', '.join(_COLOR_KEYS)}, {', '.join(sorted(_OTHER_KEYS))}")
    if not isinstance(data.get("primary"), str):
        raise ThemeError(f"{path}: 'primary' (a colour such as \"#7aa2f7\") is required")
    for key in _COLOR_KEYS:
        if key in data:
            try:
                Color.parse(data[key])
            except (ColorParseError, TypeError) as exc:
                raise ThemeError(f"{path}: {key} = {data[key]!r} is not a colour") from exc
    dark = bool(data.get("dark", True))
    code_theme = str(data.get("code_theme") or ("monokai" if dark else "friendly"))
    try:
        get_style_by_name(code_theme)
    except ClassNotFound as exc:
        raise ThemeError(f"{path}: code_theme = {code_theme!r} is not a Pygments style "
                         "(e.g. monokai, one-dark, friendly, solarized-light)") from exc
    fields = {key: data[key] for key in _COLOR_KEYS if key in data}
    theme = Theme(name=str(data.get("name") or path.stem), dark=dark,
                  luminosity_spread=float(data.get("luminosity_spread", 0.15)),
                  text_alpha=float(data.get("text_alpha", 0.95)),
                  variables={str(k): str(v) for k, v in (data.get("variables") or {}).items()}, **fields)
    return ThemeFile(theme, code_theme, path)


def load_themes() -> tuple[dict[str, ThemeFile], list[str]]:
    """All theme files by name (later folders win) and an error message per bad file."""
    themes: dict[str, ThemeFile] = {}
    errors: list[str] = []
    for folder in [*bundled_dirs(), user_themes_dir()]:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                loaded = parse_theme(path)
            except ThemeError as exc:
                errors.append(str(exc))
                continue
            themes[loaded.theme.name] = loaded
    return themes, errors


def theme_names() -> list[str]:
    """Every name ``--theme`` accepts: theme files and Textual's built-in themes."""
    return sorted({*load_themes()[0], *BUILTIN_THEMES})
