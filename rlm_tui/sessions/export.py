"""``rlm-tui export``: a session as a Markdown report or a Jupyter notebook.

The Markdown report is the headless transcript's walk (``transcript.Renderer``)
in Markdown: the question and settings, each turn's reply, code and output,
sub-calls in collapsible ``<details>`` blocks, the tree with usage, the answer.
The notebook holds the root kernel's cells with their recorded outputs
(stdout/stderr streams, tracebacks as error outputs, results), each turn's
prose as a Markdown cell, and is validated with nbformat before it is written.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

from ..core.safe_text import strip_ansi
from ..model.fmt import tokens
from .transcript import CellLog, Renderer, SessionLog, usage_line

_CODE_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*(repl|python3?|py)\b[^\n]*\n.*?^[ \t]*\1[ \t]*$\n?",
                         re.MULTILINE | re.DOTALL | re.IGNORECASE)


def _fence(text: str, lang: str = "") -> str:
    """A fenced block that the text itself cannot close."""
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.rstrip(chr(10))}\n{ticks}\n"


class MarkdownRenderer(Renderer):
    """The transcript walk as Markdown (nesting with <details>, not indentation)."""

    def heading(self, level: int, text: str, indent: str) -> None:
        if level <= 0:
            self.out.write(f"**{text}**\n\n")
        else:
            self.out.write(f"{'#' * min(level, 6)} {text}\n\n")

    def code(self, text: str, lang: str, indent: str) -> None:
        self.out.write(_fence(text, "" if lang == "text" else lang) + "\n")

    def para(self, text: str, indent: str) -> None:
        self.out.write(text.rstrip("\n") + "\n\n")

    def blank(self) -> None:
        pass

    def reply(self, text: str, indent: str) -> None:
        # A blockquote keeps an unterminated fence in the model's reply from swallowing the report.
        quoted = "\n".join(f"> {line}" if line else ">" for line in text.rstrip("\n").splitlines())
        self.out.write(quoted + "\n\n")

    def begin_child(self, title: str, indent: str) -> str:
        self.out.write(f"<details><summary>{html.escape(title)}</summary>\n\n")
        return indent + "  "

    def end_child(self, indent: str) -> None:
        self.out.write("</details>\n\n")

    def table(self, rows: list[tuple[str, str]]) -> None:
        self.out.write("| | |\n|---|---|\n")
        for key, value in rows:
            cell = " ".join(str(value).split()).replace("|", "\\|")
            self.out.write(f"| **{key}** | {cell} |\n")
        self.out.write("\n")


def to_markdown(log: SessionLog, *, full: bool = False) -> str:
    out = io.StringIO()
    MarkdownRenderer(log, out, max_output=None if full else 20_000, max_children=None if full else 25).render()
    return out.getvalue()


# ---- notebook ---------------------------------------------------------------------------------


def _prose(reply: str) -> str:
    """A reply without its runnable code blocks (those become the code cells)."""
    return re.sub(r"\n{3,}", "\n\n", _CODE_FENCE.sub("", reply)).strip()


def _outputs(cell: CellLog) -> list[Any]:
    from nbformat.v4 import new_output

    outputs: list[Any] = []
    for stream, text in cell.outputs:
        if stream in ("stdout", "stderr"):
            last = outputs[-1] if outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == stream:
                last["text"] += text
            else:
                outputs.append(new_output("stream", name=stream, text=text))
        elif stream == "error":
            lines = [line for line in strip_ansi(text).strip().splitlines() if line.strip()]
            last_line = lines[-1] if lines else "Error"
            ename, _, evalue = last_line.partition(": ")
            ename = ename.strip() if ename.strip().isidentifier() or "." in ename else "Error"
            outputs.append(new_output("error", ename=ename, evalue=evalue.strip() or last_line,
                                      traceback=text.rstrip("\n").split("\n")))
        else:  # result (execute_result or display_data as text)
            outputs.append(new_output("execute_result", data={"text/plain": text.rstrip("\n")},
                                      metadata={}, execution_count=cell.number))
    return outputs


def to_notebook(log: SessionLog) -> Any:
    """The root kernel's cells with their outputs, as a validated nbformat v4 notebook."""
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    run = log.run
    settings = run.settings
    question = (run.asked[0] if run.asked else run.question) if run.started else None
    roots = log.tree.roots
    root = log.root if len(roots) == 1 else None  # a session of several questions: usage per question below
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["rlm_tui"] = {"session": str(log.path) if log.path else None, "question": question,
                              "model": settings.get("model"), "answer": log.answer, "outcome": log.outcome(),
                              "questions": list(run.asked)}
    intro = [f"# {question if question is not None else 'rlm-tui session'}", "",
             f"- **input**: `{run.path if run.started else '?'}`",
             f"- **root model**: `{settings.get('model', '?')}` · sub-calls `{settings.get('sub_model', '?')}`",
             f"- **recorded**: {log.recorded()} · session `{log.path.name if log.path else '?'}`",
             f"- **outcome**: {log.outcome()}"]
    if root is not None:
        intro.append(f"- **usage**: {usage_line(log.tree, root)}")
    intro += ["", "These are the root model's cells with the outputs they had in the run. They ran in a "
              "kernel where `context` held the input and `llm_query`, `rlm_query` and friends called "
              "models; to run them again here, define those first (or use `rlm-tui resume`)."]
    nb.cells.append(new_markdown_cell("\n".join(intro)))
    for index, root_id in enumerate(roots, start=1):  # the session's questions, in order
        node = log.tree.nodes[root_id]
        if len(roots) > 1:
            nb.cells.append(new_markdown_cell(f"## Question {index}\n\n{node.prompt}\n\n"
                                              f"*{usage_line(log.tree, node)}*"))
        _root_cells(log, root_id, nb.cells, log.outcome() if len(roots) == 1 else node.error or node.status)
    if not roots and log.answer is None:
        nb.cells.append(new_markdown_cell(f"## No answer\n\n{log.outcome()}"))
    nbformat.validate(nb)
    return nb


