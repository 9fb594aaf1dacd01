"""``rlm-tui resume FILE --at [QUESTION.]TURN`` / ``--ask QUESTION``: re-run a recorded session from a
turn of any of its questions, or continue it with a new question.

The root model's recorded replies for the turns before TURN are handed to the
engine in place of the live model (``Engine.recorded``); their code runs again
in a fresh kernel, so the REPL state is real. From turn TURN on, the live
model (possibly another one, with other limits) writes the replies. While the
recorded turns replay, sub-calls whose prompt was recorded get their recorded
replies too (``llm_query`` by model and prompt, child RLM turns by their
question and turn), so nothing is paid twice; ``--live-subcalls`` asks the
live model for them instead. The user's own recorded cells run again too, each
in its place among the model's cells (``recorded_cells.py``), and the user's
decisions at gates apply again without asking (``recorded_decisions.py``): the
replay reproduces what the user decided, not the model's raw replies. The new run is
recorded to a new session file whose ``run_started`` names its origin
(``resumed_from``).

``--at QUESTION.TURN`` replays the questions before QUESTION whole, in order
(each a question of the new session, in the one kernel that lives on), then
QUESTION up to TURN; the session ends with QUESTION's answer. With ``--ask``
every recorded question is replayed whole, then the new question runs live.
A question replayed whole never goes live: it ends where its recording ends,
as it was recorded to end (``RecordingEnded``).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..core import events as ev
from ..core.config import Limits, Settings
from ..core.control import Decision, Gate
from ..core.lm import LMResult
from ..core.model_calls import RecordingEnded
from ..core.safe_text import as_text
from .index import SessionIndex
from .recorded_cells import RecordedUserCells
from .recorded_decisions import RecordedDecisions


class ResumeError(Exception):
    """The session cannot be resumed as asked (a usage error: exit code 2)."""


#: A question whose recording has no end (the recorded process was killed mid-question) ends with this error.
NO_RECORDED_END = "the recording of this question stops here without saying how it ended"
#: A question whose replay asks for a turn past its recorded answer (its replayed code ran differently).
ANSWER_NOT_REACHED = "replaying its recorded turns did not reach the recorded answer"


@dataclass
class RecordedReplies:
    """Recorded model replies, consumed in order until the live model takes over.

    Called by the engine as ``recorded(node, parent, model, turn, messages)``
    before each model call; returns an LMResult (no tokens, no cost: nothing was
    spent) or None for "ask the live model". A question replayed whole (one
    before ``question``) never goes live: where its recorded turns end it ends,
    as it was recorded to end (``RecordingEnded``). ``decision`` hands the engine the
    user's recorded decisions at gates (steps, sub-calls) while the recording replays.
    """

    at: int  # the first root turn the live model writes (in question ``question``)
    roots: list[dict[int, str]] = field(default_factory=list)  # per recorded question: turn -> root reply
    question: int = 0  # the question (0-based) where the live model takes over at turn ``at``
    rlm: dict[tuple[str, int], deque[str]] = field(default_factory=dict)  # (first user message, turn) -> replies
    llm: dict[tuple[str, str], deque[str]] = field(default_factory=dict)  # (model, prompt) -> replies
    ends: list[RecordingEnded] = field(default_factory=list)  # per recorded question: how it ended, if stopped
    #: first user message -> how the child RLMs asked it ended, in the order they started
    child_ends: dict[str, deque[RecordingEnded]] = field(default_factory=dict)
    decisions: RecordedDecisions = field(default_factory=RecordedDecisions)  # the user's, at gates
    subcalls: bool = True  # replay recorded sub-call replies too
    live: bool = False  # the live model has taken over
    used: int = 0  # recorded replies handed out

    _ordinal: dict[str, int] = field(default_factory=dict)  # root node (of this run) -> its question, 0-based
    _child: dict[str, str] = field(default_factory=dict)  # child RLM served recorded turns -> first user message
    _child_end: dict[str, RecordingEnded] = field(default_factory=dict)  # recorded child RLM -> how it ended

    def __post_init__(self) -> None:
        self.live = self.live or (self.at <= 1 and self.question == 0)

    def turns(self, question: int = 0) -> dict[int, str]:
        """A recorded question's root replies by turn (``question`` 0-based; {} when there is no such question)."""
        return self.roots[question] if 0 <= question < len(self.roots) else {}

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], at: int, subcalls: bool = True,
                    question: int = 0) -> "RecordedReplies":
        replies = cls(at=at, subcalls=subcalls, question=question)
        kinds: dict[str, str] = {}  # node -> node_kind
        prompts: dict[str, str] = {}  # llm node -> prompt
        first_user: dict[str, str] = {}  # rlm node -> its first user message
        turns: dict[str, int | None] = {}  # node -> turn of its current model call
        question: dict[str, int] = {}  # root node -> its question, 0-based
        children: dict[str, list[str]] = {}  # first user message -> child RLM nodes, in the order they started
        child_end: dict[str, RecordingEnded] = {}  # child RLM node -> how it ended
        for event in events:
            node = event.node or ""
            if event.kind == ev.NODE_STARTED:
                kinds[node] = event.get("node_kind", "llm")
                prompts[node] = event.get("prompt", "")
                if kinds[node] == "root" and node not in question:
                    question[node] = len(replies.roots)
                    replies.roots.append({})
                    replies.ends.append(RecordingEnded("failed", "error", NO_RECORDED_END))
            elif event.kind == ev.NODE_FINISHED and node in question:
                replies.ends[question[node]] = _ended(event)
            elif event.kind == ev.NODE_FINISHED and kinds.get(node) == "rlm":
                child_end[node] = _ended(event)
            elif event.kind in RecordedDecisions.KINDS:
                replies.decisions.read(event, question.get(node, first_user.get(node)
                                                           if kinds.get(node) == "rlm" else None))
            elif event.kind == ev.LM_STARTED:
                turns[node] = event.get("turn")
                if node not in first_user:
                    user = next((as_text(m.get("content")) for m in _messages(event.get("messages"))
                                 if m.get("role") == "user"), None)
                    if user is not None:
                        first_user[node] = user
                        if kinds.get(node) == "rlm":
                            children.setdefault(user, []).append(node)
            elif event.kind == ev.LM_FINISHED:
                text, turn, kind = event.get("text", ""), turns.get(node), kinds.get(node)
                if kind == "root" and turn is not None and node in question:
                    replies.roots[question[node]].setdefault(turn, text)
                elif kind == "rlm" and turn is not None and node in first_user:
                    replies.rlm.setdefault((first_user[node], turn), deque()).append(text)
                elif kind == "llm":
                    replies.llm.setdefault((event.get("model", ""), prompts.get(node, "")), deque()).append(text)
        no_end = RecordingEnded("failed", "error", NO_RECORDED_END)
        replies.child_ends = {user: deque(child_end.get(n, no_end) for n in nodes) for user, nodes in children.items()}
        return replies

    @property
    def recorded_turns(self) -> int:
        """The root turns recorded for the question the live model takes over."""
        return max(self.turns(self.question), default=0)

    def __call__(self, node: str, parent: str | None, model: str, turn: int | None,
                 messages: list[dict[str, str]]) -> LMResult | None:
        if self.live:
            return None
        text: str | None = None
        if parent is None:  # a question's root
            ordinal = self._ordinal.setdefault(node, len(self._ordinal))
            replies = self.roots[ordinal] if ordinal < len(self.roots) else {}
            if ordinal < self.question and (turn is None or turn not in replies):
                raise self.ended(ordinal)  # replayed whole: it ends where its recording ends, as recorded
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
                if node not in self._child_end and self.child_ends.get(user):
                    self._child_end[node] = self.child_ends[user].popleft()
                queue = self.rlm.get((user, turn))
                if queue:
                    self._child[node] = user
                elif node in self._child_end:  # a recorded child replayed: it ends as recorded, as a question does
                    end = self._child_end[node]
                    raise RecordingEnded(end.status, end.stopped_by, end.error)
            text = queue.popleft() if queue else None
        if text is None:
            return None
        self.used += 1
        return LMResult(text, 0, 0, 0.0, True, 0.0)

    def ended(self, question: int) -> RecordingEnded:
        """How recorded question ``question`` (0-based) ended, as a new exception to raise."""
        end = self.ends[question]
        return RecordingEnded(end.status, end.stopped_by, end.error)

    def decision(self, gate: Gate) -> Decision | None:
        """The user's recorded decision at ``gate`` while the recording replays (``RecordedDecisions``); None
        once live, at a turn the live model writes, or where nothing was recorded. A root's steps are found by
        its question and number (the user's own cells run again in place, so numbers line up), a child RLM's
        by its first user message, as its turns are. A kill ends a question replayed whole as recorded
        (``RecordingEnded``); in the question that goes live a killed cell is skipped (it never ran, and the
        live model writes what follows)."""
        if self.live:
            return None
        if gate.kind == "spawn":
            return self.decisions.spawn(gate)
        owner: int | str | None
        if gate.parent is None:  # asked before the root's first model call: its ordinal is given here
            owner = self._ordinal.setdefault(gate.node, len(self._ordinal))
            if gate.kind == "turn" and (owner > self.question or (owner == self.question
                                                                 and (gate.turn or 0) >= self.at)):
                return None  # the live model writes this turn: its gate works as usual
        else:
            owner = self._child.get(gate.node)
        decision = self.decisions.step(owner, gate) if owner is not None else None
        if decision is None or decision.action != "kill" or not isinstance(owner, int):
            return decision
        if owner < self.question:
            raise self.ended(owner)
        if gate.kind == "cell":
            return Decision("skip", by=decision.by, reason="killed at its step gate when recorded", replayed=True)
        return None


