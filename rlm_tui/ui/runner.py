"""A live run as an ``EventSource``: the engine on its own thread and asyncio loop.

A burst of sub-calls keeps the engine's loop busy (litellm costs milliseconds
per call); on a separate thread it cannot stall the UI. The engine's sink only
appends to a deque (thread-safe), and the UI drains it once per frame. The
litellm import and the first kernel start happen on that thread too, so the
first frame does not wait for them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Coroutine

from ..core import events as ev
from ..core.config import Settings
from ..core.control import Steering

#: How long quitting waits for the engine to shut its kernels down.
STOP_TIMEOUT_S = 20.0


class EngineSource:
    """Runs ``Engine(settings, question, path)`` in a thread; ``stop`` cancels it and waits for cleanup.

    With ``ask_again`` the run is a session: after each answer or stop the engine waits for ``ask``
    (the app's question box), and only quitting ends it. Without a ``question`` nothing starts
    before the first ``ask``.
    """

    live = True

    def __init__(self, settings: Settings, question: str | None, path: Path, *, badge: str | None = None,
                 on_finish: Callable[[], None] | None = None, prepare: Callable[[Any], None] | None = None,
                 ask_again: bool = False) -> None:
        self.settings = settings
        self.question = question
        self.ask_again = ask_again or question is None
        self.path = path
        self.badge = badge
        self._on_finish = on_finish
        self._prepare = prepare  # adjusts the Engine before it runs (rlm-tui resume)
        #: Commands to the run (approve, deny, kill, pause...): safe from the UI thread, never blocking.
        self.steering = Steering(settings.approve, settings.step)
        self._events: deque[ev.Event] = deque()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._stop_requested = threading.Event()
        self._finished_seen = False
        self._engine: Any = None
        self._asked: asyncio.Queue[str] | None = None  # follow-ups, made on the engine's loop

    def start(self) -> None:
        """Start the engine's thread (the app calls this once its first frame is up); waits for ``ask``
        when there is no question yet."""
        if self.question is not None and self._thread is None:
            self._thread = threading.Thread(target=self._main, name="rlm-engine", daemon=True)
            self._thread.start()

    def ask(self, question: str) -> bool:
        """The next question of the session (any thread); False when the session cannot take one now."""
        if self._stop_requested.is_set():
            return False
        if self.question is None:
            self.question = question
            self.start()
            return True
        loop, asked = self._loop, self._asked
        if not self.ask_again or loop is None or asked is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(asked.put_nowait, question)
        except RuntimeError:  # the loop closed in between: the session is over
            return False
        return True

    async def _next_question(self, answer: str | None) -> str | None:
        """The engine waits here between questions until ``ask`` (or ``stop``, which cancels it)."""
        assert self._asked is not None
        return await self._asked.get()

    def drain(self) -> list[ev.Event]:
        events = self._events
        return [events.popleft() for _ in range(len(events))]

    def stop(self) -> None:
        """Cancel the run (the engine then shuts kernels down and closes the session) and wait."""
        self._stop_requested.set()
        loop, task, thread = self._loop, self._task, self._thread
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed in between: the run is over anyway
                pass
        if thread is None:  # never started: only the caller's cleanup is left to do
            if self._on_finish is not None:
                self._on_finish()
                self._on_finish = None
        elif thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT_S)

    def attach_command(self) -> str | None:
        """``jupyter console --existing ...`` for the root's kernel, once it runs (see Engine)."""
        return self._engine.attach_command() if self._engine is not None else None

    def _sink(self, event: ev.Event) -> None:
        if event.kind == ev.RUN_FINISHED:
            self._finished_seen = True
        self._events.append(event)

    def _main(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices over the network
        error: str | None = None
        try:
            error = self._run()
        finally:
            if self._on_finish is not None:
                self._on_finish()
        if not self._finished_seen:  # the run failed before it could report its own end
            self._sink(ev.Event(ev.RUN_FINISHED, data={
                "answer": None, "stopped_by": "interrupted" if error is None else "error",
                "error": error, "duration_s": None}))

    async def _drive(self, run: Coroutine[Any, Any, object]) -> None:
        """The engine's run as the loop's main task, so ``stop`` can cancel it from the UI thread."""
        self._task = asyncio.current_task()
        self._asked = asyncio.Queue()
        if self._stop_requested.is_set():  # quit before the run began
            run.close()
            return
        await run

    def _run(self) -> str | None:
        """Run the engine to its end; returns why it could not run, if it could not."""
        from ..core.engine import Engine, SetupError  # here, not at import: 0.1 s off the first frame

        try:
            assert self.question is not None
            engine = Engine(self.settings, self.question, self.path, sink=self._sink, steering=self.steering,
                            next_question=self._next_question if self.ask_again else None)
            self._engine = engine
            if self._prepare is not None:
                self._prepare(engine)
            engine.open_session()  # created exclusively; a default name may get a suffix
            self.settings.session_path = engine.session_path  # where this run was saved, for callers
            with asyncio.Runner() as runner:  # closing it also ends what litellm left on the loop
                self._loop = runner.get_loop()
                runner.run(self._drive(engine.run()))
        except asyncio.CancelledError:
            pass
        except SetupError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the UI, not as a traceback over the screen
            return f"{type(exc).__name__}: {exc}"
        return None
