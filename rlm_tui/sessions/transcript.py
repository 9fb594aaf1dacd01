"""A recorded run as a readable document: per-node turns, cells and sub-calls.

``SessionLog`` is the run model (``model.run.RunModel``) of a whole file plus
the file's facts (path, damaged lines). ``node_log`` groups a node's
transcript blocks into what a reader wants: for each RLM node its turns (the
reply, then each cell's code and output and the sub-calls that cell made), for
each llm call its response. It reads the model; it folds no events.
``render_text`` prints it for ``rlm-tui replay --headless``; the Markdown
export (``export.py``) uses the same walk with Markdown primitives.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..core.safe_text import safe
from ..core.safe_text import one_line
from ..model.fmt import cell_name, tokens
from ..model.run import RunModel
from ..model.state import RunState
from ..model.transcript import Block
from ..model.tree import CallNode, CallTree
from .index import SessionIndex
from .listing import resumed_at


@dataclass
class CellLog:
    number: int
    code: str
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (stream, text)
    status: str | None = None  # None while running (or when the run was cut off)
    duration_s: float = 0.0
    truncated_chars: int = 0
    children: list[str] = field(default_factory=list)  # sub-calls this cell made
    by: str | None = None  # "user": a cell the user ran, not the model

    def output(self) -> str:
        """The cell's recorded output as printed (raw: presenters make it ``safe``)."""
        return "".join(text for _, text in self.outputs)


@dataclass
class TurnLog:
    number: int
    text: str = ""  # the reply (streamed so far, or whole)
    cells: list[CellLog] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    duration_s: float | None = None
    retries: list[str] = field(default_factory=list)
    replayed: bool = False  # the reply came from a recording (rlm-tui resume)


@dataclass
class NodeLog:
    id: str
    turns: list[TurnLog] = field(default_factory=list)
    context: dict[str, Any] | None = None
    final: dict[str, Any] | None = None  # final_answer fields
    response: str | None = None  # an llm call's reply
    loose_children: list[str] = field(default_factory=list)  # spawned outside any cell
    notes: list[str] = field(default_factory=list)  # warnings, limits, kernel deaths, denied spawns


def node_log(blocks: list[Block], node_id: str) -> NodeLog:
    """A node's transcript blocks grouped into turns and cells (the model holds them flat, for views)."""
    log = NodeLog(node_id)
    turn: TurnLog | None = None
    cells: dict[Any, CellLog] = {}
    for block in blocks:
        kind, data = block.kind, block.data
        if kind == "turn":
            turn = TurnLog(data["turn"], tokens_in=data["tokens_in"], tokens_out=data["tokens_out"],
                           cost_usd=data["cost"], duration_s=data["duration"], replayed=data.get("replayed", False))
            log.turns.append(turn)
        elif kind == "reply":
            if turn is None:
                turn = TurnLog(0)
                log.turns.append(turn)
            turn.text = block.text
        elif kind == "response":
            log.response = block.text
        elif kind == "cell":
            if turn is None:
                turn = TurnLog(0)
                log.turns.append(turn)
            status = data["status"]
            cell = CellLog(data["cell"], data.get("code", ""), status=None if status == "running" else status,
                           duration_s=data["duration"] or 0.0, truncated_chars=data["truncated"] or 0,
                           by=data.get("by"))
            turn.cells.append(cell)
            cells[data["cell"]] = cell
        elif kind == "output" and data["cell"] in cells:
            cells[data["cell"]].outputs.append((data["stream"], block.text))
        elif kind == "spawn" and data.get("first"):
            owner = cells.get(data.get("cell"))
            (owner.children if owner is not None else log.loose_children).append(data["child"])
        elif kind == "spawn" and data.get("phase") == "decided" and data.get("decision") != "approve":
            reason = f" ({data['reason']})" if data.get("reason") else ""
            log.notes.append(f"spawn {data.get('decision')} by {data.get('by')}{reason}")
        elif kind == "note":
            about = data.get("about")
            if about == "context":
                log.context = data.get("info")
            elif about == "retry":
                if turn is not None:
                    turn.retries.append(block.text)
            elif not data.get("run"):  # run-wide notes are the run's (RunState.notes)
                log.notes.append(block.text)
        elif kind == "answer":
            log.final = {"answer": block.text, "source": data.get("source")}
    return log


