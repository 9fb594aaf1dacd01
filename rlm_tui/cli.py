"""The ``rlm-tui`` command: run a question over a file or directory, with or without the UI."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from . import __version__
from .core.config import Limits, Settings
from .core.safe_text import safe, safe_json

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_LIMIT = 0, 1, 2, 3
T = TypeVar("T")

DESCRIPTION = """\
Run a Recursive Language Model over PATH to answer QUESTION. The input is
loaded as `context` in a Jupyter kernel; the root model writes code to explore
it and calls models from that code (llm_query, rlm_query). Every run is saved
as a session file (JSONL).

examples:
  rlm-tui ./repo "Where is the retry logic?" --model openai/gpt-5-mini
  rlm-tui notes.txt "Summarise" --headless --json --model ollama_chat/qwen3
  cat log.txt | rlm-tui - "What failed?" --headless
"""

EPILOG = """\
exit codes: 0 answered, 1 error, 2 usage error (bad path, bad flag),
3 a limit stopped the run without an answer.
API keys come from --api-key or the provider's usual variable
(OPENAI_API_KEY, ANTHROPIC_API_KEY, ...).

other commands (rlm-tui COMMAND --help): demo, sessions (list saved runs),
replay FILE, resume FILE --at TURN, export FILE --to md|ipynb."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = Limits()
    p = argparse.ArgumentParser(prog="rlm-tui", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="a directory, a file, or - for standard input")
    p.add_argument("question", metavar="QUESTION", help="what to answer about PATH")
    p.add_argument("--version", action="version", version=f"rlm-tui {__version__}")
    m = p.add_argument_group("models")
    m.add_argument("--model", default=os.environ.get("RLM_TUI_MODEL", "openai/gpt-5-mini"),
                   help="root model, any litellm model string (default: %(default)s; env RLM_TUI_MODEL)")
    m.add_argument("--sub-model", help="model for llm_query and child RLMs (default: the root model)")
    m.add_argument("--api-base", help="base URL of an OpenAI-compatible or provider endpoint")
    m.add_argument("--api-key", help="API key (default: the provider's environment variable)")
    lim = p.add_argument_group("limits (shared by the whole recursion tree)")
    lim.add_argument("--max-depth", type=_positive_int, default=d.max_depth,
                     help="RLM levels; 1 = only the root is an RLM (default: %(default)s)")
    lim.add_argument("--max-iterations", type=_positive_int, default=d.max_iterations,
                     help="model turns per RLM (default: %(default)s)")
    lim.add_argument("--max-subcalls", type=_positive_int, default=d.max_subcalls,
                     help="sub-calls over the whole run (default: %(default)s)")
    lim.add_argument("--concurrency", type=_positive_int, default=d.concurrency,
                     help="sub-calls in flight at once (default: %(default)s)")
    lim.add_argument("--max-tokens", type=_positive_int, default=d.max_tokens,
                     help="tokens in+out over the whole run (default: %(default)s)")
    lim.add_argument("--budget", type=_positive_float, default=d.budget,
                     help="US dollars over the whole run (default: %(default)s)")
    lim.add_argument("--timeout", type=_positive_float, default=d.timeout,
                     help="wall seconds for the whole run (default: %(default)s)")
    lim.add_argument("--cell-timeout", type=_positive_float, default=d.cell_timeout,
                     help="seconds one code cell may run (default: %(default)s)")
    lim.add_argument("--output-chars", type=_positive_int, default=d.output_chars,
                     help="a cell's output shown to the model is cut to this (default: %(default)s)")
    st = p.add_argument_group("steering (see README: Steering)")
    st.add_argument("--approve", choices=("ask", "rlm", "auto", "deny"),
                    help="which sub-calls wait for your approval: ask = every llm_query/rlm_query, rlm = only "
                    "child RLMs, auto = none, deny = refuse all (the code gets an error string). "
                    "Default: rlm in the UI, auto with --headless (which allows only auto or deny)")
    st.add_argument("--step", choices=("off", "turn", "cell", "all"), default="off",
                    help="start in step mode: pause before each root model call (turn), before each code "
                    "cell with the code editable (cell), or both (all) (default: %(default)s; UI only)")
    o = p.add_argument_group("output")
    o.add_argument("--headless", action="store_true", help="no UI: answer on stdout, progress on stderr")
    o.add_argument("--json", action="store_true", help="with --headless: one JSON object on stdout")
    o.add_argument("--session", type=Path, help="session file to write (default: a new file in "
                   "~/.local/share/rlm-tui/sessions/)")
    o.add_argument("--overwrite-session", action="store_true",
                   help="replace --session FILE if it exists (without this flag an existing file is refused)")
    o.add_argument("--debug", action="store_true", help="show tracebacks")
    o.add_argument("--theme", metavar="NAME", help="UI colour theme (default: the last one chosen, else "
                   "rlm-midnight); themes are files in ~/.config/rlm-tui/themes/ too")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    limits = Limits(max_depth=args.max_depth, max_iterations=args.max_iterations,
                    max_subcalls=args.max_subcalls, concurrency=args.concurrency, max_tokens=args.max_tokens,
                    budget=args.budget, timeout=args.timeout, cell_timeout=args.cell_timeout,
                    output_chars=args.output_chars)
    approve = args.approve or ("auto" if args.headless else "rlm")
    return Settings(model=args.model, sub_model=args.sub_model, api_base=args.api_base, api_key=args.api_key,
                    limits=limits, session_path=args.session, overwrite_session=args.overwrite_session,
                    approve=approve, step=args.step)


