"""``rlm-tui replay | sessions | export``: the commands that read saved sessions.

Each takes its own arguments (``rlm-tui replay --help``). Usage errors exit 2 with one line on
stderr. The reading itself is the ``sessions`` library's; here are the arguments and the printing.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from ..core.config import OPTION
from ..core.safe_text import safe, safe_json
from .common import (EXIT_ERROR, EXIT_OK, EXIT_USAGE, add_option, command_parser, fail, parse, positive,
                     report_bad_lines)


def _open_checked(command: str, path: Path) -> tuple[Any, int | None]:
    """The file's SessionLog, or (None, exit code) after a one-line message."""
    from ..core.session import SessionFormatError
    from ..sessions.transcript import SessionLog

    try:
        log = SessionLog.read(path)
    except FileNotFoundError:
        return None, fail(f"no such file: {path}", EXIT_USAGE, command)
    except IsADirectoryError:
        return None, fail(f"{path} is a directory; give a session file (rlm-tui sessions lists them)", EXIT_USAGE,
                          command)
    except PermissionError:
        return None, fail(f"cannot read {path}: permission denied", EXIT_USAGE, command)
    except SessionFormatError as exc:
        return None, fail(str(exc), EXIT_USAGE, command)
    if not log.events:
        return None, fail(f"{path} is empty: no events recorded", EXIT_USAGE, command)
    report_bad_lines(log.bad_lines)
    return log, None


# ---- replay --------------------------------------------------------------------------------

REPLAY_HELP = """\
Watch a recorded run again. Without --headless the app opens on the file, with
controls to play, pause, step (event, cell, turn) forwards and back, and jump
to the start, the end or the selected node.

examples:
  rlm-tui replay ~/.local/share/rlm-tui/sessions/20261121-103000.jsonl
  rlm-tui replay run.jsonl --end            # open on the finished run
  rlm-tui replay run.jsonl --follow         # a run another process is still writing
  rlm-tui replay run.jsonl --headless > transcript.txt

keys in the app: space play/pause · +/- speed · . and , one event · ] and [ one
cell · } and { one turn · g/G start/end · j jump to the node under the tree
cursor · ? every key
"""


def replay_main(argv: list[str]) -> int:
    p = command_parser("replay", REPLAY_HELP)
    p.add_argument("file", metavar="FILE", type=Path, help="a session file (.jsonl)")
    p.add_argument("--headless", action="store_true",
                   help="print a readable transcript (turns, code, outputs, the tree with usage, the answer)")
    p.add_argument("--end", action="store_true", help="open at the end: the finished run at once")
    p.add_argument("--follow", action="store_true",
                   help="keep reading as the file grows (a run in progress) until the run finishes")
    p.add_argument("--full", action="store_true", help="with --headless: do not shorten outputs or batches")
    p.add_argument("--max-output", type=int, default=4000, metavar="CHARS",
                   help="with --headless: characters of each cell's output to print (default: %(default)s)")
    p.add_argument("--speed", type=positive(float), default=1.0, metavar="X",
                   help="playback speed, 0.25 to 128 (default: %(default)s; long waits are shortened)")
    p.add_argument("--paused", action="store_true", help="open at the start without playing")
    add_option(p, OPTION["theme"])
    args = parse(p, argv)
    if isinstance(args, int):
        return args
    if args.headless:
        if args.follow:
            return _follow_headless(args.file)
        log, code = _open_checked("replay", args.file)
        if log is None:
            return code or EXIT_USAGE
        from ..sessions.transcript import render_text

        render_text(log, sys.stdout, max_output=None if args.full else args.max_output,
                    max_children=None if args.full else 12)
        return EXIT_OK
    from ..ui.replay import launch_replay

    return launch_replay(args.file, end=args.end, follow=args.follow, theme=args.theme, speed=args.speed,
                         play=not args.paused)


