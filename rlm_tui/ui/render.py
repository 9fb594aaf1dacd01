"""Rich renderables for transcript blocks and tree labels, coloured from the active theme.

Kept apart from the widgets so the same look serves the live pane, the tree
and the final-answer panel, and so a theme switch is one new ``Palette``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.text import Text
from rich.theme import Theme as RichTheme
from textual.color import Color
from textual.theme import Theme

from . import fmt
from ..model.transcript import Block

STATUS_ICONS = {"waiting": "⏸", "queued": "○", "running": "●", "done": "✓", "denied": "⊘",
                "killed": "✖", "failed": "✗", "limit": "⚠"}
#: Longest prompt shown in full in a header; the rest is summarised.
PROMPT_CHARS = 20_000
_CODE_LANGS = {"repl": "python", "python": "python", "py": "python", "python3": "python"}
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n?", re.MULTILINE)


@dataclass(frozen=True)
class Palette:
    """The theme's colours as Rich colour strings, plus the Pygments style for code."""

    dark: bool
    code_theme: str
    primary: str
    secondary: str
    accent: str
    warning: str
    error: str
    success: str
    foreground: str
    muted: str
    code_bg: str

    @classmethod
    def from_theme(cls, theme: Theme, code_theme: str | None = None) -> "Palette":
        colors = theme.to_color_system().generate()
        foreground = Color.parse(colors["foreground"])
        background = Color.parse(colors["background"])
        return cls(dark=theme.dark, code_theme=code_theme or ("monokai" if theme.dark else "friendly"),
                   primary=colors["primary"], secondary=colors["secondary"], accent=colors["accent"],
                   warning=colors["warning"], error=colors["error"], success=colors["success"],
                   foreground=foreground.hex, muted=foreground.blend(background, 0.45).hex,
                   code_bg=colors["surface"])

    def markdown_styles(self) -> RichTheme:
        """Rich's Markdown styles in the theme's colours (its defaults are cyan on black)."""
        heading = f"bold {self.primary}"
        return RichTheme({
            "markdown.code": f"bold {self.accent}", "markdown.code_block": f"{self.foreground} on {self.code_bg}",
            "markdown.block_quote": f"italic {self.muted}", "markdown.list": self.foreground,
            "markdown.item.bullet": f"bold {self.accent}", "markdown.item.number": self.accent,
            "markdown.hr": self.muted, "markdown.h1": f"{heading} underline", "markdown.h1.border": self.primary,
            "markdown.h2": f"{heading} underline", "markdown.h3": heading, "markdown.h4": heading,
            "markdown.h5": heading, "markdown.h6": heading, "markdown.link": self.primary,
            "markdown.link_url": f"underline {self.muted}", "markdown.table.border": self.muted,
            "markdown.table.header": f"bold {self.foreground}", "markdown.kbd": f"bold {self.accent}"})

    def status(self, status: str) -> str:
        """The colour of a node status, shared by tree, transcript and panel."""
        return {"waiting": self.warning, "queued": self.muted, "running": self.primary,
                "done": self.success, "denied": self.accent, "killed": self.error,
                "failed": self.error, "limit": self.warning}.get(status, self.foreground)


def split_fences(text: str) -> list[tuple[str, str | None]]:
    """Prose and fenced code, in order: (text, None) or (code, language); an open fence runs to the end."""
    parts: list[tuple[str, str | None]] = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            parts.append((text[pos:], None))
            break
        parts.append((text[pos:opening.start()], None))
        fence, lang = opening.group(1), opening.group(2).lower()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$\n?", re.MULTILINE)
        end = closing.search(text, opening.end())
        body_end = end.start() if end else len(text)
        parts.append((text[opening.end():body_end].rstrip("\n"), lang or "text"))
        if end is None:
            break
        pos = end.end()
    return [(chunk, lang) for chunk, lang in parts if chunk.strip() or lang is not None]


