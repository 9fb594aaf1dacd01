"""The rlm-tui Textual app: call tree, transcript, status, final answer.

The app is fed events (``feed``), from an ``EventSource`` polled 30 times a
second or directly by tests; it folds them into one ``RunModel`` (``model.run``)
and repaints what changed once per batch. It never asks the
engine for anything, so live runs and (later) replays look the same.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any, Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.markup import escape as escape_markup
from textual.containers import Horizontal
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Input, Tree

from ..core.safe_text import safe, safe_data
from ..core import events as ev
from ..model.questions import Questions
from ..model.run import RunModel
from ..model.state import RunState
from ..model.transcript import Transcripts
from ..model.tree import ACTIVE, CallTree
from . import prefs
from .help import HelpScreen, key_sections
from .render import Palette
from .source import EventSource
from .steering import STEERING_BINDINGS, SteeringMixin
from .themes import DEFAULT_THEME, load_themes
from .widgets.answer import AnswerPanel
from .widgets.approval import ApprovalPanel
from .widgets.call_tree import CallTreeView
from .widgets.footer import KeysFooter
from .widgets.question_box import QuestionBox
from .widgets.status import RunHeader, StatusBar
from .widgets.transcript_view import TranscriptView

FRAME_S = 1 / 30
#: Events in one frame's batch that start a flood: until FLOOD_FRAME_S after the last such batch,
#: the panes are redrawn at most every FLOOD_FRAME_S.
FLOOD_EVENTS = 100
FLOOD_FRAME_S = 1.0
QUIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: After a quit signal and the run's clean stop, how long restoring the terminal may take. A terminal
#: that is gone (its window closed, tmux killed) blocks Textual's writes for ever, its loop with them.
EXIT_GRACE_S = 5.0
#: Ctrl+C quits only when pressed twice within this many seconds.
CTRL_C_WINDOW_S = 2.0


def shown(event: ev.Event) -> ev.Event:
    """An event as the app may draw it: fields of the wrong type repaired, every string made
    ``safe`` (cell output keeps its SGR colour for ``Text.from_ansi``). Everything the app shows
    (tree, transcripts, approvals, answer, status) is folded from events, so this one pass, where
    events enter, keeps terminal control sequences from a model, a repository or a file out."""
    data = dict(event.data)
    ev.coerce_data(event.kind, data)
    text = data.get("text") if event.kind == ev.CELL_OUTPUT else None
    data = safe_data(data)
    if isinstance(text, str):
        data["text"] = safe(text, sgr="keep")
    return ev.Event(safe(event.kind), safe(event.node) if event.node is not None else None,
                    safe(event.parent) if event.parent is not None else None, data, event.seq, event.t)


class RlmApp(SteeringMixin, App[None]):
    """Watch a Recursive Language Model run: what the root wrote, what ran, what it spawned and cost."""

    TITLE = "rlm-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", tooltip="Quit: stop the run, shut down its kernels, close the session file"),
        Binding("ctrl+c", "ctrl_c", "Quit", show=False, tooltip="Quit when pressed twice within 2 seconds"),
        Binding("question_mark", "help", "Keys", tooltip="This list of keys"),
        Binding("r", "show_root", "Root", tooltip="Show the root model's transcript"),
        Binding("a", "toggle_answer", "Answer", tooltip="Show or hide the final-answer panel"),
        Binding("t", "change_theme", "Theme", tooltip="Pick a colour theme (remembered for next time)"),
        Binding("slash", "ask", "Ask", tooltip="Type the next question (between questions; enter sends it, "
                "esc leaves the box)"),
        Binding("tab", "app.focus_next", "Switch pane", tooltip="Move between the call tree and the transcript"),
        *STEERING_BINDINGS,  # live runs only; while calls wait for approval, "a" approves them all
    ]

    def __init__(self, source: EventSource | None = None, *, theme: str | None = None,
                 remember_theme: bool = True) -> None:
        super().__init__()
        self.source = source
        self.model = RunModel()
        self._requested_theme = theme
        self._remember_theme = remember_theme
        self._startup_theme: str | None = None
        self._code_themes: dict[str, str] = {}
        self._theme_errors: list[str] = []
        self._palette: Palette | None = None
        self._dirty: dict[str, None] = {}  # node ids changed since the last render, in arrival order
        self._render_pending = False
        self._last_render = 0.0  # monotonic time of the last redraw of the panes (see feed)
        self._flood_until = 0.0  # monotonic time until which redraws are spaced out (see schedule_render)
        self._last_event_clock = time.monotonic()
        self._frame = 0
        self._last_ctrl_c = 0.0
        self._stopping: asyncio.Task[None] | None = None
        self._quit_signal: int | None = None  # SIGTERM or SIGHUP asked us to quit
        self._old_handlers: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The session takes follow-up questions (EngineSource.ask): the question box is used.
        self._asks = bool(getattr(source, "ask_again", False))
        self._answered: str | None = None  # the root whose answer the panel shows (between questions)
        self._load_themes()

    # --- the run model's parts, by the names the widgets and tests use -------------------

    @property
    def calls(self) -> CallTree:
        return self.model.tree

    @property
    def transcripts(self) -> Transcripts:
        return self.model.transcripts

    @property
    def run_state(self) -> RunState:
        return self.model.run

    @property
    def questions(self) -> Questions:
        return self.model.questions

    # --- setup ------------------------------------------------------------------

    def _load_themes(self) -> None:
        files, self._theme_errors = load_themes()
        for loaded in files.values():
            self.register_theme(loaded.theme)
            self._code_themes[loaded.theme.name] = loaded.code_theme
        wanted = self._requested_theme or prefs.load_theme_name() or DEFAULT_THEME
        if wanted not in self.available_themes:
            self._theme_errors.append(f"theme {wanted!r} not found; using {DEFAULT_THEME}")
            wanted = DEFAULT_THEME
        self._startup_theme = wanted
        self.theme = wanted
        self._palette = self._palette_for(self.current_theme)

    def _palette_for(self, theme: Theme) -> Palette:
        return Palette.from_theme(theme, self._code_themes.get(theme.name))

    @property
    def palette(self) -> Palette:
        assert self._palette is not None
        return self._palette

    def compose(self) -> ComposeResult:
        # Kept as attributes: the frame timer must reach them while another screen (help) is on top.
        self.header_bar = RunHeader(id="header")
        self.tree_view = CallTreeView(self.calls, self.palette, id="calls")
        self.transcript_view = TranscriptView(self.palette, id="transcript")
        self.answer_panel = AnswerPanel(id="answer")
        self.approval_panel = ApprovalPanel(id="approval")
        self.question_box = QuestionBox(id="question")
        self.status_bar = StatusBar(id="status")
        yield self.header_bar
        with Horizontal(id="panes"):
            yield self.tree_view
            yield self.transcript_view
        yield self.approval_panel
        yield self.answer_panel
        yield self.question_box
        yield self.status_bar
        yield KeysFooter()

    def on_mount(self) -> None:
        self.tree_view.border_title = "Calls"
        self.tree_view.focus()
        self._set_transcript_title()
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        for message in self._theme_errors:
            self.notify(message, title="Theme", severity="warning", timeout=8)
        self._refresh_status()
        if self.waiting_for_question:
            self.question_box.open(first=True)
        self.set_interval(FRAME_S, self._tick)
        if self.source is not None:
            self.call_after_refresh(self.source.start)  # the first frame is already on screen
            self._loop = asyncio.get_running_loop()
            for signum in QUIT_SIGNALS:  # a closed terminal or `kill` quits like q: kernels shut down
                self._old_handlers[signum] = signal.signal(signum, self._on_quit_signal)

    def on_unmount(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()

    # --- events in -------------------------------------------------------------------

    def feed(self, events: Iterable[ev.Event]) -> None:
        """Fold events into the models; the screen catches up once per batch, less often in a flood.

        A frame costs the UI thread milliseconds of Textual's work, and that thread shares the GIL
        with the engine's: while hundreds of events arrive per frame (a big fan-out), the panes are
        redrawn once a second instead of every frame, so the engine is slowed less by them. Events
        no part of the model reads (a prompt's lm_started) are counted, not sanitised and folded.
        """
        model, reads, count = self.model, self.model.reads, 0
        for count, event in enumerate(events, start=1):
            if not reads(event.kind, event.node):  # e.g. each prompt's lm_started: a quarter of a batch's events
                model.skip()
                continue
            node = model.apply(shown(event))
            if node is not None:
                self._dirty[node.id] = None
        self._last_event_clock = time.monotonic()
        self.schedule_render(count)

    def schedule_render(self, count: int = 0) -> None:
        """Redraw what changed (``count`` events came in) at the next chance, later in a flood.

        A flood lasts FLOOD_FRAME_S past its last big batch: the frames between big batches of a
        fan-out bring fewer events, and redrawing at each of them cost the engine as much again.
        """
        clock = time.monotonic()
        if count >= FLOOD_EVENTS:
            self._flood_until = clock + FLOOD_FRAME_S
        if not self._render_pending:
            self._render_pending = True
            wait = self._last_render + FLOOD_FRAME_S - clock
            if clock < self._flood_until and wait > 0:
                self.set_timer(wait, self._render_changes)
            else:
                self.call_later(self._render_changes)

    def _tick(self) -> None:
        """Per frame: take what the source has; once a second let running clocks tick."""
        self._frame += 1
        if self.source is not None:
            events = self.source.drain()
            if events:
                self.feed(events)
        if not self.calls.nodes and self._frame % 3 == 0:
            self._refresh_status()  # the "starting" spinner
        elif self._frame % 30 == 0 and self._clock_runs():
            self.tree_view.relabel_all(self.now(), only_active=True)
            self._refresh_status()

    def _clock_runs(self) -> bool:
        return bool(self.source is not None and self.source.live and self.calls.nodes
                    and not self.run_state.finished)

    def now(self) -> float:
        """Run time for elapsed columns: the last event's time, advancing with the wall clock while live."""
        if self._clock_runs():
            return self.calls.now + (time.monotonic() - self._last_event_clock)
        return self.calls.now

    def _render_changes(self) -> None:
        self._render_pending = False
        self._last_render = time.monotonic()
        dirty, self._dirty = self._dirty, {}
        now = self.now()
        self.tree_view.sync(dirty, now)
        view = self.transcript_view
        changes = self.transcripts.take_changes()
        if view.node_id is None and self.calls.root is not None:
            self.show_node(self.calls.root)
        elif view.node_id in changes:
            view.blocks_changed(changes[view.node_id])
        self._refresh_status()
        self.steering_changed()
        if self.run_state.finished and (not self.answer_panel.display or self.question_box.display):
            self.question_box.close()  # the session ended (quit, or its tokens or budget spent): no next question
            self._show_answer()
            self.refresh_bindings()
        elif self._asks and self.calls.root != self._answered and self.waiting_for_question:
            self._answered = self.calls.root  # a question ended: its answer, and the box for the next
            self._show_answer()
            self.question_box.open(first=False, focus=False)  # the answer is read first; q still quits
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "ask":
            return self.waiting_for_question  # in the footer only while the session waits for a question
        return super().check_action(action, parameters)

    @property
    def waiting_for_question(self) -> bool:
        """The session waits for a question: none asked yet, or the latest one answered or stopped."""
        if not self._asks or self.run_state.finished or self._stopping is not None:
            return False
        root = self.calls.nodes.get(self.calls.root or "")
        if root is None:
            return getattr(self.source, "question", None) is None
        return root.status not in ACTIVE

    def _refresh_status(self) -> None:
        self.header_bar.show(self.run_state, self.palette, self.source.badge if self.source else None)
        self.status_bar.show(self.run_state, self.calls, self.now(), self.palette, self._frame // 3,
                             waiting=self.waiting_for_question)

    # --- asking the next question -------------------------------------------------------

    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input is not self.question_box:
            return
        message.stop()
        question = message.value.strip()
        if not question:
            return
        if not self.waiting_for_question or not self.source.ask(question):  # type: ignore[union-attr]
            self.notify("The session cannot take a question now.", severity="warning")
            return
        self.question_box.close()
        self.answer_panel.display = False
        self.tree_view.focus()
        self.refresh_bindings()

    def action_ask(self) -> None:
        if self.waiting_for_question:
            self.question_box.open(first=self.calls.root is None)
        elif self._asks and not self.run_state.finished:
            self.notify("A question is running: ask the next one when it has an answer (or stop it: k twice).")
        else:
            self.notify("This run takes no more questions.")

    def _show_answer(self) -> None:
        self.answer_panel.show(self.run_state, self.calls)

    # --- the transcript pane follows the tree cursor ------------------------------------

    def on_tree_node_highlighted(self, message: Tree.NodeHighlighted[str]) -> None:
        if message.node.data is not None:
            self.show_node(message.node.data)
            self.steering_changed()  # the question shown follows the cursor

    def show_node(self, node_id: str) -> None:
        """Show one call node's own transcript in the transcript pane."""
        view = self.transcript_view
        if view.node_id != node_id:
            node = self.calls.nodes.get(node_id)
            view.show(node_id, self.transcripts.blocks(node_id), follow=node is not None and node.finished_t is None)
            self._set_transcript_title()

    def _set_transcript_title(self) -> None:
        view = self.transcript_view
        node = self.calls.nodes.get(view.node_id or "")
        if node is None:
            view.border_title = "Transcript"
        elif node.id == self.calls.root:
            view.border_title = "Transcript · root"
        else:
            # a title is Textual markup: a label with "[/]" in it would raise MarkupError
            view.border_title = escape_markup(f"Transcript · {node.kind} {node.id} · {node.label}")

    # --- themes -----------------------------------------------------------------------

    def _theme_changed(self, theme: Theme) -> None:
        self._palette = self._palette_for(theme)
        self.tree_view.palette = self.palette
        self.tree_view.relabel_all(self.now())
        self.transcript_view.set_palette(self.palette)
        self._refresh_status()
        if self._remember_theme and theme.name != self._startup_theme:
            self._startup_theme = None
            try:
                prefs.save_theme_name(theme.name)
            except OSError as exc:
                self.notify(f"could not remember the theme: {exc}", severity="warning")

    # --- actions ----------------------------------------------------------------------

    def action_help(self) -> None:
        general = [b for b in self.BINDINGS if b not in STEERING_BINDINGS]
        sections = key_sections([*general, *App.BINDINGS], self.COMMAND_PALETTE_BINDING)
        sections.insert(1, ("Steering a live run (shown in the footer when they apply)", STEERING_BINDINGS))
        self.push_screen(HelpScreen(sections))

    def action_show_root(self) -> None:
        if self.calls.root is not None:
            self.tree_view.move_to(self.calls.root)
            self.show_node(self.calls.root)

    def action_toggle_answer(self) -> None:
        panel = self.answer_panel
        if not self.run_state.finished and not self.waiting_for_question:
            self.notify("No answer yet: the run is still going.")
        elif panel.display:
            panel.display = False
        else:
            self._show_answer()

    def action_copy_answer(self) -> None:
        if self.model.answer:  # the run's, or between questions the latest question's
            self.copy_to_clipboard(self.model.answer)
            self.notify("Final answer copied to the clipboard.")
        else:
            self.notify("There is no final answer to copy yet.")

    def action_copy_transcript(self) -> None:
        self.copy_to_clipboard(self.transcript_view.plain_text())
        self.notify("The transcript shown was copied to the clipboard.")

    def action_attach_kernel(self) -> None:
        attach = getattr(self.source, "attach_command", None)  # live runs only
        command = attach() if attach is not None else None
        if command is None:
            self.notify("There is no live root kernel to attach to.")
            return
        self.copy_to_clipboard(command)
        self.notify(f"{command}\n(copied to the clipboard; run it in another terminal)", timeout=15)

    async def action_ctrl_c(self) -> None:
        now = time.monotonic()
        if now - self._last_ctrl_c <= CTRL_C_WINDOW_S:
            await self.action_quit()
        else:
            self._last_ctrl_c = now
            self.notify("Press Ctrl+C again to quit (kernels are shut down first).", title="Quit?")

    async def action_quit(self) -> None:
        """Stop the run (kernels, session file) off the UI thread, then exit."""
        if self._stopping is None:
            if self.source is not None:
                self.notify("Stopping the run and shutting down kernels…", timeout=30)
            self._stopping = asyncio.create_task(self._stop_and_exit())

    def _on_quit_signal(self, signum: int, frame: object) -> None:
        """SIGTERM/SIGHUP: quit like ``q``; and, in case the terminal is gone, a watchdog thread.

        A plain signal handler (not the event loop's): a terminal that is gone can block the
        loop in a write, and then only another thread can stop the run and end the process.
        """
        if self._quit_signal is not None:
            return
        self._quit_signal = signum
        threading.Thread(target=self._stop_then_exit, args=(signum,), name="rlm-exit-watchdog", daemon=True).start()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.action_quit()))

    def _stop_then_exit(self, signum: int) -> None:
        """Stop the run (kernels, session file), then end the process if it is still here."""
        if self.source is not None:
            self.source.stop()
        time.sleep(EXIT_GRACE_S)
        os._exit(128 + signum)

    async def _stop_and_exit(self) -> None:
        if self.source is not None:
            await asyncio.to_thread(self.source.stop)
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help: all keys", "List every key binding", self.action_help)
        yield SystemCommand("Kernel: attach a console", "Show and copy the `jupyter console --existing` command "
                            "for the root's kernel", self.action_attach_kernel)
        yield from self.steering_commands()
        yield SystemCommand("Show root transcript", "Show the root model's transcript", self.action_show_root)
        yield SystemCommand("Final answer: show or hide", "Toggle the final-answer panel", self.action_toggle_answer)
        yield SystemCommand("Final answer: copy", "Copy the final answer to the clipboard", self.action_copy_answer)
        yield SystemCommand("Transcript: copy", "Copy the transcript shown, as text, to the clipboard",
                            self.action_copy_transcript)
        yield SystemCommand("Expand all calls", "Expand every node of the call tree (batches too)",
                            lambda: self.tree_view.root.expand_all())
        yield SystemCommand("Collapse all calls", "Collapse the call tree to the root",
                            lambda: self.tree_view.root.collapse_all())

