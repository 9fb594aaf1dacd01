"""A stand-in for the app's steering side, shared by the tests that steer a real run without the app.

``FakeUI`` receives events on the engine's thread and makes its decisions on a thread of its own,
through the same command interface (``Engine.steering``) the UI uses; ``steer_run`` runs a scripted
run with it.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rlm_tui.core import events as ev
from rlm_tui.core.config import Limits, Settings
from rlm_tui.core.control import Steering
from rlm_tui.core.engine import Engine, RunResult
from rlm_tui.core.session import load
from rlm_tui.model.tree import CallTree
from rlm_tui.scripted import ScriptedServer

React = Callable[["FakeUI", ev.Event], None]


class FakeUI:
    """Events in on the engine's thread; decisions out from this object's own thread."""

    def __init__(self, react: React | None) -> None:
        self.react = react or (lambda ui, event: None)
        self.events: list[ev.Event] = []
        self.errors: list[BaseException] = []
        self.steering: Steering | None = None
        self.seen: dict[str, Any] = {}  # scratch space for a test's react function
        self._queue: queue.Queue[ev.Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fake-ui", daemon=True)

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)
        self._queue.put(event)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self.react(self, event)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                if self.steering is not None and self.steering.root:
                    self.steering.kill(self.steering.root)  # end the run instead of hanging

    def do(self, future: Any) -> bool:
        """Wait for a command to apply (from this thread, like the UI would not need to)."""
        return future.result(timeout=30)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


@dataclass
class SteerRun:
    result: RunResult
    events: list[ev.Event]
    server: ScriptedServer
    session: list[ev.Event] = field(default_factory=list)
    ui: FakeUI | None = None

    def kinds(self, kind: str) -> list[ev.Event]:
        return [e for e in self.events if e.kind == kind]

    def cell_text(self, node: str | None = None) -> str:
        return "".join(e.get("text", "") for e in self.kinds(ev.CELL_OUTPUT) if node is None or e.node == node)

    def tree(self) -> CallTree:
        tree = CallTree()
        tree.extend(self.events)
        return tree

    def index(self, predicate: Callable[[ev.Event], bool]) -> int:
        return next(i for i, e in enumerate(self.events) if predicate(e))


#: Wall seconds a steered run may take unless the test sets --timeout: a react function whose trigger
#: never fires leaves a call waiting for approval forever; the run's own timeout turns that into a failure.
GUARD_S = 120.0


async def steer_run(script, path: Path, tmp_path: Path, react: React | None = None, *, approve: str = "ask",
                    step: str = "off", before: Callable[[Steering], None] | None = None, **limits: Any) -> SteerRun:
    guarded = "timeout" not in limits
    limits.setdefault("timeout", GUARD_S)
    ui = FakeUI(react)
    session = tmp_path / "session.jsonl"
    with ScriptedServer(script) as server:
        settings = Settings(model="openai/scripted", api_base=server.url, api_key="sk-test-not-a-real-key-1234",
                            limits=Limits(**limits), session_path=session, lm_backoff=0.05,
                            approve=approve, step=step)
        engine = Engine(settings, "What is the answer?", path, sink=ui)
        ui.steering = engine.steering
        if before is not None:
            before(engine.steering)
        ui.start()
        try:
            result = await engine.run()
        finally:
            ui.stop()
    assert not ui.errors, ui.errors
    assert not (guarded and result.stopped_by == "timeout"), \
        f"the run hit the test's {GUARD_S:g} s guard: a decision it waited for never came"
    return SteerRun(result, ui.events, server, load(session).events, ui)


def cell_at_turn_step(code: str, turn: int = 2, *, step_taken: bool = True) -> React:
    """React: at the step before the root's ``turn`` run the user's ``code`` once (``ui.seen["ran"]``),
    and go on at every step; ``step_taken``: each step must still be waiting (a cell that answers the
    question settles it first)."""
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind != ev.STEP_WAITING:
            return
        if event.get("turn") == turn and "ran" not in ui.seen:
            ui.seen["ran"] = ui.do(ui.steering.run_cell(code))
        taken = ui.do(ui.steering.step(event.get("gate")))
        assert taken or not step_taken

    return react
