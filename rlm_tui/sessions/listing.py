"""``rlm-tui sessions``: saved sessions, newest first, from the head and tail of each file.

A session's header and run_started are its first lines, and run_finished
(answer, how it stopped, usage) its last, so a summary reads a few kilobytes
however big the file is. A file without run_finished is a run still going or
one that was killed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import events as ev
from ..core.safe_text import safe
from ..core.events import coerce

TAIL_BYTES = 64 * 1024
MAX_LINE = 16 * 1024 * 1024  # a last line longer than this is not read for a summary


@dataclass
class SessionSummary:
    path: Path
    created: _dt.datetime | None
    question: str = ""
    model: str = ""
    answer: str | None = None
    outcome: str = "unfinished"  # answered | stopped by X | error: ... | unfinished | unreadable: ...
    tokens: int | None = None
    cost_usd: float | None = None
    size: int = 0
    resumed_from: str | None = None
    questions: list[str] | None = None  # every question of the session (run_finished), when several were asked
    outcomes: list[str] | None = None  # how each of those ended: its answer, or how it stopped (newer files)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "created": self.created.isoformat() if self.created else None,
                "question": self.question, "model": self.model, "answer": self.answer, "outcome": self.outcome,
                "tokens": self.tokens, "cost_usd": self.cost_usd, "bytes": self.size,
                "resumed_from": self.resumed_from, "questions": self.questions or [self.question],
                "outcomes": self.outcomes or [self.result]}

    @property
    def result(self) -> str:
        """How the session ended, in one cell of the table: its answer, or how it stopped."""
        return self.answer if self.outcome == "answered" and self.answer is not None else self.outcome


def summarize(path: Path) -> SessionSummary:
    """What a session was, from its first two lines and its last one."""
    stat = path.stat()
    summary = SessionSummary(path, _dt.datetime.fromtimestamp(stat.st_mtime, _dt.timezone.utc), size=stat.st_size)
    try:
        with open(path, "rb") as handle:
            header = _json(handle.readline(MAX_LINE))
            if header.get("kind") != ev.SESSION:
                summary.outcome = "unreadable: not an rlm-tui session file"
                return summary
            created = header.get("created")
            if isinstance(created, str):
                try:
                    summary.created = _dt.datetime.fromisoformat(created)
                except ValueError:
                    pass
            run = _json(handle.readline(MAX_LINE))
            if run.get("kind") == ev.RUN_STARTED:
                summary.question = run.get("question") or ""
                summary.model = (run.get("settings") or {}).get("model") or ""
                origin = run.get("resumed_from")
                if isinstance(origin, dict):
                    where = (f"turn {resumed_at(origin)}" if origin.get("at_turn") is not None else "with a new question")
                    summary.resumed_from = f"{Path(str(origin.get('path'))).name} {where}"
            finished = _last_event(handle, stat.st_size)
    except OSError as exc:
        summary.outcome = f"unreadable: {exc.strerror or exc}"
        return summary
    if finished is not None:
        asked = [q for q in finished.get("questions") or [] if isinstance(q, str)]
        summary.questions = asked if len(asked) > 1 else None
        outcomes = [_outcome(o) for o in finished.get("outcomes") or []]
        summary.outcomes = outcomes if summary.questions and len(outcomes) == len(asked) else None
        summary.answer = finished.get("answer")
        usage = finished.get("usage") or {}
        summary.tokens = usage.get("total_tokens")
        summary.cost_usd = usage.get("cost_usd")
        if finished.get("error"):
            summary.outcome = f"error: {finished['error']}"
        elif summary.answer is not None:
            summary.outcome = "answered"
        else:
            summary.outcome = f"stopped by {finished.get('stopped_by') or 'an unknown cause'}"
    return summary


def _outcome(recorded: object) -> str:
    """One question's line: its answer, or how it stopped (a damaged entry reads as unknown)."""
    if not isinstance(recorded, dict):
        return "unknown"
    answer, error, stopped_by = recorded.get("answer"), recorded.get("error"), recorded.get("stopped_by")
    if isinstance(answer, str):
        return answer
    if isinstance(error, str) and error:
        return f"error: {error}"
    return f"stopped by {stopped_by if isinstance(stopped_by, str) else 'an unknown cause'}"