def fail(message: str, code: int) -> int:
    print(f"rlm-tui: {safe(message)}", file=sys.stderr)
    return code


def entry() -> int:
    """The console script: ``main`` with a reader that went away (``| head``) treated as done."""
    try:
        return main()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
        return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    if args.json and not args.headless:
        return fail("--json needs --headless", EXIT_USAGE)
    if args.headless and args.approve in ("ask", "rlm"):
        return fail(f"--approve {args.approve} needs the UI: nobody can approve in --headless runs "
                    "(use auto or deny)", EXIT_USAGE)
    if args.headless and args.step != "off":
        return fail("--step needs the UI: nobody can step a --headless run", EXIT_USAGE)
    stdin_file: str | None = None
    try:
        if args.path == "-":
            stdin_file = _stdin_to_file()
            path = Path(stdin_file)
        else:
            path = Path(args.path).expanduser()
            problem = _unusable(path)
            if problem:
                return fail(f"{problem}: {args.path}", EXIT_USAGE)
        settings = settings_from(args)
        if not args.headless:
            from .ui import launch  # the UI is imported only when it is used

            return launch(settings, args.question, path, theme=args.theme)
        return run_headless(settings, args.question, path, as_json=args.json, debug=args.debug)
    finally:
        if stdin_file:
            os.unlink(stdin_file)


#: Commands other than a run (``rlm-tui demo``, ``rlm-tui replay`` ...): name -> handler(argv).
#: A path with one of these names is given as ``./name``.
SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {}


def _demo(argv: list[str]) -> int:
    """``rlm-tui demo``: the UI on a bundled scripted run (see ``rlm_tui/demo.py``)."""
    from .demo import main as demo_main

    return demo_main(argv)


SUBCOMMANDS["demo"] = _demo


def _unusable(path: Path) -> str | None:
    """Why ``path`` cannot be the input (missing, a symlink loop, unreadable), or None."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "no such file or directory"
    except OSError as exc:
        return f"cannot open ({(exc.strerror or type(exc).__name__).lower()})"
    if not os.access(path, os.R_OK):
        return "cannot read (permission denied)"
    if path.is_file():
        try:
            open(path, "rb").close()  # os.access trusts root; opening tells the truth
        except OSError as exc:
            return f"cannot read ({(exc.strerror or type(exc).__name__).lower()})"
    return None


def _stdin_to_file() -> str:
    """Standard input goes to a private temporary file the kernel then loads."""
    fd, name = tempfile.mkstemp(prefix="rlm-tui-stdin-", suffix=".txt")
    with os.fdopen(fd, "wb") as handle:
        while chunk := sys.stdin.buffer.read(1 << 20):
            handle.write(chunk)
    return name


async def _cancel_on_signals(work: Awaitable[T], received: list[int]) -> T:
    """SIGTERM and SIGHUP cancel the run like Ctrl+C does (asyncio.run handles SIGINT itself),
    so kernels are shut down and the session is closed instead of the process dying mid-write."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        received.append(signum)
        if task is not None:
            task.cancel()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal, signum)
    return await work


def run_headless(settings: Settings, question: str, path: Path, as_json: bool, debug: bool,
                 prepare: Callable[[Any], None] | None = None) -> int:
    """Run without the UI; ``prepare(engine)`` may adjust the engine first (rlm-tui resume)."""
    from .core.engine import Engine, SetupError
    from .headless import ProgressPrinter

    engine = Engine(settings, question, path, sink=ProgressPrinter())
    if prepare is not None:
        prepare(engine)
    received: list[int] = []
    try:
        engine.open_session()
        result = asyncio.run(_cancel_on_signals(engine.run(), received))
    except SetupError as exc:
        return fail(str(exc), EXIT_USAGE)
    except (KeyboardInterrupt, asyncio.CancelledError):
        # The engine has shut its kernels down and recorded an "interrupted" run_finished.
        return fail(f"interrupted; session saved to {engine.session_path}", 128 + (received or [signal.SIGINT])[0])
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if debug:
            raise
        return fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
    if as_json:
        print(safe_json({"answer": result.answer, "usage": result.usage, "calls": result.calls,
                         "stopped_by": result.stopped_by, "session": str(result.session),
                         "duration_s": round(result.duration_s, 3), "error": result.error}))
    elif result.answer is not None:
        print(safe(result.answer))
    print(f"session: {safe(str(result.session))}", file=sys.stderr)
    if result.error:
        return fail(result.error, EXIT_ERROR)
    if result.answer is None:
        return fail(f"stopped by {result.stopped_by or 'an unknown cause'} without an answer", EXIT_LIMIT)
    return EXIT_OK


# rlm-tui replay / sessions / resume / export (rlm_tui/sessions/commands.py)
from .sessions.commands import COMMANDS as _SESSION_COMMANDS  # noqa: E402 - needs SUBCOMMANDS defined

SUBCOMMANDS.update(_SESSION_COMMANDS)
