"""The ``rlm-tui`` command: argument parsing, exit codes and printing for every subcommand.

``rlm-tui PATH QUESTION`` runs (``run.py``); ``rlm-tui COMMAND ...`` dispatches to the
commands below. Only argparse and the settings table are imported at load time: each command
imports the engine, the sessions library or the UI when it runs.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

from .common import EXIT_OK, EXIT_USAGE
from .demo import demo_main
from .resume import resume_main
from .run import run_main
from .sessions import export_main, replay_main, sessions_main

SHORT_USAGE = """\
usage: rlm-tui PATH [QUESTION] [options] answer questions about a file or folder (- reads stdin)
       rlm-tui demo                      see it work now: a bundled run, no API key needed
       rlm-tui COMMAND ...               sessions, replay, resume, export
all options and the config file: rlm-tui --help"""

#: Commands other than a run: name -> handler(argv). A path with one of these names is given as ``./name``.
SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "demo": demo_main,
    "replay": replay_main,
    "sessions": sessions_main,
    "resume": resume_main,
    "export": export_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(SHORT_USAGE, file=sys.stderr)
        return EXIT_USAGE
    if argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return run_main(argv)


def entry() -> int:
    """The console script: ``main`` with a reader that went away (``| head``) treated as done."""
    try:
        return main()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
        return EXIT_OK
