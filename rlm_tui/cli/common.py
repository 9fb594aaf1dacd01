"""What every subcommand shares: exit codes, one-line errors, flag types and the shared flags.

Each flag a user can give is defined once: the run settings come from ``core.config.OPTIONS``
(the table config.toml is checked against too), the rest are written here once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

from ..core.config import Limits, Option, Settings
from ..core.safe_text import safe

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_LIMIT = 0, 1, 2, 3


def fail(message: str, code: int, command: str = "") -> int:
    """One line on stderr, ``rlm-tui[ COMMAND]: message``; returns ``code`` for the caller to return."""
    print(f"rlm-tui{' ' + command if command else ''}: {safe(message)}", file=sys.stderr)
    return code


def report_bad_lines(bad: list[tuple[int, str]]) -> None:
    """Say which lines of a session file were skipped (at most ten, then a count)."""
    for _, why in bad[:10]:
        print(f"rlm-tui: skipped {safe(why)}", file=sys.stderr)
    if len(bad) > 10:
        print(f"rlm-tui: ... and {len(bad) - 10} more damaged lines", file=sys.stderr)


class CommandParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``rlm-tui replay: <what> (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def command_parser(name: str, description: str) -> CommandParser:
    return CommandParser(prog=f"rlm-tui {name}", description=description,
                         formatter_class=argparse.RawDescriptionHelpFormatter)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """Parsed arguments, or the exit code after --help or a usage error (returned, not raised)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def option_type(option: Option) -> Callable[[str], Any]:
    """argparse's converter for ``option``: the config file's validation, with argparse's error type."""
    def convert(text: str) -> Any:
        try:
            return option.validate(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = option.name  # argparse names the converter in some messages
    return convert


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A converter for numbers greater than 0 that are not run settings (``replay --speed``)."""
    def convert(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be greater than 0")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its error message
    return convert


def add_option(group: Any, option: Option, *, default: Any = None, help_text: str | None = None) -> None:
    """The flag for one shared setting. Its default is None, so a config value can fill it,
    or ``argparse.SUPPRESS`` for "as recorded" (``resume``)."""
    if help_text is None:
        help_text = option.help
        if default is None and option.group == "limits":
            help_text += f" (default: {getattr(Limits(), option.name)})"
        elif default is None and option.name == "model":
            help_text += f" (default: {Settings().model}; env RLM_TUI_MODEL)"
    group.add_argument(option.flag, type=option_type(option), choices=option.choices or None, default=default,
                       metavar=None if option.choices else option.metavar, help=help_text)


def add_api_key(group: Any, *, default: Any = None) -> None:
    """--api-key: a flag only, not a setting in OPTIONS, because a key is never read from config.toml."""
    group.add_argument("--api-key", metavar="KEY", default=default, help="API key (default: the provider's "
                       "environment variable; never read from a config file nor recorded)")


def add_output_flags(group: Any, *, default: Any = None) -> None:
    """--headless, --json, --session, --overwrite-session, --debug: a run's output, for ``rlm-tui`` and ``resume``.

    ``default`` is what an absent --session or --overwrite-session leaves (``argparse.SUPPRESS``: as recorded).
    """
    group.add_argument("--headless", action="store_true", help="no UI: answer on stdout, progress on stderr")
    group.add_argument("--json", action="store_true", help="with --headless: one JSON object on stdout")
    group.add_argument("--session", type=Path, default=default, metavar="FILE",
                       help="session file to write (default: a new file in ~/.local/share/rlm-tui/sessions/)")
    group.add_argument("--overwrite-session", action="store_true", default=False if default is None else default,
                       help="replace --session FILE if it exists (without this flag an existing file is refused)")
    group.add_argument("--debug", action="store_true", help="show tracebacks")
