"""``rlm-tui demo``: the app on the bundled scripted run (the scenario is ``rlm_tui/demo.py``)."""

from __future__ import annotations

from ..core.config import OPTION
from .common import add_option, command_parser, parse

DEMO_HELP = """\
Open the app on a bundled scripted run (no API key, no network): a batch of
sub-calls, an error in a cell, a child RLM with its own sub-call, and a final
answer.
"""


def demo_main(argv: list[str]) -> int:
    """``rlm-tui demo [--theme NAME] [--pace X] [--approve ...] [--step ...]``."""
    p = command_parser("demo", DEMO_HELP)
    add_option(p, OPTION["theme"])
    p.add_argument("--pace", type=float, default=1.0,
                   help="multiply the scripted model's delays (0 = as fast as possible; default 1)")
    add_option(p, OPTION["approve"], default="auto",
               help_text="which sub-calls wait for your approval (default: auto; try ask)")
    add_option(p, OPTION["step"], default="off", help_text="start in step mode (default: off)")
    args = parse(p, argv)
    if isinstance(args, int):
        return args
    from ..demo import BADGE, QUESTION, start_demo
    from ..ui import launch

    settings, folder, stack = start_demo(args.pace)
    settings.approve, settings.step = args.approve, args.step
    return launch(settings, QUESTION, folder, theme=args.theme, badge=BADGE, on_finish=stack.close)
