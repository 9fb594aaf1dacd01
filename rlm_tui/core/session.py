"""Session files: append-only JSONL, one event per line, flushed per event.

The first line is a ``session`` event naming the format and its version. A
reader tolerates a torn or corrupt line (a run killed mid-write): it reports the
line number and loads the rest.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import orjson

from .. import __version__
from . import events as ev
from .safe_text import as_text

REDACTED = "[REDACTED]"


def default_sessions_dir() -> Path:
    """``$XDG_DATA_HOME/rlm-tui/sessions`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rlm-tui" / "sessions"


def new_session_path(directory: Path | None = None) -> Path:
    """A time-stamped file name in the sessions folder (``SessionWriter`` makes it unique)."""
    directory = directory or default_sessions_dir()
    return directory / f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.jsonl"


def _suffixed(path: Path, n: int) -> Path:
    return path.with_name(f"{path.stem}-{n}{path.suffix}")


class SessionWriter:
    """Writes events to a session file readable by the user only.

    The file is always a new one (created with ``O_EXCL``), so two runs never share a file:
    with ``unique`` (the default time-stamped name) a taken name gets a ``-2``, ``-3`` ...
    suffix and ``path`` says which was used; otherwise an existing regular file raises
    SessionExists, unless ``overwrite`` (then it is truncated). A device or a pipe
    (``/dev/null``, a FIFO) is written as it is.

    Strings listed in ``secrets`` (API keys, the bridge secret) are replaced by
    ``[REDACTED]`` wherever they appear, so no code path can leak them to disk.
    If writing fails mid-run (disk full), recording stops with one warning
    instead of crashing the run; ``error`` says why.
    """

    def __init__(self, path: Path, secrets: Iterable[str] = (), *, unique: bool = False,
                 overwrite: bool = False) -> None:
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
        fd = self._create(unique, overwrite)
        if stat.S_ISREG(os.fstat(fd).st_mode):  # never chmod a device (/dev/stdout) or a named pipe
            os.fchmod(fd, 0o600)
        # backslashreplace: a lone surrogate (a file name that is not UTF-8) is written as the JSON
        # escape "\udcff", so the file stays valid UTF-8 and reads back to the same string.
        self._file: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")

    def _create(self, unique: bool, overwrite: bool) -> int:
        base = self.path
        for n in range(1, 10_000):
            try:
                return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                try:
                    existing = os.stat(self.path)
                except FileNotFoundError:
                    continue  # removed meanwhile: try the same name again
                if stat.S_ISDIR(existing.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "is a directory", str(self.path)) from None
                if not stat.S_ISREG(existing.st_mode):
                    return os.open(self.path, os.O_WRONLY | os.O_APPEND)  # a device or a pipe
                if overwrite:
                    return os.open(self.path, os.O_WRONLY | os.O_TRUNC)
                if not unique:
                    raise SessionExists(f"the session file {self.path} already exists; choose another "
                                        "--session or add --overwrite-session to replace it") from None
                self.path = _suffixed(base, n + 1)
        raise SessionExists(f"no free session file name next to {base}")

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


class SessionExists(Exception):
    """``--session FILE`` names a file that exists: a run never appends to another's file."""


@dataclass
class LoadedSession:
    """Events read back from a file, with the lines that could not be read."""

    path: Path
    events: list[ev.Event] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def loads(line: str | bytes) -> Any:
    """A line's JSON: orjson (three times as fast: replay decodes tens of thousands of lines), and json
    for what orjson refuses (lone surrogates, NaN and Infinity, 1e400, a BOM), so a line reads as it
    always did, or fails with json's one-line error. Two differences: nesting past 1,024 raises
    RecursionError whatever the interpreter's recursion limit is (json's own cut-off moves with it, and
    test tools raise it), and an integer beyond 64 bits reads as the nearest float, a value json gives
    for the same number written with an exponent."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if exc.msg == "depth limit exceeded":
            raise RecursionError("nested past 1,024") from None
        return json.loads(line)


def decode_line(line: str | bytes, number: int, bad: list[tuple[int, str]]) -> dict[str, Any] | None:
    """One line as a repaired event object, or None (and a note in ``bad``) when unreadable."""
    try:
        obj = loads(line)
    except RecursionError:
        bad.append((number, f"line {number}: unreadable (nested too deeply)"))
        return None
    except ValueError as exc:
        bad.append((number, f"line {number}: unreadable ({str(exc)[:80]})"))
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        bad.append((number, f"line {number}: unreadable (not an event object)"))
        return None
    problems = ev.coerce(obj)
    if problems:
        bad.append((number, f"line {number}: {'; '.join(problems[:3])} (shown as text, 0 or empty)"))
    return obj


def second_header(number: int) -> tuple[int, str]:
    """The note for a ``session`` header after line 1: another run was written into this file."""
    return (number, f"line {number}: a second session header: another run was written into this file; "
                    "its events are not loaded")


def iter_events(lines: Iterable[str], bad: list[tuple[int, str]]) -> Iterator[ev.Event]:
    """Parse JSONL lines into events; unreadable lines go to ``bad`` with their number.

    Reading stops at a second header (two runs in one file are never merged).
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if number == 1:
            try:
                check_header(json.loads(line))
            except (ValueError, RecursionError, AttributeError):
                raise SessionFormatError("not an rlm-tui session file (its first line is not a session header)")
        obj = decode_line(line, number, bad)
        if obj is None:
            continue
        if number > 1 and obj["kind"] == ev.SESSION:
            bad.append(second_header(number))
            return
        yield ev.Event.from_dict(obj)


def check_header(obj: Any) -> None:
    if not isinstance(obj, dict) or obj.get("kind") != ev.SESSION or obj.get("format") != ev.FORMAT_NAME:
        raise SessionFormatError("not an rlm-tui session file (its first line is not a session header)")
    version = obj.get("version")
    if isinstance(version, float) and version.is_integer():
        version = int(version)  # "version": 1.0 is version 1
    if not isinstance(version, int) or isinstance(version, bool):
        raise SessionFormatError(f"session format version {as_text(version)[:40]!r} is not a version number")
    if version > ev.FORMAT_VERSION:
        raise SessionFormatError(
            f"session format version {version} is newer than this rlm-tui understands "
            f"({ev.FORMAT_VERSION}); upgrade rlm-tui to open it")


def load(path: Path) -> LoadedSession:
    """Read a whole session file."""
    session = LoadedSession(path=path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        session.events = list(iter_events(handle, session.bad_lines))
    return session