def _follow_headless(path: Path) -> int:
    """Print progress lines as another process writes the file; stop when the run finishes."""
    from ..core.session import SessionFormatError
    from ..headless import ProgressPrinter
    from ..sessions.follow import follow

    printers = [ProgressPrinter(sys.stdout)]
    if not path.exists():
        print(f"waiting for {path} to appear ...", file=sys.stderr, flush=True)

    async def run() -> bool:
        async for update in follow(path):
            if update.reset:
                print(safe(f"-- {path} was replaced; reading it from the start --"), flush=True)
                printers.append(ProgressPrinter(sys.stdout))  # a fresh tree for the new file
            for event in update.events:
                printers[-1](event)
            for _, why in update.bad_lines:
                print(f"rlm-tui: skipped {safe(why)}", file=sys.stderr)
            if update.finished:
                return True
        return False

    try:
        finished = asyncio.run(run())
    except KeyboardInterrupt:
        return fail("stopped following", 130, "replay")
    except SessionFormatError as exc:
        return fail(str(exc), EXIT_USAGE, "replay")
    if finished:
        answer = printers[-1].model.answer
        print(safe(f"the run has finished: {'answer: ' + answer if answer is not None else 'no answer'}"),
              flush=True)
    return EXIT_OK


# ---- sessions ------------------------------------------------------------------------------

SESSIONS_HELP = """\
List saved sessions, newest first: when, the question, the model, the answer
(or how the run stopped), tokens and cost. Only the first and last lines of
each file are read, so a folder of big sessions lists at once.

examples:
  rlm-tui sessions
  rlm-tui sessions --open 1          # replay the newest
  rlm-tui sessions --dir ./runs --json
"""


def sessions_main(argv: list[str]) -> int:
    from ..core.session import default_sessions_dir

    p = command_parser("sessions", SESSIONS_HELP)
    p.add_argument("--dir", type=Path, default=None,
                   help=f"folder of session files (default: {default_sessions_dir()})")
    p.add_argument("-n", "--limit", type=int, default=50, help="show at most this many (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per session on stdout")
    p.add_argument("--open", type=int, metavar="N", help="replay session number N of the list")
    p.add_argument("--headless", action="store_true", help="with --open: print its transcript instead")
    args = parse(p, argv)
    if isinstance(args, int):
        return args
    from ..sessions.listing import format_table, list_sessions

    directory = args.dir or default_sessions_dir()
    if args.dir is not None and not directory.is_dir():
        return fail(f"no such folder: {directory}", EXIT_USAGE, "sessions")
    sessions = list_sessions(directory, limit=None if args.open else args.limit)
    if args.open is not None:
        if not 1 <= args.open <= len(sessions):
            return fail(f"--open {args.open}: there are {len(sessions)} sessions in {directory}", EXIT_USAGE,
                        "sessions")
        target = str(sessions[args.open - 1].path)
        return replay_main([target, "--headless"] if args.headless else [target])
    if args.json:
        for summary in sessions:
            print(safe_json(summary.as_dict()))
        return EXIT_OK
    if not sessions:
        print(f"no sessions in {directory}")
        return EXIT_OK
    print(safe(f"sessions in {directory}, newest first:"))
    print(format_table(sessions))
    print("\nopen one: rlm-tui sessions --open N   (or rlm-tui replay FILE)")
    return EXIT_OK


# ---- export --------------------------------------------------------------------------------

EXPORT_HELP = """\
Write a recorded run as a Markdown report (question, answer, the tree with
usage, each turn's code and output) or as a Jupyter notebook of the root
kernel's cells with their outputs.

examples:
  rlm-tui export run.jsonl --to md              # writes run.md
  rlm-tui export run.jsonl --to ipynb -o run.ipynb
  rlm-tui export run.jsonl --to md -o -         # to stdout
"""


def export_main(argv: list[str]) -> int:
    p = command_parser("export", EXPORT_HELP)
    p.add_argument("file", metavar="FILE", type=Path, help="a session file (.jsonl)")
    p.add_argument("--to", choices=["md", "ipynb"], required=True, help="the format")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="where to write (default: FILE with the new suffix; - = stdout)")
    p.add_argument("--full", action="store_true", help="md: do not shorten outputs or batches")
    args = parse(p, argv)
    if isinstance(args, int):
        return args
    log, code = _open_checked("export", args.file)
    if log is None:
        return code or EXIT_USAGE
    from ..sessions.export import to_markdown, to_notebook

    if args.to == "md":
        text = to_markdown(log, full=args.full)
    else:
        import nbformat

        text = nbformat.writes(to_notebook(log))
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    out = Path(args.output) if args.output else args.file.with_suffix(f".{args.to}")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_ERROR, "export")
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK
