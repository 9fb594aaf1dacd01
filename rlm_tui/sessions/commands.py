"""The session subcommands: ``rlm-tui replay | sessions | resume | export``.

Each takes its own arguments (``rlm-tui replay --help``). Usage errors exit 2
with one line on stderr. This module imports only argparse at load time: the
run command imports it to register the subcommands.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from ..core.safe_text import safe, safe_json

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_LIMIT = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``rlm-tui replay: <what> (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser(name: str, description: str, epilog: str = "") -> _Parser:
    return _Parser(prog=f"rlm-tui {name}", description=description, epilog=epilog,
                   formatter_class=argparse.RawDescriptionHelpFormatter)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """Parsed arguments, or the exit code after --help or a usage error (returned, not raised)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def _fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    print(f"rlm-tui {command}: {safe(message)}", file=sys.stderr)
    return code


def _open_checked(command: str, path: Path) -> tuple[Any, int | None]:
    """The file's SessionLog, or (None, exit code) after a one-line message."""
    from ..core.session import SessionFormatError
    from .transcript import SessionLog

    try:
        log = SessionLog.read(path)
    except FileNotFoundError:
        return None, _fail(command, f"no such file: {path}")
    except IsADirectoryError:
        return None, _fail(command, f"{path} is a directory; give a session file (rlm-tui sessions lists them)")
    except PermissionError:
        return None, _fail(command, f"cannot read {path}: permission denied")
    except SessionFormatError as exc:
        return None, _fail(command, str(exc))
    if not log.events:
        return None, _fail(command, f"{path} is empty: no events recorded")
    _report_bad_lines(log.bad_lines)
    return log, None


def _report_bad_lines(bad: list[tuple[int, str]]) -> None:
    for _, why in bad[:10]:
        print(f"rlm-tui: skipped {safe(why)}", file=sys.stderr)
    if len(bad) > 10:
        print(f"rlm-tui: ... and {len(bad) - 10} more damaged lines", file=sys.stderr)


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
    p = _parser("replay", REPLAY_HELP)
    p.add_argument("file", metavar="FILE", type=Path, help="a session file (.jsonl)")
    p.add_argument("--headless", action="store_true",
                   help="print a readable transcript (turns, code, outputs, the tree with usage, the answer)")
    p.add_argument("--end", action="store_true", help="open at the end: the finished run at once")
    p.add_argument("--follow", action="store_true",
                   help="keep reading as the file grows (a run in progress) until the run finishes")
    p.add_argument("--full", action="store_true", help="with --headless: do not shorten outputs or batches")
    p.add_argument("--max-output", type=int, default=4000, metavar="CHARS",
                   help="with --headless: characters of each cell's output to print (default: %(default)s)")
    p.add_argument("--speed", type=_positive(float), default=1.0, metavar="X",
                   help="playback speed, 0.25 to 128 (default: %(default)s; long waits are shortened)")
    p.add_argument("--paused", action="store_true", help="open at the start without playing")
    p.add_argument("--theme", help="the app's theme")
    args = _parse(p, argv)
    if isinstance(args, int):
        return args
    if args.headless:
        if args.follow:
            return _follow_headless(args.file)
        log, code = _open_checked("replay", args.file)
        if log is None:
            return code or EXIT_USAGE
        from .transcript import render_text

        render_text(log, sys.stdout, max_output=None if args.full else args.max_output,
                    max_children=None if args.full else 12)
        return EXIT_OK
    return _replay_app(args)


def _replay_app(args: argparse.Namespace) -> int:
    from ..ui.replay import launch_replay

    return launch_replay(args.file, end=args.end, follow=args.follow, theme=args.theme, speed=args.speed,
                         play=not args.paused)


def _follow_headless(path: Path) -> int:
    """Print progress lines as another process writes the file; stop when the run finishes."""
    from ..core.session import SessionFormatError
    from ..headless import ProgressPrinter
    from .follow import follow

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
        return _fail("replay", "stopped following", 130)
    except SessionFormatError as exc:
        return _fail("replay", str(exc))
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

    p = _parser("sessions", SESSIONS_HELP)
    p.add_argument("--dir", type=Path, default=None,
                   help=f"folder of session files (default: {default_sessions_dir()})")
    p.add_argument("-n", "--limit", type=int, default=50, help="show at most this many (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per session on stdout")
    p.add_argument("--open", type=int, metavar="N", help="replay session number N of the list")
    p.add_argument("--headless", action="store_true", help="with --open: print its transcript instead")
    args = _parse(p, argv)
    if isinstance(args, int):
        return args
    from .listing import format_table, list_sessions

    directory = args.dir or default_sessions_dir()
    if args.dir is not None and not directory.is_dir():
        return _fail("sessions", f"no such folder: {directory}")
    sessions = list_sessions(directory, limit=None if args.open else args.limit)
    if args.open is not None:
        if not 1 <= args.open <= len(sessions):
            return _fail("sessions", f"--open {args.open}: there are {len(sessions)} sessions in {directory}")
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


# ---- resume --------------------------------------------------------------------------------

RESUME_HELP = """\
Re-run a recorded session from a turn. The root model's recorded replies for
the turns before TURN are replayed and their code runs again in a fresh kernel
(so the REPL state is real); from TURN on the live model answers. Use it to
rewind to the turn where the model went wrong and try again, perhaps with
another model or other limits. The new run is saved to a new session file that
names the one it came from.

Settings (models, API base, limits) are the recorded ones unless given here.
API keys are never recorded: give --api-key or the provider's variable.

examples:
  rlm-tui resume run.jsonl --at 3 --headless
  rlm-tui resume run.jsonl --at 2 --model anthropic/claude-sonnet-4-5 --max-iterations 10
"""