class _NodeLogs(Mapping[str, NodeLog]):
    """``SessionLog.nodes``: each node's NodeLog, grouped when asked for."""

    def __init__(self, model: RunModel) -> None:
        self._model = model

    def __getitem__(self, node_id: str) -> NodeLog:
        if node_id not in self._model.tree.nodes:
            raise KeyError(node_id)
        return node_log(self._model.transcripts.blocks(node_id), node_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._model.tree.nodes)

    def __len__(self) -> int:
        return len(self._model.tree.nodes)


class SessionLog:
    """A session file read whole: its run model, path and damaged lines."""

    def __init__(self, path: Path | None = None, model: RunModel | None = None) -> None:
        self.path = path
        self.model = model or RunModel()
        self.bad_lines: list[tuple[int, str]] = []
        self.nodes = _NodeLogs(self.model)

    @classmethod
    def read(cls, path: Path | str) -> "SessionLog":
        """Read a session file (raises FileNotFoundError or SessionFormatError)."""
        with SessionIndex.open(path) as index:
            log = cls(Path(path))
            log.model.extend(index.iter_events())
            log.bad_lines = list(index.bad_lines)
        return log

    # ---- facts for renderers ----------------------------------------------------------

    @property
    def events(self) -> int:
        return self.model.events

    @property
    def tree(self) -> CallTree:
        return self.model.tree

    @property
    def run(self) -> RunState:
        return self.model.run

    @property
    def root(self) -> CallNode | None:
        return self.model.root

    @property
    def answer(self) -> str | None:
        return self.model.answer

    def outcome(self) -> str:
        """How the run ended, in a few words."""
        run = self.run
        if not run.finished:
            return "unfinished (the file ends before run_finished: still running, or killed)"
        if run.error:
            return f"error: {run.error}"
        if run.answer is not None:
            return "answered"
        return f"stopped by {run.stopped_by or 'an unknown cause'} without an answer"

    def recorded(self) -> str:
        created = self.run.header.get("created")
        if not created:
            return "unknown date"
        try:
            when = _dt.datetime.fromisoformat(created)
            return when.strftime("%Y-%m-%d %H:%M %Z").strip()
        except ValueError:
            return str(created)


# ---- rendering ----------------------------------------------------------------------------


def usage_line(tree: CallTree, node: CallNode) -> str:
    """``12 calls · 37.5k tok · $0.0400 · 41.0s`` for a node and everything below it."""
    usage = tree.subtree_usage(node.id)
    parts = []
    if node.children:
        calls = tree.subtree_calls(node.id)
        parts.append(f"{calls} call{'s' if calls != 1 else ''}")
    parts += [f"{tokens(usage.total_tokens)} tok", f"${usage.cost_usd:.4f}", f"{node.elapsed(tree.now):.1f}s"]
    return " · ".join(parts)


def tree_lines(tree: CallTree, max_children: int | None = 12) -> list[str]:
    """The call tree drawn with box characters, each node with status and subtree usage."""
    out: list[str] = []

    def walk(node_id: str, prefix: str, last: bool, top: bool) -> None:
        node = tree.nodes[node_id]
        branch = "" if top else ("└─ " if last else "├─ ")
        label = node.label or one_line(node.prompt)
        out.append(f"{prefix}{branch}{node.kind} {node.id} [{node.status}] {label} · {usage_line(tree, node)}")
        children = node.children
        shown = children if max_children is None or len(children) <= max_children else children[:max_children]
        inner = prefix if top else prefix + ("   " if last else "│  ")
        for i, child in enumerate(shown):
            walk(child, inner, i == len(children) - 1, False)
        if len(shown) < len(children):
            out.append(f"{inner}└─ … {len(children) - len(shown)} more")

    for root in tree.roots:  # a session of several questions: one top-level entry each
        walk(root, "", True, True)
    return out


