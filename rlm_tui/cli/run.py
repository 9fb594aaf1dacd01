"""``rlm-tui PATH [QUESTION]``: ask questions about a file or directory, in the app or headless (one question)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from .. import __version__
from ..core.config import OPTION, OPTIONS, ConfigError, Limits, Settings, read_config
from ..core.safe_text import safe, safe_json
from .common import EXIT_ERROR, EXIT_LIMIT, EXIT_OK, EXIT_USAGE, add_api_key, add_option, add_output_flags, fail

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
settings: a flag overrides $RLM_TUI_MODEL (model only), which overrides the
config file ~/.config/rlm-tui/config.toml ($XDG_CONFIG_HOME respected), which
overrides the defaults shown. The file takes the options above by name with
underscores, e.g. model = "openai/gpt-5-mini", max_depth = 2, budget = 1.5
(see README: Config file). API keys never go there: they come from --api-key
or the provider's variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...).

exit codes: 0 answered, 1 error, 2 usage error (bad path, bad flag, bad config,
no API key, unreachable --api-base), 3 a limit stopped the run without an answer.

other commands (rlm-tui COMMAND --help): demo, sessions (list saved runs),
replay FILE, resume FILE --at TURN, export FILE --to md|ipynb."""

_GROUP_TITLES = {"models": "models", "limits": "limits (shared by the whole recursion tree)",
                 "steering": "steering (see README: Steering)", "kernels": "kernels (see README: Security)",
                 "output": "output"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlm-tui", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="a directory, a file, or - for standard input")
    p.add_argument("question", metavar="QUESTION", nargs="?",
                   help="what to answer about PATH; without it the app opens with a question box")
    p.add_argument("--version", action="version", version=f"rlm-tui {__version__}")
    groups = {name: p.add_argument_group(title) for name, title in _GROUP_TITLES.items()}
    for option in OPTIONS:
        add_option(groups[option.group], option)
    add_api_key(groups["models"])
    add_output_flags(groups["output"])
    return p


def settings_from(args: argparse.Namespace, config: dict[str, Any] | None = None) -> Settings:
    """Flags over $RLM_TUI_MODEL over config.toml over the built-in defaults.

    The file's ``approve`` and ``step`` are UI preferences: a --headless run takes its
    ``approve`` only when it is auto or deny (nobody is there to approve) and never its ``step``.
    """
    config = dict(config or {})
    if os.environ.get("RLM_TUI_MODEL"):
        config["model"] = os.environ["RLM_TUI_MODEL"]
    if args.headless:
        if config.get("approve") in ("ask", "rlm"):
            del config["approve"]
        config.pop("step", None)
    given = {o.name: getattr(args, o.name) for o in OPTIONS if getattr(args, o.name) is not None}
    values = {**config, **given}
    limits = Limits(**{name: value for name, value in values.items() if OPTION[name].group == "limits"})
    defaults = Settings()
    return Settings(model=values.get("model", defaults.model), sub_model=values.get("sub_model"),
                    api_base=values.get("api_base"), api_key=args.api_key, limits=limits,
                    session_path=args.session, overwrite_session=args.overwrite_session,
                    approve=values.get("approve", "auto" if args.headless else "rlm"),
                    step=values.get("step", defaults.step),
                    stream_idle=values.get("stream_idle", defaults.stream_idle),
                    context_window=values.get("context_window"), max_reply_tokens=values.get("max_reply_tokens"),
                    sandbox=values.get("sandbox", defaults.sandbox),
                    jupyter_server=values.get("jupyter_server"),
                    jupyter_token=values.get("jupyter_token") or os.environ.get("JUPYTER_TOKEN") or None)


def run_main(argv: list[str]) -> int:
    """``rlm-tui PATH [QUESTION] [options]``; the app asks for the question when none is given."""
    args = build_parser().parse_args(argv)
    if args.json and not args.headless:
        return fail("--json needs --headless", EXIT_USAGE)
    if args.headless and not (args.question or "").strip():
        return fail("--headless needs a QUESTION: rlm-tui PATH QUESTION --headless", EXIT_USAGE)
    if args.headless and args.approve in ("ask", "rlm"):
        return fail(f"--approve {args.approve} needs the UI: nobody can approve in --headless runs "
                    "(use auto or deny)", EXIT_USAGE)
    if args.headless and args.step not in (None, "off"):
        return fail("--step needs the UI: nobody can step a --headless run", EXIT_USAGE)
    try:
        settings = settings_from(args, read_config())
    except ConfigError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.path != "-":
        problem = _unusable(Path(args.path).expanduser())
        if problem:
            return fail(f"{problem}: {args.path}", EXIT_USAGE)
    refused = preflight(settings)
    if refused is not None:
        return refused
    if args.path == "-" and sys.stdin is None:
        return fail("PATH is - but there is no standard input (it is closed)", EXIT_USAGE)
    stdin_file = _stdin_to_file() if args.path == "-" else None
    try:
        path = Path(stdin_file) if stdin_file else Path(args.path).expanduser()
        if not args.headless:
            from ..ui import launch  # the UI is imported only when it is used

            return launch(settings, args.question or None, path, theme=args.theme, ask_again=True)
        return run_headless(settings, args.question, path, as_json=args.json, debug=args.debug)
    finally:
        if stdin_file:
            os.unlink(stdin_file)


def preflight(settings: Settings) -> int | None:
    """Check that the run can reach its models (core/preflight.py): None if so, else the exit code.

    Called before a session file, a context or a kernel exists, so a refused run leaves nothing.
    """
    from ..core.preflight import PreflightError, check

    try:
        warnings = check(settings)
    except PreflightError as exc:
        return fail(str(exc), EXIT_USAGE)
    for warning in warnings:
        print(f"rlm-tui: warning: {safe(warning)}", file=sys.stderr)  # model ids come from the server
    return None


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
    from ..core.engine import Engine, SetupError
    from ..headless import ProgressPrinter

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
