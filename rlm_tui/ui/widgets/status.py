"""Header line (question, scripted badge) and status bar (models, depth, budgets, kernel, session)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from ...model.tree import CallTree
from .. import fmt
from ..render import Palette
from ...model.state import RunState, run_totals

#: A budget this full is shown in the warning colour; a full one in the error colour.
NEAR_LIMIT = 0.8
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SEPARATOR = " │ "


class RunHeader(Static):
    """``rlm-tui · <question> · <path>`` with a badge when the run is scripted or replayed."""

    DEFAULT_CSS = """
    RunHeader {
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown = Text()

    def show(self, run: RunState, palette: Palette, badge: str | None) -> None:
        text = Text.assemble(("rlm-tui", f"bold {palette.primary}"), "  ", no_wrap=True, overflow="ellipsis")
        if badge:
            text.append(f" {badge} ", style=f"bold reverse {palette.accent}")
            text.append("  ")
        question = " ".join(run.question.split())
        text.append(question or "waiting for the run to start…", style=f"bold {palette.foreground}")
        if run.path:
            text.append(f"  on {fmt.home_path(run.path)}", style=palette.muted)
        if text != self._shown:  # called every redraw; one line high, so a change needs no layout pass
            self._shown = text
            self.update(text, layout=False)


class StatusBar(Widget):
    """One line of run facts; budgets turn yellow near their limit and red at it.

    The session path is fitted at paint time, when the bar's width is known.
    """

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._facts = Text()
        self._path: Text | None = None

    def show(self, run: RunState, tree: CallTree, now: float, palette: Palette, frame: int,
             waiting: bool = False) -> None:
        """``waiting``: no question asked yet; the question box takes the first."""
        self._facts = (Text("waiting for your question: type it in the box below, enter sends it",
                            style=palette.primary) if waiting and not tree.nodes
                       else self._run_facts(run, tree, now, palette, frame))
        self._path = Text(fmt.home_path(run.session_path), style=palette.muted) if run.session_path else None
        self.refresh()

    def render(self) -> Text:
        """The facts, then the session path if it fits, else its file name, else nothing (the panel has it)."""
        text = self._facts.copy()
        if self._path is not None:
            room = self.size.width - text.cell_len - len(SEPARATOR)
            for shown in (self._path, Text(Path(self._path.plain).name, style=self._path.style)):
                if shown.cell_len <= room:
                    text.append(SEPARATOR, style=self._path.style)
                    text.append_text(shown)
                    break
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text

    def _run_facts(self, run: RunState, tree: CallTree, now: float, palette: Palette, frame: int) -> Text:
        limits = run.limits
        sep = (SEPARATOR, palette.muted)
        text = Text()
        if not tree.nodes:
            text.append(f"{SPINNER[frame % len(SPINNER)]} starting the engine: loading the model client, "
                        f"starting a Python kernel…", style=palette.primary)
            return text
        settings = run.settings
        model, sub = settings.get("model", ""), settings.get("sub_model", "")
        text.append(model, style=f"bold {palette.foreground}")
        if sub and sub != model:
            text.append(f" → {sub}", style=palette.foreground)
        root = tree.nodes.get(tree.root or "")
        running = [n.depth for n in tree.nodes.values() if n.status == "running"]
        depth = max(running or [n.depth for n in tree.nodes.values()])
        text.append_text(Text.assemble(sep, (f"depth {depth}/{limits.get('max_depth', '?')}", palette.foreground),
                                       (f" · turn {root.turns if root else 0}/{limits.get('max_iterations', '?')}",
                                        palette.foreground)))
        if len(run.asked) > 1:
            text.append(f" · question {len(run.asked)}", style=palette.foreground)
        usage, calls = run_totals(tree)
        elapsed = run.duration_s if run.duration_s is not None else (root.elapsed(now) if root else 0.0)
        budgets = [("tok", usage.total_tokens, limits.get("max_tokens"), fmt.tokens),
                   ("", usage.cost_usd, limits.get("budget"), fmt.dollars),
                   ("calls", calls, limits.get("max_subcalls"), str),
                   ("", elapsed, limits.get("timeout"), fmt.seconds)]
        for name, used, limit, show in budgets:
            text.append(*sep)
            shown = f"{show(used)}/{show(limit)}" if limit else show(used)
            text.append(f"{name} {shown}".strip(), style=self._budget_style(used, limit, palette))
        kernel = run.kernel_summary()
        kernel_color = {"busy": palette.primary, "idle": palette.success}.get(kernel, palette.warning)
        text.append_text(Text.assemble(sep, ("kernel ", palette.muted), (kernel, kernel_color)))
        backend = run.backend
        if backend.get("warning"):  # --sandbox auto found no sandbox: the code has the user's rights
            text.append(f" · {backend.get('name', '')} NOT SANDBOXED", style=f"bold {palette.error}")
        elif backend.get("name"):
            text.append(f" · {backend['name']}", style=palette.muted)
        return text

    @staticmethod
    def _budget_style(used: float, limit: float | None, palette: Palette) -> str:
        if not limit:
            return palette.foreground
        if used >= limit:
            return f"bold {palette.error}"
        if used >= NEAR_LIMIT * limit:
            return f"bold {palette.warning}"
        return palette.foreground