def code(text: str, palette: Palette, lang: str = "python", padding: int | tuple[int, int] = 0) -> RenderableType:
    """Syntax-highlighted code in the theme's code style (a reply's code block, a cell waiting at its step)."""
    from rich.syntax import Syntax  # here: pygments costs ~10 ms, and the first frame shows no code

    return Syntax(text, lang, theme=palette.code_theme, background_color=palette.code_bg, word_wrap=True,
                  padding=padding)


def reply(text: str, palette: Palette) -> RenderableType:
    """A model reply: Markdown prose with syntax-highlighted code blocks."""
    from rich.markdown import Markdown  # here: markdown-it costs ~30 ms, off the path to the first frame

    pieces: list[RenderableType] = []
    for chunk, lang in split_fences(text):
        if lang is None:
            pieces.append(Markdown(chunk.strip("\n"), code_theme=palette.code_theme))
        else:
            pieces.append(code(chunk, palette, _CODE_LANGS.get(lang, lang), padding=(0, 1)))
    return Group(*pieces)


def turn_rule(data: dict, palette: Palette) -> RenderableType:
    parts = [f"turn {data.get('turn', '?')}"]
    if data.get("tokens_in") or data.get("tokens_out"):
        parts.append(f"{fmt.tokens(data['tokens_in'])} in / {fmt.tokens(data['tokens_out'])} out")
        parts.append(fmt.dollars(data.get("cost", 0.0)))
    if data.get("duration") is not None:
        parts.append(fmt.seconds(data["duration"]))
    rule = Rule(Text(" " + " · ".join(parts) + " ", style=f"bold {palette.secondary}"),
                style=palette.muted, align="left")
    return Padding(rule, (1, 0, 0, 0))


def header(block: Block, palette: Palette) -> RenderableType:
    data = block.data
    kind = data.get("kind", "")
    title = {"root": "root RLM", "rlm": "child RLM", "llm": "llm call",
             "batch": f"batch of {data.get('size') or '?'} prompts"}.get(kind, kind)
    line = Text.assemble((title, f"bold {palette.primary}"),
                         (f"  depth {data.get('depth', 0)}" if kind != "batch" else "", palette.muted),
                         (f"  {data['model']}" if data.get("model") else "", palette.muted))
    if kind == "batch" or not block.text:
        return line
    label = "Question" if kind == "root" else "Prompt"
    prompt = block.text
    if len(prompt) > PROMPT_CHARS:
        prompt = prompt[:PROMPT_CHARS] + f"\n… {len(prompt) - PROMPT_CHARS:,} more characters"
    return Group(line, Text(label, style=f"bold {palette.foreground}"),
                 Padding(Text(prompt), (0, 0, 1, 2)))


def cell_line(data: dict, palette: Palette) -> Text:
    status = data.get("status", "running")
    name = fmt.cell_name(data.get("cell", "?"), data.get("by"))
    if status == "running":
        return Text(f"▶ {name} running…", style=palette.primary)
    color = palette.success if status == "ok" else palette.error
    icon = "✓" if status == "ok" else "✗"
    text = Text(f"{icon} {name}", style=f"bold {color}")
    if status != "ok":
        text.append(f" {status}", style=color)
    if data.get("duration") is not None:
        text.append(f" · {fmt.seconds(data['duration'])}", style=palette.muted)
    if data.get("truncated"):
        text.append(f" · model saw output cut by {data['truncated']:,} chars", style=palette.muted)
    return text


def user_cell(data: dict, palette: Palette) -> RenderableType:
    """A cell you ran: its code is in no model reply, so it is shown here, under a rule in the accent colour."""
    rule = Rule(Text(" your cell ", style=f"bold {palette.accent}"), style=palette.accent, align="left")
    return Group(Padding(rule, (1, 0, 0, 0)), code(data.get("code", "").rstrip("\n"), palette, padding=(0, 1)),
                 cell_line(data, palette))


