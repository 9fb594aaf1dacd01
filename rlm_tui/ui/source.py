"""Where the app's events come from. The app renders events and nothing else.

A live engine (``runner.EngineSource``) is one source; a session-file replayer
can be another with no change to the app. Sources are polled once per frame,
so a burst of events becomes one repaint.
"""

from __future__ import annotations

from typing import Protocol

from ..core.events import Event


class EventSource(Protocol):
    #: Shown as a badge in the header, e.g. "SCRIPTED DEMO" or "REPLAY"; None for a real live run.
    badge: str | None
    #: True while events arrive in real time, so running nodes' clocks should tick between events.
    live: bool

    def start(self) -> None:
        """Begin producing events; must return at once (the first frame is waiting)."""

    def drain(self) -> list[Event]:
        """Events since the last call, oldest first; called on the UI thread."""

    def stop(self) -> None:
        """Stop the run and release everything it holds (kernels, session file); blocking, idempotent.

        Steering (approve/deny/kill/pause) will add a command channel to live
        sources here; replay sources will not have one.
        """