def _ended(finished: ev.Event) -> RecordingEnded:
    """How a recorded question ended, from its root's ``node_finished`` (an answer its replay did not reach
    ends it as an error too: the live model is not asked to go on with it)."""
    status, error = as_text(finished.get("status")), as_text(finished.get("error"))
    if status in ("limit", "killed", "failed"):
        return RecordingEnded(status, as_text(finished.get("stopped_by")) or "error", error)
    return RecordingEnded("failed", "error", ANSWER_NOT_REACHED)


def _messages(value: Any) -> list[dict[str, Any]]:
    """An lm_started ``messages`` field as a list of message objects (a damaged file may hold anything)."""
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


@dataclass
class ResumePlan:
    """Everything a resumed run needs: what to ask, with which settings, and what was recorded."""

    source: Path
    at: int
    question: str
    path: Path
    settings: Settings
    replies: RecordedReplies
    run_info: dict[str, Any]
    then: list[str] = field(default_factory=list)  # the recorded follow-ups replayed, then (--ask) the new question
    user_cells: RecordedUserCells = field(default_factory=RecordedUserCells)

    def prepare(self, engine: Any) -> None:
        """Hook the recorded replies and user cells, the origin and any further questions into an Engine
        before it runs."""
        engine.recorded = self.replies
        engine.recorded_decisions = self.replies.decision
        engine.run_info = dict(self.run_info)
        cells = self.user_cells
        engine.recorded_cells = lambda before: cells.due(len(engine.asked), before)  # the question running
        if self.then:
            rest = list(self.then)

            async def next_question(answer: str | None) -> str | None:
                if not rest:
                    return None
                for code in cells.rest(len(engine.asked) - 1):  # run after the question that just ended
                    await engine.run_user_cell(code)
                return rest.pop(0)

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
         ask: str | None = None, question: int = 1) -> ResumePlan:
    """Read ``source`` and work out the resumed run; raises ResumeError when it cannot be done.

    ``question`` (1-based) and ``at``: the live model writes that question's turn ``at`` on; the
    questions before it are replayed whole. ``ask``: instead, replay every recorded question whole,
    then ask this one.

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
        replies = RecordedReplies.from_events(events, 1, subcalls=subcalls)
        replies.question, replies.live = len(replies.roots), not replies.roots
        user_cells = RecordedUserCells.from_events(events)
    else:
        assert at is not None
        replies = RecordedReplies.from_events(events, at, subcalls=subcalls, question=question - 1)
        _check_turn(replies, question, at)
        user_cells = RecordedUserCells.from_events(events, until=(question - 1, at))
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
        if question > 1:
            origin["at_question"] = question
        return ResumePlan(Path(source), at, asked[0], input_path, settings, replies, {"resumed_from": origin},
                          then=asked[1:question], user_cells=user_cells)
    origin["questions"] = len(asked)  # replayed whole before the new question
    return ResumePlan(Path(source), 1, asked[0], input_path, settings, replies, {"resumed_from": origin},
                      then=[*asked[1:], ask], user_cells=user_cells)


def parse_at(text: str) -> tuple[int, int]:
    """``--at TURN`` (question 1) or ``--at QUESTION.TURN``: (question, turn), both 1-based."""
    head, dot, tail = text.strip().partition(".")
    try:
        return (int(head), int(tail)) if dot else (1, int(head))
    except ValueError:
        raise ResumeError(f"--at takes TURN or QUESTION.TURN (like 3 or 2.3), not {text!r}") from None


def _check_turn(replies: RecordedReplies, question: int, at: int) -> None:
    """A one-line ResumeError unless the session has ``question`` and can go live at its turn ``at``."""
    count = len(replies.roots)
    if count > 1 and not 1 <= question <= count:
        listing = ", ".join(f"{q}.1-{q}.{max(replies.turns(q - 1), default=0) + 1}" for q in range(1, count + 1))
        raise ResumeError(f"--at {question}.{at}: the session has {count} questions; resume at one of {listing}")
    if count <= 1 and question != 1:
        raise ResumeError(f"--at {question}.{at}: the session has one question; give --at TURN")
    turns = max(replies.turns(question - 1), default=0)
    where = f"question {question} has" if count > 1 else "the session has"
    name = f"{question}." if count > 1 else ""
    if not 1 <= at <= turns + 1:
        raise ResumeError(f"--at must be between {name}1 and {name}{turns + 1}: {where} {turns} recorded "
                          f"root turn{'s' if turns != 1 else ''}")
    for q in range(1, question + 1):  # the questions before it are replayed whole, this one up to the turn
        recorded = replies.turns(q - 1)
        last = at - 1 if q == question else max(recorded, default=0)
        missing = [t for t in range(1, last + 1) if t not in recorded]
        if missing:
            raise ResumeError(f"{'question ' + str(q) + ' ' if count > 1 else ''}turn {missing[0]}'s reply is not "
                              f"in the session (the file is damaged there); resume at a turn up to "
                              f"{str(q) + '.' if count > 1 else ''}{missing[0]}")
