"""Following a session file another process is still writing.

watchfiles watches the file's directory (not the file): a file that does not
exist yet, or one replaced by an atomic rename, is seen as well as appends.
Each change re-indexes only the bytes appended since (``SessionIndex.refresh``);
a line still being written waits for its newline. The watcher also wakes up
every ``poll_s`` seconds, so a missed notification only delays an update.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from ..model import events as ev
from .index import SessionChanged, SessionIndex


@dataclass
class FollowUpdate:
    events: list[ev.Event] = field(default_factory=list)
    reset: bool = False  # the file was replaced: these events start a new file
    finished: bool = False  # run_finished has arrived
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # newly found damaged lines


async def changes(path: Path, stop: threading.Event | None = None, poll_s: float = 0.5) -> AsyncIterator[None]:
    """Yield whenever ``path`` may have changed (and at least every ``poll_s`` s) until ``stop`` is set."""
    from watchfiles import awatch

    directory = path.resolve().parent
    name = path.name
    stop = stop or threading.Event()
    yield None  # read what is already there first
    async for _ in awatch(directory, watch_filter=lambda _change, changed: Path(changed).name == name,
                          debounce=50, step=20, rust_timeout=int(poll_s * 1000), yield_on_timeout=True,
                          recursive=False, stop_event=stop):
        if stop.is_set():
            return
        yield None


class Tail:
    """The events of a growing file, taken in pieces: ``read()`` returns what is new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index: SessionIndex | None = None
        self._read = 0  # events handed out
        self._bad = 0
        self.finished = False

    def read(self) -> FollowUpdate:
        update = FollowUpdate()
        if self.index is None:
            if not self.path.exists():
                return update
            self.index = SessionIndex(self.path, complete=False)
        try:
            self.index.refresh()
        except SessionChanged:
            self.index.close()
            self.index = SessionIndex(self.path, complete=False) if self.path.exists() else None
            self._read = self._bad = 0
            self.finished = False
            update.reset = True
            if self.index is None:
                return update
            self.index.refresh()
        index = self.index
        update.events = list(index.iter_events(self._read))
        self._read = len(index)
        update.bad_lines = index.bad_lines[self._bad:]
        self._bad = len(index.bad_lines)
        if any(e.kind == ev.RUN_FINISHED for e in update.events):
            self.finished = update.finished = True
            index.finish()  # the writer is done: a last line without newline is torn
            more = list(index.iter_events(self._read))
            self._read = len(index)
            update.events += more
            update.bad_lines += index.bad_lines[self._bad:]
            self._bad = len(index.bad_lines)
        return update

    def close(self) -> None:
        if self.index is not None:
            self.index.close()


async def follow(path: Path, stop: threading.Event | None = None, poll_s: float = 0.5) -> AsyncIterator[FollowUpdate]:
    """Updates as ``path`` grows, until run_finished arrives (or ``stop`` is set).

    The first update carries everything already in the file. Raises
    SessionFormatError if the file is not a session (or is from a newer version).
    """
    tail = Tail(path)
    stop = stop or threading.Event()
    try:
        async for _ in changes(path, stop, poll_s):
            update = tail.read()
            if update.events or update.reset or update.bad_lines:
                yield update
            if tail.finished:
                return
    finally:
        stop.set()
        tail.close()