def _root_cells(log: SessionLog, root_id: str, cells: list[Any], why_none: str) -> None:
    """One question's turns: the reply's prose, each cell with its outputs and sub-calls, its answer."""
    from nbformat.v4 import new_code_cell, new_markdown_cell

    node_log = log.nodes.get(root_id)
    for turn in node_log.turns if node_log is not None else []:
        prose = _prose(turn.text)
        usage = f"{tokens(turn.tokens_in + turn.tokens_out)} tok · ${turn.cost_usd:.4f}"
        cells.append(new_markdown_cell(f"### Turn {turn.number}\n\n*{usage}*" + (f"\n\n{prose}" if prose else "")))
        for cell in turn.cells:
            code = new_code_cell(cell.code.rstrip("\n"), execution_count=cell.number, outputs=_outputs(cell))
            code.metadata["rlm_tui"] = {"status": cell.status, "duration_s": cell.duration_s,
                                        "subcalls": list(cell.children), **({"by": cell.by} if cell.by else {})}
            if cell.by == "user":
                cells.append(new_markdown_cell("*You ran the next cell yourself (not the model).*"))
            cells.append(code)
            if cell.children:
                cells.append(new_markdown_cell("Sub-calls of this cell:\n\n" + "\n".join(
                    _subcall_line(log, child) for child in cell.children)))
    if node_log is not None and node_log.final:
        cells.append(new_markdown_cell(f"## Answer ({node_log.final.get('source')})\n\n"
                                       f"{node_log.final.get('answer', '')}"))
    else:
        cells.append(new_markdown_cell(f"## No answer\n\n{why_none}"))


def _subcall_line(log: SessionLog, node_id: str) -> str:
    node = log.tree.nodes.get(node_id)
    if node is None:
        return f"- {node_id}"
    label = " ".join((node.label or node.prompt).split())[:100]
    return f"- `{node.kind} {node.id}` [{node.status}] {label} · {usage_line(log.tree, node)}"
