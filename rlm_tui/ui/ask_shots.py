"""Screenshots of asking again, on the bundled demo's notes with one scripted follow-up.

Called by ``python -m rlm_tui.ui.screenshots``. Saves: the app opened without a
question (the question box waits), and the session after a follow-up whose code
uses ``summaries``, a variable the first question's code made; then a session whose
first question fails (the model server answers HTTP 500 until the retries give up)
and the same question asked again, answered.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from textual.pilot import Pilot

from ..scripted import is_rlm_call, question_of, turn_of
from .app import RlmApp
from .steering_shots import until

FOLLOW_UP = "Which meetings set or moved the date?"
FOLLOW_UP_TURNS = [
    "The summaries from the first question are still in the REPL; no need to call the sub-model again.\n"
    "```repl\nfor name, summary in zip(names, summaries):\n"
    "    print(f\"{name}: {summary.splitlines()[0]}\")\n```\n",

    "FINAL(Two meetings: the **2024-03-05 kick-off** set 2024-05-02, and the **2024-03-12 QA review** "
    "moved it to 2024-05-16; the 2024-03-19 sync only confirmed the new date.)",
]


def script(messages: list[dict[str, Any]], model: str) -> str:
    """The demo's scripted model, plus the follow-up's turns."""
    from ..demo import script as demo_script

    if is_rlm_call(messages) and question_of(messages) == FOLLOW_UP:
        time.sleep(0.8)  # a reply takes a moment, as in the demo
        return FOLLOW_UP_TURNS[min(turn_of(messages), len(FOLLOW_UP_TURNS)) - 1]
    return demo_script(messages, model, 0.2)


async def _ask_again(pilot: Pilot, app: RlmApp, question: str, what: str) -> None:
    """`/`, the next question, its end; then its root is shown."""
    await pilot.press("slash")
    app.question_box.value = question
    await pilot.press("enter")
    await until(pilot, lambda: len(app.calls.roots) == 2 and app.question_box.display, what, settle=0.3)
    app.tree_view.move_to(app.calls.roots[1])
    await pilot.pause(0.3)


@contextlib.contextmanager
def _session(faults: int = 0) -> Iterator[RlmApp]:
    """The app opened without a question on the demo's notes; the first ``faults`` requests get HTTP 500."""
    from ..demo import NOTES, demo_settings
    from ..scripted import Fault, ScriptedServer
    from .runner import EngineSource

    with contextlib.ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="rlm-tui-ask-")) / "meeting-notes"
        folder.mkdir()
        stack.callback(shutil.rmtree, folder.parent, ignore_errors=True)
        for name, text in NOTES.items():
            (folder / name).write_text(text, encoding="utf-8")
        server = stack.enter_context(ScriptedServer(script))
        server.faults.extend(Fault(status=500, body="the upstream model is overloaded") for _ in range(faults))
        settings = demo_settings(server.url)
        settings.lm_backoff = 0.3  # the retries give up in seconds
        source = EngineSource(settings, None, folder, badge="SCRIPTED · canned replies")
        stack.callback(source.stop)
        yield RlmApp(source, theme="rlm-midnight", remember_theme=False)


async def take_ask(out: Path, size: tuple[int, int]) -> list[Path]:
    from ..demo import QUESTION

    saved: list[Path] = []
    with _session() as app:
        def save(name: str) -> None:
            saved.append(Path(app.save_screenshot(f"{name}.svg", str(out))))

        async with app.run_test(size=size) as pilot:
            box = app.question_box
            await pilot.pause(0.3)
            box.value = QUESTION
            await pilot.pause(0.2)
            save("ask-first-question")
            await pilot.press("enter")
            await until(pilot, lambda: bool(app.calls.nodes) and box.display, "the first answer", settle=0.3)
            await _ask_again(pilot, app, FOLLOW_UP, "the follow-up's answer")
            save("ask-follow-up")
            await pilot.press("escape", "q")
    return saved


async def take_ask_failed(out: Path, size: tuple[int, int]) -> list[Path]:
    """A first question whose model calls all fail (1 + 4 retries), then the same question again, answered."""
    from ..demo import QUESTION

    saved: list[Path] = []
    with _session(faults=5) as app:
        def save(name: str) -> None:
            saved.append(Path(app.save_screenshot(f"{name}.svg", str(out))))

        async with app.run_test(size=size) as pilot:
            box = app.question_box
            await pilot.pause(0.3)
            box.value = QUESTION
            await pilot.press("enter")
            await until(pilot, lambda: bool(app.calls.nodes) and box.display, "the failed question", settle=0.3)
            save("ask-failed-question")
            await _ask_again(pilot, app, QUESTION, "the question asked again")
            save("ask-after-failure")
            await pilot.press("escape", "q")
    return saved
