"""Recording a run: every happening becomes a numbered, timed event, written to the session file
and handed to an optional sink (the headless printer or the UI)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import events as ev
from .session import SessionExists, SessionWriter


class SessionUnusable(Exception):
    """The session file cannot be created or written; the message says why in one line."""


class Recorder:
    """Numbers and times events; writes them to the session file once it is open."""

    def __init__(self, sink: ev.Sink | None) -> None:
        self.sink = sink
        self.t0 = time.perf_counter()
        self._seq = 0
        self._writer: SessionWriter | None = None

    def restart_clock(self) -> None:
        """Event times count from here (the run's start, not the engine's creation)."""
        self.t0 = time.perf_counter()

    def emit(self, kind: str, node: str | None = None, parent: str | None = None, **data: Any) -> ev.Event:
        self._seq += 1
        event = ev.Event(kind, node, parent, data, self._seq, time.perf_counter() - self.t0)
        if self._writer is not None:
            self._writer.write(event)
            if self._writer.error:  # the disk went away mid-run: say so once, keep running
                error, self._writer = self._writer.error, None
                self.emit(ev.WARNING, node, message=error)
        if self.sink is not None:
            self.sink(event)
        return event

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def open(self, path: Path, secrets: list[str], unique: bool, overwrite: bool) -> Path:
        """Create the session file and write its header; returns its path (a suffix may have been
        added to a default name). Raises SessionUnusable."""
        where = f"cannot write the session file {path}"
        try:
            writer = SessionWriter(path, secrets, unique=unique, overwrite=overwrite)
        except SessionExists as exc:
            raise SessionUnusable(str(exc)) from None
        except (FileExistsError, NotADirectoryError):  # a file where a folder should be
            blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
            raise SessionUnusable(f"{where}: {blocker or 'a part of the path'} is not a directory") from None
        except OSError as exc:
            raise SessionUnusable(f"{where}: {exc.strerror or exc}") from None
        writer.write(writer.header())
        if writer.error:  # disk full or a device that refuses writes: say so before the run
            raise SessionUnusable(f"{where}: {writer.error.rsplit(': ', 1)[-1]}")
        self._writer = writer
        return writer.path

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