def resumed_at(origin: dict[str, Any]) -> str:
    """Where a resumed session went live, as ``--at`` takes it: ``3``, or ``2.3`` for question 2's turn 3."""
    question = origin.get("at_question")
    return f"{question}.{origin.get('at_turn')}" if isinstance(question, int) and question > 1 else \
        str(origin.get("at_turn"))


def _json(line: bytes) -> dict[str, Any]:
    """One line as an event object with its fields' types repaired; {} when it is not one."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(obj, dict):
        return {}
    coerce(obj)
    return obj


def _last_event(handle: Any, size: int) -> dict[str, Any] | None:
    """The run_finished event among the file's last lines, if the run finished."""
    chunk = TAIL_BYTES
    while True:
        start = max(0, size - chunk)
        handle.seek(start)
        tail = handle.read(size - start)
        lines = tail.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first piece is probably part of a line
        complete = [line for line in lines if line.strip()]
        for line in reversed(complete):
            if b'"run_finished"' in line:
                obj = _json(line)
                if obj.get("kind") == ev.RUN_FINISHED:
                    return obj
        if complete or start == 0 or chunk >= MAX_LINE:
            return None  # the last lines are not run_finished: the run did not finish
        chunk *= 4  # the last line is longer than what was read: read more


def _summarize_any(path: Path) -> SessionSummary:
    """``summarize``, but a file that cannot be summarised is listed as unreadable: one bad
    file never breaks the listing."""
    try:
        return summarize(path)
    except OSError as exc:
        return SessionSummary(path, None, outcome=f"unreadable: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - any damage: say so on its row
        return SessionSummary(path, None, outcome=f"unreadable: {type(exc).__name__}")


def list_sessions(directory: Path, limit: int | None = 50) -> list[SessionSummary]:
    """Summaries of the ``*.jsonl`` files in ``directory``, newest first."""
    try:
        entries = [Path(e.path) for e in os.scandir(directory) if e.name.endswith(".jsonl") and e.is_file()]
    except OSError:
        return []
    summaries = [_summarize_any(p) for p in entries]
    epoch = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    summaries.sort(key=lambda s: (not s.outcome.startswith("unreadable"), _aware(s.created) or epoch), reverse=True)
    return summaries if limit is None else summaries[:limit]


def _aware(when: _dt.datetime | None) -> _dt.datetime | None:
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=_dt.timezone.utc)
    return when


def _short(text: str, width: int) -> str:
    """One line of at most ``width`` characters, made ``safe`` before it is cut (so a cut can
    never fall inside a control sequence: there are none left)."""
    flat = " ".join(safe(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_table(sessions: list[SessionSummary]) -> str:
    """A numbered table for the terminal (numbers are what --open takes)."""
    rows = [("#", "date", "question", "model", "answer / how it stopped", "tokens", "cost", "file")]
    for number, s in enumerate(sessions, 1):
        when = _aware(s.created).astimezone().strftime("%Y-%m-%d %H:%M") if s.created else "?"
        result = s.outcomes[0] if s.outcomes else s.result  # several questions: each row says how its own ended
        tokens = f"{s.tokens:,}" if s.tokens is not None else "-"
        cost = f"${s.cost_usd:.4f}" if s.cost_usd is not None else "-"
        question = _short(s.question, 40) + (safe(f" (resumed {s.resumed_from})") if s.resumed_from else "")
        rows.append((str(number), when, question, _short(s.model, 24), _short(result or "", 40), tokens, cost,
                     safe(s.path.name)))
        for index, follow_up in enumerate((s.questions or [])[1:], start=2):
            outcome = s.outcomes[index - 1] if s.outcomes else ""  # older files: row 1 shows the last's answer
            rows.append(("", "", _short(f"{index}. {follow_up}", 40), "", _short(outcome, 40), "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {0, 5, 6}
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
