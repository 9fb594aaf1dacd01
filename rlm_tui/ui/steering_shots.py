"""Screenshots of steering, taken on the bundled demo run with ``--approve ask --step cell``.

Called by ``python -m rlm_tui.ui.screenshots`` (which writes every screenshot
in ``screenshots/``). Saves: a cell waiting in step mode, a batch opened and
decided prompt by prompt, the edit modal for a child RLM's prompt, and (a
third run, ``--step turn``) your own cell in its editor and in the transcript.
"""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from .app import RlmApp

#: Pauses of 50 ms to wait for a stage of the run before giving up.
MAX_PAUSES = 1200


async def until(pilot: Pilot, condition, what: str, settle: float = 0.2) -> None:
    """Wait for a stage of a screenshot's run (then ``settle`` seconds, for the screen to catch up)."""
    for _ in range(MAX_PAUSES):
        if condition():
            await pilot.pause(settle)
            return
        await pilot.pause(0.05)
    raise SystemExit(f"screenshots: the run never reached: {what}")


async def take_steering(out: Path, size: tuple[int, int]) -> list[Path]:
    from ..demo import BADGE, QUESTION, start_demo
    from .runner import EngineSource

    settings, folder, stack = start_demo(pace=0.3)
    settings.approve, settings.step = "ask", "cell"
    source = EngineSource(settings, QUESTION, folder, badge=BADGE, on_finish=stack.close)
    app = RlmApp(source, theme="rlm-midnight", remember_theme=False)
    saved: list[Path] = []
    questions = app.questions

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(f"{name}.svg", str(out))))

    def waiting(kind: str) -> bool:
        return any(q.kind == kind or (kind == "batch" and q.is_batch) or (kind == "rlm" and q.spawn_kind == "rlm")
                   for q in questions.items.values())

    try:
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: waiting("cell"), "a cell waiting in step mode")
            save("steering-step-cell")
            await pilot.press("c")  # leave step mode
            await until(pilot, lambda: waiting("batch"), "the batch waiting for approval")
            await pilot.press("o")  # decide it prompt by prompt
            await until(pilot, lambda: len(questions.items) == 3, "the batch's prompts waiting")
            app.tree_view.root.expand_all()
            await pilot.pause(0.2)
            app.tree_view.move_to(list(questions.items)[1])
            await pilot.pause(0.2)
            save("steering-approval")
            await pilot.press("a")
            await until(pilot, lambda: waiting("rlm"), "the child RLM waiting for approval")
            app.tree_view.move_to(next(q.node for q in questions.items.values() if q.spawn_kind == "rlm"))
            await pilot.press("e")
            await pilot.pause(0.2)
            save("steering-edit")
            await pilot.press("escape")
            for _ in range(MAX_PAUSES):  # approve the rest as it comes
                if app.run_state.finished:
                    break
                if questions.items:
                    await pilot.press("a")
                await pilot.pause(0.05)
            await pilot.press("q")
    finally:
        source.stop()
    return saved


#: What the user types in the user-cell screenshots: it uses the model's `context` and leaves a variable.
USER_CELL = ("sizes = {name: len(text) for name, text in context.items()}\n"
             "print(max(sizes, key=sizes.get), 'is the longest note')")


async def take_user_cell(out: Path, size: tuple[int, int]) -> list[Path]:
    """The demo with ``--step turn``: before the root's second turn, ``p`` and a cell of your own."""
    from textual.widgets import TextArea

    from ..demo import BADGE, QUESTION, start_demo
    from .runner import EngineSource

    settings, folder, stack = start_demo(pace=0.3)
    settings.approve, settings.step = "auto", "turn"
    source = EngineSource(settings, QUESTION, folder, badge=BADGE, on_finish=stack.close)
    app = RlmApp(source, theme="rlm-midnight", remember_theme=False)
    saved: list[Path] = []

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(f"{name}.svg", str(out))))

    def at_turn(turn: int) -> bool:
        return any(q.kind == "turn" and q.data.get("turn") == turn for q in app.questions.items.values())

    try:
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: at_turn(1), "the step before turn 1")
            await pilot.press("s")
            await until(pilot, lambda: at_turn(2), "the step before turn 2")
            await pilot.press("p")
            await pilot.pause(0.2)
            app.screen.query_one("#code", TextArea).insert(USER_CELL)
            await pilot.pause(0.2)
            save("user-cell-editor")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "is the longest note" in app.transcript_view.plain_text(), "your cell's output")
            save("user-cell")
            await pilot.press("q")
    finally:
        source.stop()
    return saved
