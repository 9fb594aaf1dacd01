"""Steering in the app: approve, edit, deny, kill, pause, step and interrupt from the keyboard.

The app learns what is waiting for the user only from the run model
(``model.questions.Questions``), so a replay shows the same questions; commands go to
the live run through ``source.steering`` (``core.control.Steering``), which is
safe to call from the UI thread and never blocks it. A replay has no
``steering``: every steering key is then hidden and inert.

Keys follow agent TUIs: y approve, a approve all, A always approve this kind,
e edit, n deny (with a reason), o open a batch to decide prompt by prompt,
k kill the node under the cursor, space pause/resume, s step, c continue,
Esc interrupt the running cell, p run a cell of your own in the root's REPL.
The question shown (and decided by y/e/n/A/o) is the one under the tree cursor
if it waits, else the oldest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import TYPE_CHECKING, Any, Iterable

from textual.binding import Binding

from ..core.control import CellRefused
from ..model.questions import Question, Questions
from ..model.state import ROOT_KERNEL

if TYPE_CHECKING:
    from ..core.control import Steering

#: Pressing k on the root ends the run, so it must be pressed twice within this many seconds.
KILL_ROOT_WINDOW_S = 2.0

STEERING_BINDINGS = [
    Binding("y", "steer_approve", "Approve", tooltip="Approve the waiting call shown (or take the waiting step)"),
    Binding("a", "steer_approve_all", "Approve all", tooltip="Approve every call waiting now (a batch as one)"),
    Binding("A", "steer_always", "Always", key_display="A",
            tooltip="Approve this kind of call (llm_query or rlm_query) for the rest of the run"),
    Binding("e", "steer_edit", "Edit",
            tooltip="Edit the waiting call's prompt and model, or the waiting cell's code, before it runs"),
    Binding("n", "steer_deny", "Deny",
            tooltip="Deny the waiting call, with an optional reason the code receives; skip a waiting cell"),
    Binding("o", "steer_open", "Open batch", tooltip="Decide a waiting batch prompt by prompt"),
    Binding("k", "steer_kill", "Kill",
            tooltip="Kill the call under the cursor and everything below it (twice on the root: ends the run)"),
    # Priority: the focused tree would take space (expand/collapse; Enter does that too) while a run is live.
    Binding("space", "steer_pause", "Pause", priority=True,
            tooltip="Pause or resume the run: nothing new starts, running calls finish (enter expands tree nodes)"),
    Binding("space", "steer_resume", "Resume", priority=True, tooltip="Resume a paused run"),
    Binding("s", "steer_step", "Step",
            tooltip="Step mode: stop before each root model call and each cell; s again takes one step"),
    Binding("c", "steer_continue", "Continue", tooltip="Leave step mode and un-pause: run freely"),
    Binding("escape", "steer_interrupt", "Interrupt cell",
            tooltip="Interrupt the running cell (of the node under the cursor, else the root); the model "
            "sees the KeyboardInterrupt and goes on"),
    Binding("p", "steer_user_cell", "Your cell",
            tooltip="Run your own Python in the root's REPL when no cell runs there (paused, at a step, "
            "between turns); the model is told what you ran and what it printed"),
]
STEERING_ACTIONS = {binding.action for binding in STEERING_BINDINGS}
_FOOTER_ACTIONS = sorted(STEERING_ACTIONS | {"toggle_answer"})  # the keys whose showing depends on the run


class SteeringMixin:
    """The app's steering actions; mixed into ``RlmApp`` (which adds ``STEERING_BINDINGS``)."""

    questions: Questions
    _kill_root_at: float = 0.0
    _user_code: str = ""  # your cell's text when its editor was cancelled, offered again next time

    # --- what is possible now ---------------------------------------------------------------

    @property
    def steering(self) -> Steering | None:
        """The live run's command interface; None in a replay or once the run is over."""
        if self.questions.finished:
            return None
        return getattr(getattr(self, "source", None), "steering", None)

    def cursor_node(self) -> str | None:
        tree = getattr(self, "tree_view", None)
        node = tree.cursor_node if tree is not None else None
        return node.data if node is not None else None

    def current_question(self) -> Question | None:
        return self.questions.current(self.cursor_node())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_answer" and self.steering is not None and self.questions.spawns:
            return False  # "a" approves all while calls wait; the answer comes after the run
        if action == "steer_user_cell":  # shown in every live run: pressed when it cannot run, it says why
            live = getattr(getattr(self, "source", None), "steering", None) is not None
            return live and len(self.screen_stack) == 1  # type: ignore[attr-defined]
        if action not in STEERING_ACTIONS:
            return super().check_action(action, parameters)  # type: ignore[misc]
        if self.steering is None or len(self.screen_stack) > 1:  # type: ignore[attr-defined]
            return False  # a replay, the run is over, or a modal (help, an edit) is on top
        questions, current = self.questions, self.current_question()
        if action == "steer_approve":
            return current is not None
        if action == "steer_approve_all":
            return bool(questions.spawns)
        if action == "steer_always":
            return current is not None and current.kind == "spawn"
        if action == "steer_edit":
            return current is not None and current.kind in ("spawn", "cell")
        if action == "steer_deny":
            return current is not None and current.kind in ("spawn", "cell")
        if action == "steer_open":
            return current is not None and current.is_batch
        if action == "steer_pause":
            return not questions.paused
        if action == "steer_resume":
            return questions.paused
        if action == "steer_continue":
            return questions.paused or questions.step_mode != "off"
        if action == "steer_interrupt":
            return self._cell_node() is not None
        return True  # kill, step

    def _cell_node(self) -> str | None:
        """Where Esc interrupts: the node under the cursor if its cell runs, else the root's cell."""
        cells = self.questions.cells
        cursor = self.cursor_node()
        if cursor in cells:
            return cursor
        root = self.calls.root  # type: ignore[attr-defined]
        return root if root in cells else None

    def steering_changed(self) -> None:
        """After events or a cursor move: redraw the approval panel, and the footer's keys if they changed.

        Refreshing the bindings rebuilds the footer's widgets (milliseconds); done on every
        frame of a big fan-out it held the GIL long enough to slow the engine's thread 3-5x.
        """
        panel = getattr(self, "approval_panel", None)
        if panel is not None:
            panel.show(self.questions, self.current_question(), self.calls,  # type: ignore[attr-defined]
                       self.palette, live=self.steering is not None)  # type: ignore[attr-defined]
        keys = tuple(self.check_action(action, ()) for action in _FOOTER_ACTIONS)
        if keys != getattr(self, "_footer_keys", None):
            self._footer_keys = keys
            self.refresh_bindings()  # type: ignore[attr-defined]

    # --- actions ----------------------------------------------------------------------------

    def action_steer_approve(self) -> None:
        current, steering = self.current_question(), self.steering
        if current is not None and steering is not None:
            steering.approve(current.id)

    def action_steer_approve_all(self) -> None:
        if self.steering is not None:
            self.steering.approve_all()

    def action_steer_always(self) -> None:
        current, steering = self.current_question(), self.steering
        if current is not None and steering is not None and current.kind == "spawn":
            steering.always(current.id)
            name = "rlm_query" if current.spawn_kind == "rlm" else "llm_query"
            self.notify(f"{name} calls now run without asking, for the rest of this run.",  # type: ignore[attr-defined]
                        title="Always approve")

    def action_steer_edit(self) -> None:
        from .steering_screens import EditCellScreen, EditSpawnScreen

        current = self.current_question()
        if current is not None and current.kind in ("spawn", "cell"):
            screen = EditCellScreen(current) if current.kind == "cell" else EditSpawnScreen(current)
            self._ask_then(screen, "edit", current.id)

    def action_steer_deny(self) -> None:
        from .steering_screens import DenyScreen

        current, steering = self.current_question(), self.steering
        if current is None or steering is None:
            return
        if current.kind == "cell":
            steering.deny(current.id)  # skip the cell: the model is told it did not run
            self.notify(f"Cell {current.data.get('cell')} skipped.")  # type: ignore[attr-defined]
        elif current.kind == "spawn":
            self._ask_then(DenyScreen(current), "deny", current.id)

    def _ask_then(self, screen: Any, command: str, gate: str) -> None:
        """Open a modal; when it is confirmed, send ``command(gate, **its result)`` to the run."""
        def done(result: dict[str, Any] | None) -> None:
            if result is not None and self.steering is not None:
                getattr(self.steering, command)(gate, **result)

        self.push_screen(screen, done)  # type: ignore[attr-defined]

    def action_steer_open(self) -> None:
        current, steering = self.current_question(), self.steering
        if current is not None and steering is not None and current.is_batch:
            steering.open_batch(current.id)
            self.tree_view.move_to(current.node)  # type: ignore[attr-defined]
            node = self.tree_view.cursor_node  # type: ignore[attr-defined]
            if node is not None and node.data == current.node:
                node.expand()  # its prompts appear below it, each waiting

    def action_steer_kill(self) -> None:
        steering, node_id = self.steering, self.cursor_node()
        calls = self.calls  # type: ignore[attr-defined]
        node = calls.nodes.get(node_id or "")
        if steering is None or node is None:
            return
        if node.status not in ("running", "waiting", "queued"):
            self.notify(f"{node.kind} {node.id} is not running ({node.status}).")  # type: ignore[attr-defined]
            return
        if node.id == calls.root:
            now = time.monotonic()
            if now - self._kill_root_at > KILL_ROOT_WINDOW_S:
                self._kill_root_at = now
                self.notify("Press k again to kill the root: the run stops (the session is saved).",  # type: ignore[attr-defined]
                            title="Kill the whole run?")
                return
        steering.kill(node.id)
        self.notify(f"Killing {node.kind} {node.id} and everything below it.")  # type: ignore[attr-defined]

    def action_steer_pause(self) -> None:
        if self.steering is not None:
            self.steering.pause()

    def action_steer_resume(self) -> None:
        if self.steering is not None:
            self.steering.resume()

    def action_steer_step(self) -> None:
        steering = self.steering
        if steering is None:
            return
        current = self.current_question()
        step = current if current is not None and current.kind != "spawn" else next(iter(self.questions.steps), None)
        if step is not None:
            steering.step(step.id)
            return
        if self.questions.step_mode != "all":
            steering.set_step("all")
            self.notify("The run stops before the next root model call and before each cell: s steps, "  # type: ignore[attr-defined]
                        "e edits a cell, c continues.", title="Step mode")
        if self.questions.paused:
            steering.resume()

    def action_steer_continue(self) -> None:
        steering = self.steering
        if steering is not None:
            if self.questions.step_mode != "off":
                steering.set_step("off")
            if self.questions.paused:
                steering.resume()

    def action_steer_interrupt(self) -> None:
        node, steering = self._cell_node(), self.steering
        if node is not None and steering is not None:
            steering.interrupt(node)

    def user_cell_refusal(self) -> str | None:
        """Why a cell of yours cannot run in the root's kernel now (from the run model), or None."""
        roots = self.calls.roots  # type: ignore[attr-defined]
        root = roots[-1] if roots else None  # the latest question's root: its cells run in the shared kernel
        state = self.run_state.kernels.get(ROOT_KERNEL)  # type: ignore[attr-defined]
        if self.steering is None or root is None or state is None or state == "dead":
            return "There is no live root kernel: the run is over." if self.questions.finished else \
                "There is no live root kernel yet."
        if state in ("starting", "loading context", "restarting"):
            return "The root's kernel is still starting: try again in a moment."
        if root in self.questions.cells:
            return "A cell is running in the root's kernel: wait for it, or press esc to interrupt it."
        return None

    def action_steer_user_cell(self) -> None:
        from .steering_screens import UserCellScreen

        refusal = self.user_cell_refusal()
        if refusal is not None:
            self.notify(refusal, title="Your cell", severity="warning")  # type: ignore[attr-defined]
            return

        screen = UserCellScreen(self._user_code)

        def done(code: str | None) -> None:
            steering = self.steering
            self._user_code = screen.draft if code is None else ""  # esc keeps the text for next time
            if code is not None and code.strip() and steering is not None:
                self.run_worker(self._user_cell_result(steering.run_cell(code)))  # type: ignore[attr-defined]

        self.push_screen(screen, done)  # type: ignore[attr-defined]

    async def _user_cell_result(self, future: "concurrent.futures.Future[bool]") -> None:
        """Say why, when the engine refused the cell after all (a race with the model's next cell)."""
        try:
            ran = await asyncio.wrap_future(future)
        except CellRefused as exc:
            self.notify(f"Your cell did not run: {exc}", title="Your cell", severity="warning")  # type: ignore[attr-defined]
            return
        except Exception as exc:  # noqa: BLE001 - the kernel died under it: shown, not a traceback
            self.notify(f"Your cell failed: {exc}", title="Your cell", severity="error")  # type: ignore[attr-defined]
            return
        if not ran:
            self.notify("Your cell did not run: the run is over.", title="Your cell", severity="warning")  # type: ignore[attr-defined]

    # --- the command palette --------------------------------------------------------------

    def steering_commands(self) -> Iterable[Any]:
        """Policy and step-mode commands for the palette (live runs only)."""
        from textual.app import SystemCommand

        if self.steering is None:
            return
        help_ = {"ask": "every llm_query and rlm_query waits for you", "rlm": "only child RLMs wait",
                 "auto": "nothing waits", "deny": "every sub-call is refused"}
        for policy, what in help_.items():
            yield SystemCommand(f"Approval policy: {policy}", f"From now on {what}",
                                lambda p=policy: self._set_policy(p))
        modes = {"off": "run freely", "turn": "stop before each root model call",
                 "cell": "stop before each code cell (editable)", "all": "stop before model calls and cells"}
        for mode, what in modes.items():
            yield SystemCommand(f"Step mode: {mode}", what.capitalize(), lambda m=mode: self._set_step(m))

    def _set_policy(self, policy: str) -> None:
        if self.steering is not None:
            self.steering.set_policy(policy)

    def _set_step(self, mode: str) -> None:
        if self.steering is not None:
            self.steering.set_step(mode)
