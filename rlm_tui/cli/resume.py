"""``rlm-tui resume FILE --at [QUESTION.]TURN`` / ``--ask QUESTION``: the arguments and output of a resumed run
(``sessions.resume`` plans it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.config import OPTIONS
from ..core.safe_text import safe
from .common import EXIT_USAGE, add_api_key, add_option, add_output_flags, command_parser, fail, parse, \
    report_bad_lines
from .run import preflight, run_headless

RESUME_HELP = """\
Re-run a recorded session from a turn. The root model's recorded replies for
the turns before TURN are replayed and their code runs again in a fresh kernel
(so the REPL state is real); from TURN on the live model answers. Use it to
rewind to the turn where the model went wrong and try again, perhaps with
another model or other limits. The new run is saved to a new session file that
names the one it came from.

In a session of several questions, --at QUESTION.TURN (like 2.3) names a turn
of a later question: the questions before it are replayed whole, in order, and
the resumed session ends with that question's answer. A plain TURN is
question 1's.

The cells you ran yourself run again too, in their place among the model's
cells, so the model's later cells find what yours defined. One that fails again
is recorded with its error and the run goes on, as when you ran it. Your
decisions replay too: a cell you skipped at its step gate is skipped again (the
recorded reply still holds its code), one you edited runs as you edited it, a
sub-call you denied is denied again and one you edited runs as edited; steps
you took are not asked again.

Settings (models, API base, limits) are the recorded ones unless given here.
API keys are never recorded: give --api-key or the provider's variable. A
--headless resume never steps or waits for approvals, whatever was recorded.

With --ask instead of --at, the session goes on with a new question: every
recorded question is replayed whole (its code runs again with the recorded
model and sub-call replies, so the REPL holds what it built), then QUESTION is
asked of the live model, which is told the earlier questions and answers and
the REPL's variables. --json prints the new question's answer. A question
replayed whole never goes live: one that was stopped (a timeout, a kill, an
error) ends where its recording ends, the same way.

examples:
  rlm-tui resume run.jsonl --at 3 --headless
  rlm-tui resume run.jsonl --at 2.3 --headless      # question 2, turn 3
  rlm-tui resume run.jsonl --ask "Which callers disable the retry?" --headless --json
  rlm-tui resume run.jsonl --at 2 --model anthropic/claude-sonnet-4-5 --max-iterations 10
"""

#: Settings resume does not take: steering and the theme are the app's, not the recorded run's.
_NOT_RESUMED = ("steering", "output")
#: The run settings resume can change: the same flags as ``rlm-tui PATH QUESTION``, defaulting to the recorded ones.
_RESUMED = tuple(option for option in OPTIONS if option.group not in _NOT_RESUMED)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("resume", RESUME_HELP)
    p.add_argument("file", metavar="FILE", type=Path, help="the session file to resume")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--at", metavar="[QUESTION.]TURN",
                       help="the first root turn the live model writes (1 = start over with the same question); "
                            "QUESTION.TURN for a later question's turn, like 2.3")
    start.add_argument("--ask", metavar="QUESTION",
                       help="replay the whole recorded session, then ask QUESTION of the live model")
    p.add_argument("--path", type=Path, help="the input, when the recorded one has moved")
    p.add_argument("--live-subcalls", action="store_true",
                   help="ask the live model for the sub-calls of replayed turns too (default: their recorded replies)")
    groups = {option.group: p.add_argument_group(f"{option.group} (default: as recorded)") for option in _RESUMED}
    for option in _RESUMED:
        add_option(groups[option.group], option, default=argparse.SUPPRESS)
    add_api_key(groups["models"], default=argparse.SUPPRESS)
    add_output_flags(p.add_argument_group("output"), default=argparse.SUPPRESS)
    return p


def resume_main(argv: list[str]) -> int:
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.json and not args.headless:
        return fail("--json needs --headless", EXIT_USAGE, "resume")
    if args.ask is not None and not args.ask.strip():
        return fail("--ask needs a question", EXIT_USAGE, "resume")
    from ..core.session import SessionFormatError
    from ..sessions.resume import ResumeError, parse_at, plan

    given = vars(args)
    names = [option.name for option in _RESUMED] + ["api_key", "overwrite_session"]
    overrides = {name: given[name] for name in names if name in given}
    if "session" in given:
        overrides["session_path"] = given["session"]
    try:
        question, at = parse_at(args.at) if args.at is not None else (1, None)
        resumed = plan(args.file, at, overrides=overrides, path=args.path, subcalls=not args.live_subcalls,
                       damaged=report_bad_lines, ask=args.ask, question=question)
    except FileNotFoundError:
        return fail(f"no such file: {args.file}", EXIT_USAGE, "resume")
    except (ResumeError, SessionFormatError) as exc:
        return fail(str(exc), EXIT_USAGE, "resume")
    if args.headless:  # as for a run's config file: nobody is there to step or approve (a recorded app run's)
        resumed.settings.step = "off"
        if resumed.settings.approve in ("ask", "rlm"):
            resumed.settings.approve = "auto"
    refused = preflight(resumed.settings)  # the live turns need their models: check before any kernel starts
    if refused is not None:
        return refused
    yours = len(resumed.user_cells)
    mine = f" (with {yours} cell{'s' if yours != 1 else ''} you ran yourself)" if yours else ""
    if args.ask is not None:
        questions = len(resumed.then)  # the recorded ones: the first, and the follow-ups before the new one
        print(safe(f"resuming {args.file}: {questions} recorded question{'s' if questions != 1 else ''} replayed, "
                   f"{mine}, then the new question to {resumed.settings.model} live"), file=sys.stderr)
    else:
        earlier = (f"{question - 1} recorded question{'s' if question != 2 else ''} and " if question > 1 else "")
        print(safe(f"resuming {args.file} at {'question ' + str(question) + ', ' if question > 1 else ''}"
                   f"turn {at}: {earlier}{resumed.at - 1} recorded turn{'s' if resumed.at != 2 else ''} replayed{mine}, "
                   f"then {resumed.settings.model} live"), file=sys.stderr)
    if args.headless:
        return run_headless(resumed.settings, resumed.question, resumed.path, as_json=args.json,
                            debug=args.debug, prepare=resumed.prepare)
    from ..ui import launch

    return launch(resumed.settings, resumed.question, resumed.path, prepare=resumed.prepare)