def output(block: Block, palette: Palette) -> RenderableType:
    stream = block.data.get("stream", "stdout")
    style = {"stderr": palette.warning, "error": palette.error}.get(stream, palette.foreground)
    text = Text.from_ansi(block.text.rstrip("\n"), style=style)
    if stream == "result":
        text = Text.assemble(("Out: ", palette.muted), text)
    return Padding(text, (0, 0, 0, 2))


DECISION_WORDS = {"approve": "approved", "edit": "edited and approved", "deny": "denied", "kill": "killed",
                  "open": "opened to decide prompt by prompt"}


def spawn(block: Block, palette: Palette) -> Text:
    data = block.data
    tag = data.get("kind", "")
    phase = data.get("phase")
    if phase == "waiting":
        return Text.assemble(("⏸ ", palette.warning), (f"{tag} ", "bold"), (block.text, palette.foreground),
                             ("  waiting for approval", palette.warning))
    if phase == "decided":
        decision = data.get("decision", "")
        runs = decision in ("approve", "edit", "open")
        words = DECISION_WORDS.get(decision, decision)
        reason = f": {data['reason']}" if data.get("reason") else ""
        recorded = " (as recorded)" if data.get("replayed") else ""  # rlm-tui resume: not asked again
        return Text.assemble(("  ✓ " if runs else "  ⊘ ", palette.success if runs else palette.error),
                             (f"{words} by {data.get('by', '?')}{recorded}{reason}", palette.muted))
    if phase == "started":
        return Text.assemble(("↳ ", palette.primary), (f"{tag} ", "bold"), (block.text, palette.foreground))
    status = data.get("status", "done")
    color = palette.status(status)
    text = Text.assemble((f"↲ {STATUS_ICONS.get(status, '?')} ", color), (f"{tag} ", "bold"), (status, color),
                         (f" · {fmt.tokens(data.get('tokens', 0))} tok · {fmt.dollars(data.get('cost', 0.0))}"
                          f" · {fmt.seconds(data.get('elapsed', 0.0))}", palette.muted))
    result = " ".join((data.get("result") or "").split())
    if result:
        text.append(f"  {result[:160]}", style=palette.foreground)
    return text


def note(block: Block, palette: Palette) -> Text:
    level = block.data.get("level", "info")
    icon, color = {"info": ("ℹ", palette.muted), "warning": ("⚠", palette.warning),
                   "error": ("✗", palette.error)}[level]
    return Text(f"{icon} {block.text}", style=color)


def answer_panel(answer: str, palette: Palette, title: str = "FINAL answer") -> Panel:
    from rich.markdown import Markdown

    return Panel(Markdown(answer or "(empty answer)", code_theme=palette.code_theme),
                 title=Text(title, style=f"bold {palette.success}"), title_align="left",
                 border_style=palette.success)


def end_line(block: Block, palette: Palette) -> Text:
    status = block.data.get("status", "done")
    color = palette.status(status)
    text = Text(f"■ {status} after {fmt.seconds(block.data.get('elapsed', 0.0))}", style=f"bold {color}")
    if status != "done" and block.text:
        text.append(f": {block.text}", style=color)
    return text


def block(item: Block, palette: Palette) -> RenderableType:
    """Any transcript block as a Rich renderable."""
    kind = item.kind
    if kind == "header":
        return header(item, palette)
    if kind == "turn":
        return turn_rule(item.data, palette)
    if kind == "reply":
        return reply(item.text, palette)
    if kind == "cell":
        return user_cell(item.data, palette) if item.data.get("by") == "user" else cell_line(item.data, palette)
    if kind == "output":
        return output(item, palette)
    if kind == "spawn":
        return spawn(item, palette)
    if kind == "response":
        return Group(Text("Response", style=f"bold {palette.foreground}"), Padding(Text(item.text), (0, 0, 0, 2)))
    if kind == "answer":
        return answer_panel(item.text, palette, "Your answer (your cell set it)" if item.data.get("source") == "user"
                            else "FINAL answer")
    if kind == "end":
        return end_line(item, palette)
    return note(item, palette)
