"""``rlm-tui resume FILE --at TURN`` / ``--ask QUESTION``: re-run a recorded session from a turn, or
continue it with a new question.

The root model's recorded replies for the turns before TURN are handed to the
engine in place of the live model (``Engine.recorded``); their code runs again
in a fresh kernel, so the REPL state is real. From turn TURN on, the live
model (possibly another one, with other limits) writes the replies. While the
recorded turns replay, sub-calls whose prompt was recorded get their recorded
replies too (``llm_query`` by model and prompt, child RLM turns by their
question and turn), so nothing is paid twice; ``--live-subcalls`` asks the
live model for them instead. The new run is recorded to a new session file
whose ``run_started`` names its origin (``resumed_from``).

With ``--ask`` every recorded question of the session is replayed whole, in
order (each a question of the new session, in the one kernel that lives on),
so the REPL holds what the recorded run built; then the new question runs live.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..core import events as ev
from ..core.config import Limits, Settings
from ..core.lm import LMResult
from ..core.safe_text import as_text
from .index import SessionIndex


class ResumeError(Exception):
    """The session cannot be resumed as asked (a usage error: exit code 2)."""


@dataclass
class RecordedReplies:
    """Recorded model replies, consumed in order until the live model takes over.

    Called by the engine as ``recorded(node, parent, model, turn, messages)``
    before each model call; returns an LMResult (no tokens, no cost: nothing was
    spent) or None for "ask the live model".
    """

    at: int  # the first root turn the live model writes (in question ``question``)
    roots: list[dict[int, str]] = field(default_factory=list)  # per recorded question: turn -> root reply
    question: int = 0  # the question (0-based) where the live model takes over at turn ``at``
    rlm: dict[tuple[str, int], deque[str]] = field(default_factory=dict)  # (first user message, turn) -> replies
    llm: dict[tuple[str, str], deque[str]] = field(default_factory=dict)  # (model, prompt) -> replies
    subcalls: bool = True  # replay recorded sub-call replies too
    live: bool = False  # the live model has taken over
    used: int = 0  # recorded replies handed out

    _ordinal: dict[str, int] = field(default_factory=dict)  # root node (of this run) -> its question, 0-based

    def __post_init__(self) -> None:
        self.live = self.live or (self.at <= 1 and self.question == 0)

    @property
    def root(self) -> dict[int, str]:
        """The first question's root replies (``--at`` rewinds within it)."""
        return self.roots[0] if self.roots else {}

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], at: int, subcalls: bool = True) -> "RecordedReplies":
        replies = cls(at=at, subcalls=subcalls)
        kinds: dict[str, str] = {}  # node -> node_kind
        prompts: dict[str, str] = {}  # llm node -> prompt
        first_user: dict[str, str] = {}  # rlm node -> its first user message
        turns: dict[str, int | None] = {}  # node -> turn of its current model call
        question: dict[str, int] = {}  # root node -> its question, 0-based
        for event in events:
            node = event.node or ""
            if event.kind == ev.NODE_STARTED:
                kinds[node] = event.get("node_kind", "llm")
                prompts[node] = event.get("prompt", "")
                if kinds[node] == "root" and node not in question:
                    question[node] = len(replies.roots)
                    replies.roots.append({})
            elif event.kind == ev.LM_STARTED:
                turns[node] = event.get("turn")
                if node not in first_user:
                    user = next((as_text(m.get("content")) for m in _messages(event.get("messages"))
                                 if m.get("role") == "user"), None)
                    if user is not None:
                        first_user[node] = user
            elif event.kind == ev.LM_FINISHED:
                text, turn, kind = event.get("text", ""), turns.get(node), kinds.get(node)
                if kind == "root" and turn is not None and node in question:
                    replies.roots[question[node]].setdefault(turn, text)
                elif kind == "rlm" and turn is not None and node in first_user:
                    replies.rlm.setdefault((first_user[node], turn), deque()).append(text)
                elif kind == "llm":
                    replies.llm.setdefault((event.get("model", ""), prompts.get(node, "")), deque()).append(text)
        return replies

    @property
    def recorded_turns(self) -> int:
        return max(self.root, default=0)

    def __call__(self, node: str, parent: str | None, model: str, turn: int | None,
                 messages: list[dict[str, str]]) -> LMResult | None:
        if self.live:
            return None
        text: str | None = None
        if parent is None:  # a question's root
            ordinal = self._ordinal.setdefault(node, len(self._ordinal))
            replies = self.roots[ordinal] if ordinal < len(self.roots) else {}
            if (turn is None or turn not in replies or ordinal > self.question
                    or (ordinal == self.question and turn >= self.at)):
                self.live = True
                return None
            text = replies[turn]
        elif self.subcalls:
            if turn is None:  # an llm_query: one user message, the prompt
                queue = self.llm.get((model, messages[-1].get("content", "") if messages else ""))
            else:  # a child RLM's turn
                user = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
                queue = self.rlm.get((user, turn))
            text = queue.popleft() if queue else None
        if text is None:
            return None
        self.used += 1
        return LMResult(text, 0, 0, 0.0, True, 0.0)


