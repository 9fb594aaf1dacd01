"""Regenerate ``screenshots/``: SVGs of the real app on a real (scripted) demo run.

    python -m rlm_tui.ui.screenshots [--out screenshots]

Runs the bundled demo through the engine (kernels, litellm, the scripted
server), headless at 160x45, and saves: the main screen mid-run with the
nested tree, the finished run, a child RLM's transcript, the help screen, and
the finished run in every bundled theme, the same run in the replay app, steering
(``steering_shots.py``), your own cell, and asking again (``ask_shots.py``). The user's config and sessions
folders are not touched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from textual.pilot import Pilot

from .app import RlmApp
from .themes import load_themes
from .widgets.call_tree import CallTreeView

SIZE = (160, 45)
#: Pauses of 50 ms to wait for a stage of the run before giving up.
MAX_PAUSES = 1200


async def _until(pilot: Pilot, condition, what: str) -> None:
    for _ in range(MAX_PAUSES):
        if condition():
            return
        await pilot.pause(0.05)
    raise SystemExit(f"screenshots: the demo run never reached: {what}")


async def take(out: Path) -> list[Path]:
    from ..demo import BADGE, QUESTION, start_demo
    from .runner import EngineSource

    settings, folder, stack = start_demo(pace=1.0)
    source = EngineSource(settings, QUESTION, folder, badge=BADGE, on_finish=stack.close)
    app = RlmApp(source, theme="rlm-midnight", remember_theme=False)
    saved: list[Path] = []

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(f"{name}.svg", str(out))))

    async with app.run_test(size=SIZE) as pilot:
        calls = app.calls.nodes
        await _until(pilot, lambda: any(n.depth == 2 and n.status == "running" for n in calls.values()),
                     "a running call at depth 2")
        await pilot.pause(0.2)
        save("main-mid-run")
        await _until(pilot, lambda: app.run_state.finished, "the end of the run")
        await pilot.pause(0.3)
        app.query_one(CallTreeView).root.expand_all()
        await pilot.pause()
        save("finished")
        child = next(n for n in calls.values() if n.kind == "rlm")
        app.query_one(CallTreeView).move_to(child.id)
        await pilot.pause()
        save("child-transcript")
        app.action_show_root()
        await pilot.press("question_mark")
        await pilot.pause()
        save("help")
        await pilot.press("escape")
        for name in sorted(load_themes()[0]):  # bundled ones: the user's config folder is a temporary one
            app.theme = name
            await pilot.pause(0.2)
            save(f"theme-{name}")
        await pilot.press("q")
    from .replay import screenshots as replay_screenshots

    saved += await replay_screenshots(Path(str(source.settings.session_path)), out, SIZE)  # the same run, replayed
    from .steering_shots import take_steering, take_user_cell

    saved += await take_steering(out, SIZE)  # the demo again, with --approve ask --step cell
    saved += await take_user_cell(out, SIZE)  # and with --step turn: a cell of your own
    from .ask_shots import take_ask, take_ask_failed

    saved += await take_ask(out, SIZE)  # no question at first, then a follow-up
    saved += await take_ask_failed(out, SIZE)  # a question that fails, then one that answers
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"), help="folder for the SVGs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rlm-tui-shots-") as home:
        os.environ["XDG_CONFIG_HOME"] = str(Path(home) / "config")
        os.environ["XDG_DATA_HOME"] = str(Path(home) / "data")
        for path in asyncio.run(take(args.out)):
            print(path)


if __name__ == "__main__":
    main()
