"""The live app on a scripted run, shared by the pilot tests that steer it from the keyboard."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rlm_tui.core.config import Limits, Settings
from rlm_tui.scripted import ScriptedServer
from rlm_tui.ui.app import RlmApp
from rlm_tui.ui.runner import EngineSource

SIZE = (160, 45)


@contextmanager
def live_app(script, corpus: Path, tmp_path: Path, *, question: str | None = "What is the answer?",
             approve: str = "ask", step: str = "off", **limits: Any) -> Iterator[tuple[RlmApp, ScriptedServer, Path]]:
    """The app on a live run against ``script`` (``question=None``: opened without one, as ``rlm-tui PATH``)."""
    session = tmp_path / "session.jsonl"
    with ScriptedServer(script) as server:
        settings = Settings(model="openai/scripted", api_base=server.url, api_key="sk-test-not-a-real-key-1234",
                            limits=Limits(**limits), session_path=session, approve=approve, step=step,
                            lm_backoff=0.05)
        source = EngineSource(settings, question, corpus)
        try:
            yield RlmApp(source, theme="rlm-midnight", remember_theme=False), server, session
        finally:
            source.stop()


def footer_keys(app: RlmApp) -> dict[str, str]:
    return {key: active.binding.action for key, active in app.screen.active_bindings.items()}


async def type_question(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    """Type ``text`` into the focused question box and send it."""
    await pilot.press(*[{" ": "space", "?": "question_mark", ".": "full_stop"}.get(c, c) for c in text])
    await pilot.press("enter")
