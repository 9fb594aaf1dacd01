"""Session files: append-only JSONL, one event per line, flushed per event.

The first line is a ``session`` event naming the format and its version. A
reader tolerates a torn or corrupt line (a run killed mid-write): it reports the
line number and loads the rest.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator

from .. import __version__
from . import events as ev

REDACTED = "[REDACTED]"


def default_sessions_dir() -> Path:
    """``$XDG_DATA_HOME/rlm-tui/sessions`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rlm-tui" / "sessions"


def new_session_path(directory: Path | None = None) -> Path:
    """A fresh, time-stamped file name in the sessions folder."""
    directory = directory or default_sessions_dir()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = directory / f"{stamp}.jsonl"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{stamp}-{n}.jsonl"
    return path


class SessionWriter:
    """Writes events to a session file readable by the user only.

    Strings listed in ``secrets`` (API keys, the bridge secret) are replaced by
    ``[REDACTED]`` wherever they appear, so no code path can leak them to disk.
    If writing fails mid-run (disk full), recording stops with one warning
    instead of crashing the run; ``error`` says why.
    """

    def __init__(self, path: Path, secrets: Iterable[str] = ()) -> None:
        self.path = path
        self.secrets = [s for s in secrets if s and len(s) >= 4]
        self.error: str | None = None
        for folder in reversed([path.parent, *path.parent.parents]):
            if not folder.is_dir():
                try:
                    folder.mkdir(mode=0o700)  # folders made for sessions are private too
                except FileExistsError:
                    if not folder.is_dir():
                        raise
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if stat.S_ISREG(os.fstat(fd).st_mode):  # never chmod a device (/dev/stdout) or a named pipe
            os.fchmod(fd, 0o600)
        # backslashreplace: a lone surrogate (a file name that is not UTF-8) is written as the JSON
        # escape "\udcff", so the file stays valid UTF-8 and reads back to the same string.
        self._file: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")

    def header(self) -> ev.Event:
        """The first event of every session file."""
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return ev.Event(ev.SESSION, data={"format": ev.FORMAT_NAME, "version": ev.FORMAT_VERSION,
                                          "created": created, "rlm_tui_version": __version__})

    def write(self, event: ev.Event) -> None:
        if self._file is None:
            return
        line = event.to_json()
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            self.error = f"recording stopped: cannot write {self.path}: {exc.strerror or exc}"
            self._close_quietly()

    def close(self) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


class SessionFormatError(Exception):
    """The file is not a session file, or is from a newer format version."""


@dataclass
class LoadedSession:
    """Events read back from a file, with the lines that could not be read."""

    path: Path
    events: list[ev.Event] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def iter_events(lines: Iterable[str], bad: list[tuple[int, str]]) -> Iterator[ev.Event]:
    """Parse JSONL lines into events; unreadable lines go to ``bad`` with their number."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or "kind" not in obj:
                raise ValueError("not an event object")
        except ValueError as exc:
            bad.append((number, f"line {number}: unreadable ({str(exc)[:80]})"))
            continue
        if number == 1:
            check_header(obj)
        yield ev.Event.from_dict(obj)


def check_header(obj: dict) -> None:
    if obj.get("kind") != ev.SESSION or obj.get("format") != ev.FORMAT_NAME:
        raise SessionFormatError("not an rlm-tui session file (its first line is not a session header)")
    version = obj.get("version")
    if not isinstance(version, int) or version > ev.FORMAT_VERSION:
        raise SessionFormatError(
            f"session format version {version} is newer than this rlm-tui understands "
            f"({ev.FORMAT_VERSION}); upgrade rlm-tui to open it")


def load(path: Path) -> LoadedSession:
    """Read a whole session file."""
    session = LoadedSession(path=path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        session.events = list(iter_events(handle, session.bad_lines))
    return session