class SafeOut:
    """A text stream that makes everything written to it ``safe``: recorded text (a model's
    reply, a file name, a cell's output) never reaches a terminal or a report raw."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(safe(text))


class Renderer:
    """Walks a SessionLog; subclasses say how headings, code and output look."""

    def __init__(self, log: SessionLog, out: TextIO, *, max_output: int | None = 4000,
                 max_children: int | None = 12) -> None:
        self.log = log
        self.out = SafeOut(out)
        self.max_output = max_output
        self.max_children = max_children

    # primitives
    def heading(self, level: int, text: str, indent: str) -> None:
        raise NotImplementedError

    def code(self, text: str, lang: str, indent: str) -> None:
        raise NotImplementedError

    def para(self, text: str, indent: str) -> None:
        for line in text.rstrip("\n").splitlines() or [""]:
            self.out.write(f"{indent}{line}".rstrip() + "\n")

    def blank(self) -> None:
        self.out.write("\n")

    def begin_child(self, title: str, indent: str) -> str:
        """Start a nested section; returns the indent for its contents."""
        self.para(title, indent)
        return indent + "    "

    def end_child(self, indent: str) -> None:
        pass

    # the document
    def render(self) -> None:
        log = self.log
        self.summary()
        roots = log.tree.roots
        for index, root in enumerate(roots, start=1):  # the session's questions, in order
            node = log.tree.nodes[root]
            if len(roots) > 1:
                self.heading(2, f"Question {index}: {self._short(node.prompt)}", "")
            self.node_body(node, "", level=2 if len(roots) == 1 else 3)
        self.heading(2, "Call tree", "")
        self.code("\n".join(tree_lines(log.tree, self.max_children)), "text", "")
        self.blank()
        self.result()

    def summary(self) -> None:
        log = self.log
        run = log.run
        settings = run.settings
        limits = settings.get("limits") or {}
        self.heading(1, "rlm-tui session", "")
        rows = [("file", str(log.path) if log.path else "-"),
                ("recorded", f"{log.recorded()} · rlm-tui {run.header.get('rlm_tui_version', '?')} · "
                             f"format v{run.header.get('version', '?')}"),
                *([("question", run.question if run.started else "?")] if len(run.asked) < 2 else
                  [(f"question {i}", asked) for i, asked in enumerate(run.asked, start=1)]),
                ("input", run.path if run.started else "?")]
        if settings:
            rows.append(("models", f"root {settings.get('model')} · sub-calls {settings.get('sub_model')} · "
                                   f"max depth {limits.get('max_depth', '?')}"))
        if run.resumed_from:
            origin = run.resumed_from
            where = (f"at turn {resumed_at(origin)}" if origin.get("at_turn") is not None else
                     f"with a new question after its {origin.get('questions')} recorded")
            rows.append(("resumed", f"from {origin.get('path')} {where}"))
        self.table(rows)

    def table(self, rows: list[tuple[str, str]]) -> None:
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            self.para(f"{key.ljust(width)}  {value}", "")
        self.blank()

    def node_body(self, node: CallNode, indent: str, level: int) -> None:
        log = self.log
        nlog = log.nodes.get(node.id) or NodeLog(node.id)
        if nlog.context and node.kind == "root" and nlog.context.get("description"):
            self.para(nlog.context["description"], indent)
            self.blank()
        for turn in nlog.turns:
            usage = f"{tokens(turn.tokens_in + turn.tokens_out)} tok · ${turn.cost_usd:.4f}"
            if turn.duration_s is not None:
                usage += f" · {turn.duration_s:.1f}s"
            if turn.replayed:
                usage += " · replayed from the recording"
            self.heading(level + 1, f"{node.kind} {node.id} · turn {turn.number} · {usage}", indent)
            for retry in turn.retries:
                self.para(f"({retry})", indent)
            if turn.text.strip():
                self.reply(turn.text, indent)
            for cell in turn.cells:
                self.cell(cell, indent)
                for child in cell.children:
                    self.child(child, indent, level)
        for child in nlog.loose_children:
            self.child(child, indent, level)
        for note in nlog.notes:
            self.para(f"! {note}", indent)
        if nlog.final:
            self.heading(level + 1, f"{node.kind} {node.id} · final answer ({nlog.final.get('source')})", indent)
            self.para(str(nlog.final.get("answer", "")), indent)
            self.blank()

    def reply(self, text: str, indent: str) -> None:
        self.para(text, indent)
        self.blank()

    def cell(self, cell: CellLog, indent: str) -> None:
        status = cell.status or "did not finish"
        self.heading(0, f"{cell_name(cell.number, cell.by)} · {status} · {cell.duration_s:.2f}s", indent)
        if cell.by == "user":  # the model's code is in its reply; yours is in none
            self.code(safe(cell.code), "python", indent)
        output = safe(cell.output(), sgr="drop")  # a traceback's colours are noise in plain text
        if self.max_output is not None and len(output) > self.max_output:
            output = output[:self.max_output] + f"\n[... {len(output) - self.max_output:,} more characters]"
        if cell.truncated_chars:
            output += f"\n[the model saw this cut: {cell.truncated_chars:,} characters over the limit]"
        if output.strip():
            self.code(output, "text", indent)
        else:
            self.para("(no output)", indent)
        self.blank()

    def child(self, node_id: str, indent: str, level: int) -> None:
        tree = self.log.tree
        node = tree.nodes.get(node_id)
        if node is None:
            return
        title = (f"↳ {node.kind} {node.id} [{node.status}] {node.label or one_line(node.prompt)} · "
                 f"{usage_line(tree, node)}")
        inner = self.begin_child(title, indent)
        if node.kind in ("root", "rlm"):
            self.node_body(node, inner, level + 1)
        elif node.kind == "batch":
            children = node.children
            shown = children if self.max_children is None else children[:self.max_children]
            for child in shown:
                self.child(child, inner, level + 1)
            if len(shown) < len(children):
                self.para(f"… {len(children) - len(shown)} more", inner)
            if node.result:
                self.para(f"→ {node.result}", inner)
        else:
            response = (self.log.nodes.get(node_id) or NodeLog(node_id)).response
            if node.prompt.strip() != (node.label or "").strip():
                self.para(f"prompt: {self._short(node.prompt)}", inner)
            if node.error:
                self.para(f"error: {node.error}", inner)
            else:
                self.para(f"→ {self._short(response if response is not None else node.result)}", inner)
        self.end_child(indent)

    @staticmethod
    def _short(text: str, width: int = 200) -> str:
        flat = " ".join(text.split())
        return flat if len(flat) <= width else flat[: width - 1] + "…"

    def result(self) -> None:
        log = self.log
        self.heading(2, "Result", "")
        rows = [("outcome", log.outcome())]
        run = log.run
        usage = run.usage
        total = log.tree.total_usage()
        tokens_in = usage.get("tokens_in", total.tokens_in)
        tokens_out = usage.get("tokens_out", total.tokens_out)
        cost = usage.get("cost_usd", total.cost_usd)
        calls = run.calls if run.calls is not None else (log.tree.subtree_calls(log.tree.root) if log.tree.root else 0)
        rows.append(("usage", f"{tokens_in + tokens_out:,} tokens ({tokens_in:,} in / {tokens_out:,} out) · "
                              f"${cost:.4f} · {calls} sub-calls · "
                              f"{run.duration_s or log.tree.now:.1f}s"))
        for note in run.notes:
            rows.append(("note", note))
        for _, why in log.bad_lines:
            rows.append(("damaged", why))
        self.table(rows)
        self.heading(2, "Answer", "")
        answer = log.answer
        self.para(answer if answer is not None else "(none)", "")


class TextRenderer(Renderer):
    """Plain text for a terminal or a pipe."""

    def heading(self, level: int, text: str, indent: str) -> None:
        if level == 1:
            self.out.write(f"{indent}{text}\n{indent}{'=' * len(text)}\n")
        elif level <= 0 or level > 4:
            self.out.write(f"{indent}-- {text} --\n")
        else:
            bar = {2: "══", 3: "━━", 4: "──"}[level]
            self.out.write(f"{indent}{bar} {text} {bar}\n")

    def code(self, text: str, lang: str, indent: str) -> None:
        self.para(text, indent + ("  " if lang == "text" else ""))


def render_text(log: SessionLog, out: TextIO, **options: Any) -> None:
    TextRenderer(log, out, **options).render()