def _messages(value: Any) -> list[dict[str, Any]]:
    """An lm_started ``messages`` field as a list of message objects (a damaged file may hold anything)."""
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


@dataclass
class ResumePlan:
    """Everything a resumed run needs: what to ask, with which settings, and the recorded replies."""

    source: Path
    at: int
    question: str
    path: Path
    settings: Settings
    replies: RecordedReplies
    run_info: dict[str, Any]
    then: list[str] = field(default_factory=list)  # --ask: the recorded follow-ups, then the new question

    def prepare(self, engine: Any) -> None:
        """Hook the recorded replies, the origin and any further questions into an Engine before it runs."""
        engine.recorded = self.replies
        engine.run_info = dict(self.run_info)
        if self.then:
            rest = list(self.then)

            async def next_question(answer: str | None) -> str | None:
                return rest.pop(0) if rest else None

            engine.next_question = next_question


LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(Limits))
_SETTING_FIELDS = {f.name for f in dataclasses.fields(Settings)} - {"api_key", "session_path", "limits",
                                                                     "overwrite_session"}


def recorded_settings(recorded: dict[str, Any]) -> Settings:
    """Settings as a session recorded them (no API key: that never goes to disk).

    A recorded value of the wrong type (a damaged file) is left out: the default is used.
    """
    limits_given = recorded.get("limits") if isinstance(recorded.get("limits"), dict) else {}
    base = Limits()
    limits = Limits(**{k: v for k, v in limits_given.items()
                       if k in LIMIT_FIELDS and (v is None or _fits(v, getattr(base, k)))})
    defaults = Settings()
    values = {k: v for k, v in recorded.items()
              if k in _SETTING_FIELDS and v is not None and _fits(v, getattr(defaults, k))}
    return Settings(limits=limits, **values)


def _fits(value: Any, default: Any) -> bool:
    """Whether a recorded value can stand in for a field whose default is ``default``."""
    if default is None:  # an optional text field (sub_model, api_base)
        return isinstance(value, str)
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def plan(source: Path, at: int | None, *, overrides: dict[str, Any] | None = None, path: Path | None = None,
         subcalls: bool = True, damaged: Callable[[list[tuple[int, str]]], None] | None = None,
         ask: str | None = None) -> ResumePlan:
    """Read ``source`` and work out the resumed run; raises ResumeError when it cannot be done.

    ``ask``: instead of rewinding to turn ``at``, replay every recorded question whole, then ask this one.

    ``overrides`` are Settings fields (model, sub_model, api_base, api_key,
    session_path) and Limits fields by name; ``path`` replaces the recorded input.
    ``damaged(bad_lines)`` hears about the lines that could not be read, before anything is decided.
    """
    overrides = dict(overrides or {})
    with SessionIndex.open(source) as index:
        events = list(index.iter_events())
        header = index.header or {}
        if damaged is not None and index.bad_lines:
            damaged(index.bad_lines)
    run = next((e for e in events if e.kind == ev.RUN_STARTED), None)
    if run is None:
        raise ResumeError(f"{source} has no run_started event: there is no run to resume")
    asked = [e.get("question", "") for e in events if e.kind == ev.QUESTION_ASKED] or [run.get("question", "")]
    if ask is not None:
        at = 1
    assert at is not None
    replies = RecordedReplies.from_events(events, at, subcalls=subcalls)
    if ask is not None:
        replies.question, replies.live = len(replies.roots), not replies.roots
    turns = replies.recorded_turns
    if ask is None and (at < 1 or at > turns + 1):
        raise ResumeError(f"--at must be between 1 and {turns + 1}: the session has {turns} recorded "
                          f"root turn{'s' if turns != 1 else ''}")
    missing = [t for t in range(1, at) if t not in replies.root] if ask is None else []
    if missing:
        raise ResumeError(f"turn {missing[0]}'s reply is not in the session (the file is damaged there); "
                          f"resume at a turn up to {missing[0]}")
    input_path = path or Path(run.get("path", ""))
    if not input_path.exists():
        raise ResumeError(f"the recorded input {input_path} does not exist here; give it with --path")
    settings = recorded_settings(run.get("settings") or {})
    for name, value in overrides.items():
        if name in LIMIT_FIELDS:
            setattr(settings.limits, name, value)
        else:
            setattr(settings, name, value)
    origin: dict[str, Any] = {"path": str(Path(source).resolve()), "created": header.get("created")}
    if ask is None:
        origin["at_turn"] = at
        return ResumePlan(Path(source), at, run.get("question", ""), input_path, settings, replies,
                          {"resumed_from": origin})
    origin["questions"] = len(asked)  # replayed whole before the new question
    return ResumePlan(Path(source), at, asked[0], input_path, settings, replies, {"resumed_from": origin},
                      then=[*asked[1:], ask])