_LIMIT_HELP = {
    "max_depth": "RLM levels", "max_iterations": "model turns per RLM", "max_subcalls": "sub-calls in the run",
    "concurrency": "sub-calls in flight at once", "max_tokens": "tokens in+out over the run",
    "budget": "US dollars over the run", "timeout": "wall seconds for the run",
    "cell_timeout": "seconds one cell may run", "output_chars": "a cell's output shown to the model is cut here",
    "max_file_bytes": "larger files in a directory are skipped", "max_context_bytes": "the input is cut here",
}


def resume_main(argv: list[str]) -> int:
    from ..core.config import Limits
    from .resume import LIMIT_FIELDS

    p = _parser("resume", RESUME_HELP)
    p.add_argument("file", metavar="FILE", type=Path, help="the session file to resume")
    p.add_argument("--at", type=int, required=True, metavar="TURN",
                   help="the first root turn the live model writes (1 = start over with the same question)")
    p.add_argument("--path", type=Path, help="the input, when the recorded one has moved")
    p.add_argument("--live-subcalls", action="store_true",
                   help="ask the live model for the sub-calls of replayed turns too (default: their recorded replies)")
    m = p.add_argument_group("models (default: as recorded)")
    m.add_argument("--model", default=argparse.SUPPRESS, help="root model for the live turns")
    m.add_argument("--sub-model", default=argparse.SUPPRESS, help="model for llm_query and child RLMs")
    m.add_argument("--api-base", default=argparse.SUPPRESS, help="base URL of the provider or server")
    m.add_argument("--api-key", default=argparse.SUPPRESS, help="API key")
    lim = p.add_argument_group("limits (default: as recorded)")
    defaults = Limits()
    for name in LIMIT_FIELDS:
        kind = float if isinstance(getattr(defaults, name), float) else int
        lim.add_argument(f"--{name.replace('_', '-')}", type=_positive(kind), default=argparse.SUPPRESS,
                         metavar="N", dest=name, help=_LIMIT_HELP.get(name, name.replace("_", " ")))
    o = p.add_argument_group("output")
    o.add_argument("--headless", action="store_true", help="no UI: answer on stdout, progress on stderr")
    o.add_argument("--json", action="store_true", help="with --headless: one JSON object on stdout")
    o.add_argument("--session", type=Path, default=argparse.SUPPRESS, dest="session_path",
                   help="the new session file (default: a new file in the sessions folder)")
    o.add_argument("--overwrite-session", action="store_true", default=argparse.SUPPRESS,
                   dest="overwrite_session", help="replace --session FILE if it exists (else it is refused)")
    o.add_argument("--debug", action="store_true", help="show tracebacks")
    args = _parse(p, argv)
    if isinstance(args, int):
        return args
    if args.json and not args.headless:
        return _fail("resume", "--json needs --headless")
    from ..core.session import SessionFormatError
    from .resume import ResumeError, plan

    given = vars(args)
    overrides = {k: given[k] for k in (*LIMIT_FIELDS, "model", "sub_model", "api_base", "api_key", "session_path",
                                   "overwrite_session")
                 if k in given}
    try:
        resumed = plan(args.file, args.at, overrides=overrides, path=args.path, subcalls=not args.live_subcalls,
                       damaged=_report_bad_lines)
    except FileNotFoundError:
        return _fail("resume", f"no such file: {args.file}")
    except (ResumeError, SessionFormatError) as exc:
        return _fail("resume", str(exc))
    from ..cli import preflight

    refused = preflight(resumed.settings)  # the live turns need their models: check before any kernel starts
    if refused is not None:
        return refused
    print(safe(f"resuming {args.file} at turn {args.at}: {args.at - 1} recorded turn"
               f"{'s' if args.at != 2 else ''} replayed, then {resumed.settings.model} live"), file=sys.stderr)
    if args.headless:
        from ..cli import run_headless

        return run_headless(resumed.settings, resumed.question, resumed.path, as_json=args.json,
                            debug=args.debug, prepare=resumed.prepare)
    from ..ui import launch

    return launch(resumed.settings, resumed.question, resumed.path, prepare=resumed.prepare)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be greater than 0")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


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
    p = _parser("export", EXPORT_HELP)
    p.add_argument("file", metavar="FILE", type=Path, help="a session file (.jsonl)")
    p.add_argument("--to", choices=["md", "ipynb"], required=True, help="the format")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="where to write (default: FILE with the new suffix; - = stdout)")
    p.add_argument("--full", action="store_true", help="md: do not shorten outputs or batches")
    args = _parse(p, argv)
    if isinstance(args, int):
        return args
    log, code = _open_checked("export", args.file)
    if log is None:
        return code or EXIT_USAGE
    from .export import to_markdown, to_notebook

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
        return _fail("export", f"cannot write {out}: {exc.strerror or exc}", EXIT_ERROR)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "replay": replay_main,
    "sessions": sessions_main,
    "resume": resume_main,
    "export": export_main,
}


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - for python -m
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        return _fail("", f"expected one of {', '.join(COMMANDS)}")
    return COMMANDS[args[0]](args[1:])
