"""Events: the one stream the engine emits and every reader folds, with one typed definition per kind.

Every event names the call node it belongs to (``node``) and that node's parent,
so the recursion tree is a fold over the stream (``model.run``). On disk an
event is one JSON object per line with the fixed keys ``seq``, ``t``, ``kind``,
``node``, ``parent`` and the kind's own fields flattened beside them.

``KINDS`` is the registry: each kind's fields, their types and which may be
missing or null. Readers call ``coerce`` on what they decode, so a field of the
wrong type (a damaged or foreign file) becomes text, 0 or empty once, where the
event enters, and consumers read fields without guessing. Kinds and fields not
in the registry are kept and ignored: a newer writer may add them within a
format version. The README's session-format table is ``format_table()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from .safe_text import as_text

FORMAT_NAME = "rlm-tui-session"
FORMAT_VERSION = 1

TEXT, INT, NUMBER, BOOL, OBJECT, LIST, ANY = "text", "int", "number", "bool", "object", "list", "any"


@dataclass(frozen=True)
class Field:
    """One field of an event kind. ``optional``: may be missing or null (readers get ``None``)."""

    name: str
    type: str
    doc: str = ""
    optional: bool = False
    fields: tuple["Field", ...] = ()  # an object's own fields
    each: tuple["Field", ...] = ()  # an object of objects (keyed by name): each value's fields


@dataclass(frozen=True)
class Kind:
    name: str
    doc: str
    fields: tuple[Field, ...]

    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


KINDS: dict[str, Kind] = {}


def _kind(name: str, doc: str, *fields: Field) -> str:
    KINDS[name] = Kind(name, doc, fields)
    return name


def _f(name: str, type_: str, doc: str = "", **options: Any) -> Field:
    return Field(name, type_, doc, **options)


def _opt(name: str, type_: str, doc: str = "", **options: Any) -> Field:
    return Field(name, type_, doc, optional=True, **options)


_USAGE = (_f("tokens_in", INT), _f("tokens_out", INT), _f("total_tokens", INT), _f("cost_usd", NUMBER))

SESSION = _kind("session", "the header, always the first line",
                _f("format", TEXT, "`rlm-tui-session`"), _f("version", INT, "1"), _opt("created", TEXT),
                _opt("rlm_tui_version", TEXT))
RUN_STARTED = _kind("run_started", "the run's question, input and settings",
                    _f("question", TEXT), _f("path", TEXT),
                    _f("settings", OBJECT, "models, limits, `api_key_set` — never the key",
                       fields=(_opt("model", TEXT), _opt("sub_model", TEXT), _opt("limits", OBJECT),
                               _opt("session_path", TEXT), _opt("approve", TEXT), _opt("step", TEXT))),
                    _opt("resumed_from", OBJECT, "when resumed",
                         fields=(_opt("path", TEXT), _opt("at_turn", INT),
                                 _opt("at_question", INT, "`--at Q.T`: the question of `at_turn`, when not the first"),
                                 _opt("created", TEXT),
                                 _opt("questions", INT, "`--ask`: recorded questions replayed whole"))),
                    _opt("kernel_backend", OBJECT, "what ran the code: `name`, `description`, `warning`",
                         fields=(_opt("name", TEXT), _opt("description", TEXT), _opt("warning", TEXT))))
QUESTION_ASKED = _kind("question_asked", "a question of the session starts (the first too); its root's "
                       "`node_started` follows", _f("question", TEXT), _f("index", INT, "1-based"))
NODE_STARTED = _kind("node_started", "a call node starts",
                     _f("node_kind", TEXT, "`root`, `rlm`, `llm`, `batch`"), _f("depth", INT), _f("model", TEXT),
                     _opt("label", TEXT), _f("prompt", TEXT), _opt("n", INT, "batch size"),
                     _opt("item_kind", TEXT, "a batch's calls: `llm` or `rlm`"),
                     _opt("context", ANY, "a child's context preview"))
CONTEXT_LOADED = _kind("context_loaded", "the input is loaded into the node's kernel",
                       _f("info", OBJECT, fields=(
                           _opt("type", TEXT), _opt("chars", INT), _opt("files", INT), _opt("largest", ANY),
                           _opt("skipped", OBJECT, each=(_opt("count", INT),)), _opt("truncated_bytes", INT),
                           _opt("description", TEXT))))
KERNEL = _kind("kernel", "the node's kernel changed state",
               _f("state", TEXT, "`starting`, `loading context`, `idle`, `busy`, `restarting`, `dead`"),
               _opt("detail", TEXT))
TURN_STARTED = _kind("turn_started", "a turn of an RLM node starts", _f("turn", INT))
LM_STARTED = _kind("lm_started", "a model call starts",
                   _opt("turn", INT, "null for an `llm_query`"), _f("model", TEXT),
                   _f("messages", LIST, "only those added since the node's last call"))
LM_CHUNK = _kind("lm_chunk", "streamed reply text, coalesced; RLM turns only", _f("text", TEXT))
LM_RETRY = _kind("lm_retry", "a model call failed and is retried (text streamed before it is void)",
                 _f("attempt", INT), _f("error", TEXT), _f("wait_s", NUMBER))
LM_FINISHED = _kind("lm_finished", "a model call finished",
                    _f("model", TEXT), _f("text", TEXT, "the whole reply"), _f("tokens_in", INT),
                    _f("tokens_out", INT), _f("cost_usd", NUMBER), _opt("cost_known", BOOL),
                    _opt("latency_s", NUMBER), _opt("replayed", BOOL, "resume"))
CELL_STARTED = _kind("cell_started", "a code cell starts", _f("cell", INT, "number within the node"),
                     _f("code", TEXT), _opt("by", TEXT, "`user`: a cell you ran; absent: the model's"))
CELL_OUTPUT = _kind("cell_output", "output of a cell; at most `--output-chars` per cell",
                    _f("cell", INT), _f("stream", TEXT, "`stdout`, `stderr`, `error` (a traceback with ANSI colours), "
                                                        "`result`"), _f("text", TEXT))
CELL_FINISHED = _kind("cell_finished", "a code cell finished",
                      _f("cell", INT), _f("status", TEXT, "`ok`, `error`, `interrupted`, `timeout`, `died`"),
                      _f("duration_s", NUMBER), _opt("output_chars", INT), _opt("truncated_chars", INT))
TURN_FINISHED = _kind("turn_finished", "a turn of an RLM node finished", _f("turn", INT), _opt("duration_s", NUMBER))
SPAWN_REQUESTED = _kind("spawn_requested", "a sub-call waits for approval",
                        _f("node_kind", TEXT, "`llm`, `rlm`, `batch`"), _f("depth", INT), _f("model", TEXT),
                        _f("prompt", TEXT), _opt("label", TEXT), _opt("context", ANY), _opt("item_kind", TEXT),
                        _opt("n", INT), _opt("prompts", LIST), _opt("waiting", INT))
SPAWN_DECIDED = _kind("spawn_decided", "a waiting sub-call was decided",
                      _f("decision", TEXT, "`approve`, `edit`, `deny`, `open`, `kill`"), _f("by", TEXT),
                      _opt("at", TEXT, "ISO time"), _opt("waited_s", NUMBER), _opt("prompt", TEXT), _opt("model", TEXT),
                      _opt("original_prompt", TEXT), _opt("original_model", TEXT), _opt("prompts", LIST),
                      _opt("original_prompts", LIST), _opt("reason", TEXT), _opt("waiting", INT),
                      _opt("replayed", BOOL, "resume"))
STEP_WAITING = _kind("step_waiting", "step mode: a turn or cell waits for the user",
                     _f("gate", TEXT), _f("what", TEXT, "`turn`, `cell`"), _opt("turn", INT), _opt("cell", INT),
                     _opt("code", TEXT), _opt("waiting", INT))
STEP_DECIDED = _kind("step_decided", "a waiting step was decided",
                     _f("gate", TEXT), _f("what", TEXT), _f("decision", TEXT, "`run`, `edit`, `skip`, `kill`"),
                     _f("by", TEXT), _opt("at", TEXT, "ISO time"), _opt("waited_s", NUMBER), _opt("code", TEXT),
                     _opt("original_code", TEXT), _opt("reason", TEXT), _opt("waiting", INT),
                     _opt("replayed", BOOL, "resume"))
STEERING = _kind("steering", "the user steered the run",
                 _f("action", TEXT, "`pause`, `resume`, `step`, `policy`, `always`, `kill`, `interrupt`"),
                 _f("by", TEXT), _opt("at", TEXT, "ISO time"), _opt("mode", TEXT), _opt("policy", TEXT),
                 _opt("spawn_kind", TEXT), _opt("nodes", LIST))
NODE_FINISHED = _kind("node_finished", "a call node finished",
                      _f("status", TEXT, "`done`, `failed`, `killed`, `denied`, `limit`"),
                      _f("result", TEXT, "first 2,000 characters"), _opt("error", TEXT, "or a stopped question's reason"),
                      _opt("stopped_by", TEXT, "a question's root that ended without an answer: the limit, `killed`, "
                                               "`kernel_deaths` or `error`"))
COMPACTED = _kind("compacted", "older turns of an RLM node were shortened to fit its model's window",
                  _f("turns", LIST, "turn numbers shortened"), _f("chars_before", INT), _f("chars_after", INT),
                  _f("reason", TEXT), _opt("window", INT, "the window in tokens"))
LIMIT_REACHED = _kind("limit_reached", "a limit stopped something", _f("limit", TEXT), _f("detail", TEXT))
WARNING = _kind("warning", "something the user should know", _f("message", TEXT))
FINAL_ANSWER = _kind("final_answer", "a node gave its answer",
                     _f("answer", TEXT), _f("source", TEXT, "`FINAL`, `FINAL_VAR`, `answer`, `forced`, `user` (your own cell)"))
RUN_FINISHED = _kind("run_finished", "the run ended (the last line)",
                     _opt("answer", TEXT), _opt("stopped_by", TEXT),
                     _f("usage", OBJECT, fields=(*_USAGE, _opt("per_model", OBJECT, each=_USAGE))),
                     _f("calls", INT), _f("duration_s", NUMBER), _opt("error", TEXT),
                     _opt("questions", LIST, "every question of the session, in order (`answer` is the last's)"),
                     _opt("outcomes", LIST, "how each question ended, in order: {`answer`, `stopped_by`, `error`}"))

#: Node statuses a UI can show.
NODE_STATUSES = ("waiting", "queued", "running", "done", "denied", "killed", "failed", "limit")

_ENVELOPE_TEXT = ("kind", "node", "parent")
_MAX_DEPTH = 4


def coerce(obj: dict[str, Any]) -> list[str]:
    """Fix, in place, the fields of a decoded event (envelope and kind's own) that have the wrong type.

    Text that is not a string (a list of content parts, a number) becomes its JSON text; a
    number that is not one becomes 0; an object or list that is not one becomes empty. Returns
    what was wrong, for the reader to report with the line number.
    """
    problems: list[str] = []
    get = obj.get
    if not (type(get("kind")) is str and type(get("node")) in _TEXT_OR_NULL and type(get("parent")) in _TEXT_OR_NULL
            and type(get("t", 0.0)) in _NUMBER and type(get("seq", 0)) in _SEQ):  # else one of them is wrong
        _coerce_envelope(obj, problems)
    plan = _PLANS.get(get("kind"))  # type: ignore[arg-type]
    if plan is None:
        return problems
    for name, fine, spec in plan:  # the kind's fields: the common case, each of its type, costs a lookup
        value = get(name, _OK)
        if value is not _OK and type(value) not in fine:
            coerce_fields((spec,), obj, problems)
    return problems


def _coerce_envelope(obj: dict[str, Any], problems: list[str]) -> None:
    for key in _ENVELOPE_TEXT:
        value = obj.get(key)
        if value is not None and type(value) is not str:
            problems.append(f"{key} is {_kind_of(value)}")
            obj[key] = as_text(value)
    t = obj.get("t", 0.0)
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        problems.append(f"t is {_kind_of(t)}")
        obj["t"] = 0.0
    if not isinstance(obj.get("seq", 0), int):
        problems.append(f"seq is {_kind_of(obj['seq'])}")
        obj["seq"] = 0


def coerce_data(kind: str, data: dict[str, Any]) -> list[str]:
    """``coerce`` for an event's own fields only (an ``Event.data``)."""
    problems: list[str] = []
    spec = KINDS.get(kind)
    if spec is not None:
        coerce_fields(spec.fields, data, problems)
    return problems


def coerce_fields(fields: tuple[Field, ...], obj: dict[str, Any], problems: list[str], where: str = "",
                  depth: int = 0) -> None:
    get = obj.get
    for spec in fields:
        value = get(spec.name, _OK)
        if value is _OK or (type(value) in _FINE[spec.type] and not (spec.fields or spec.each)):
            continue  # missing, or of its type with nothing inside to check (the common case: fast)
        name = f"{where}{spec.name}"
        if value is None and (spec.optional or spec.type in (TEXT, OBJECT, ANY)):
            continue
        fixed = _fixed(spec.type, value)
        if fixed is not _OK:
            problems.append(f"{name} is {_kind_of(value)}")
            obj[spec.name] = value = fixed
        if spec.type == OBJECT and depth < _MAX_DEPTH:
            if spec.fields:
                coerce_fields(spec.fields, value, problems, f"{name}.", depth + 1)
            if spec.each:
                for key, inner in list(value.items()):
                    if not isinstance(inner, dict):
                        problems.append(f"{name}.{key} is {_kind_of(inner)}")
                        value[key] = inner = {}
                    coerce_fields(spec.each, inner, problems, f"{name}.{key}.", depth + 1)


_OK = object()
#: Python types that need no look inside, per field type (bool is an int to Python, not to us).
_FINE: dict[str, frozenset[type]] = {TEXT: frozenset({str}), INT: frozenset({int, float}),
                                     NUMBER: frozenset({int, float}), BOOL: frozenset({bool}),
                                     OBJECT: frozenset({dict}), LIST: frozenset({list}),
                                     ANY: frozenset({str, int, float, bool, dict, list, type(None)})}


_TEXT_OR_NULL = frozenset({str, type(None)})
_NUMBER = frozenset({int, float})
_SEQ = frozenset({int, bool})  # a decoder makes no other int (isinstance(True, int): seq was never checked for bool)
#: Per kind, each field's name, the Python types it needs no look inside for (none when it has fields
#: of its own to check), and its definition: ``coerce``'s loop with nothing to look up.
_PLANS: dict[str, tuple[tuple[str, frozenset[type], Field], ...]] = {
    name: tuple((f.name, frozenset() if f.fields or f.each else _FINE[f.type], f) for f in kind.fields)
    for name, kind in KINDS.items()}


def _fixed(type_: str, value: Any) -> Any:
    """``_OK`` when ``value`` has the type, else the value readers get instead."""
    if type_ == TEXT:
        return _OK if isinstance(value, str) else as_text(value)
    if type_ in (INT, NUMBER):
        return _OK if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
    if type_ == BOOL:
        return _OK if isinstance(value, bool) else bool(value)
    if type_ == OBJECT:
        return _OK if isinstance(value, dict) else {}
    if type_ == LIST:
        return _OK if isinstance(value, list) else []
    return _OK


def _kind_of(value: Any) -> str:
    names = {str: "a string", list: "a list", dict: "an object", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return f"{names.get(type(value), type(value).__name__)}, not the expected type"


def format_table() -> str:
    """The README's table of kinds and fields (``tests/test_model_events.py`` checks it is there)."""
    rows = ["| kind | what | fields |", "|---|---|---|"]
    for kind in KINDS.values():
        if kind.name == SESSION:
            continue
        rows.append(f"| `{kind.name}` | {kind.doc} | {'; '.join(_describe(f) for f in kind.fields)} |")
    return "\n".join(rows)


def _describe(spec: Field) -> str:
    text = f"`{spec.name}`"
    inner = spec.fields or spec.each
    if inner:
        text += " {" + ", ".join(f"`{f.name}`" for f in inner) + "}"
    notes = [n for n in (spec.doc, "optional" if spec.optional else "") if n]
    return text + (f" ({', '.join(notes)})" if notes else "")


@dataclass(slots=True)
class Event:
    """One thing that happened in a run."""

    kind: str
    node: str | None = None
    parent: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    t: float = 0.0

    def to_json(self) -> str:
        """One line of the session file."""
        obj: dict[str, Any] = {"seq": self.seq, "t": round(self.t, 4), "kind": self.kind,
                               "node": self.node, "parent": self.parent}
        obj.update(self.data)
        return json.dumps(obj, ensure_ascii=False, default=str)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Event":
        """Inverse of :meth:`to_json` (after ``json.loads`` and ``coerce``); takes ``obj`` over as the
        event's data (readers pass the dict they just decoded: a big file is not copied twice)."""
        pop = obj.pop
        return cls(pop("kind"), pop("node", None), pop("parent", None), obj, pop("seq", 0), pop("t", 0.0))

    def get(self, key: str, default: Any = None) -> Any:
        """A field; ``default`` when it is missing or null (so an optional field reads as its default)."""
        value = self.data.get(key)
        return default if value is None else value


Sink = Callable[[Event], None]
