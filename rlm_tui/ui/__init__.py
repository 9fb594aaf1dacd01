"""The Textual app: renders engine events (live or replayed) and nothing else.

Only ``launch`` lives here; it imports Textual when called, so the engine and
the headless printer never import it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from ..core.config import Settings


def launch(settings: Settings, question: str | None, path: Path, *, theme: str | None = None,
           badge: str | None = None, on_finish: Callable[[], None] | None = None,
           prepare: Callable[[Any], None] | None = None, ask_again: bool = False) -> int:
    """Open the app on a live run of the engine; returns the process exit code.

    ``prepare(engine)`` adjusts the engine before it runs (``rlm-tui resume``). With ``ask_again`` (or
    no ``question``) the run is a session: the question box takes the next question after each answer.
    """
    from .app import RlmApp
    from .runner import EngineSource
    from .themes import theme_names

    source = EngineSource(settings, question, Path(path), badge=badge, on_finish=on_finish, prepare=prepare,
                          ask_again=ask_again)
    if theme is not None and theme not in theme_names():
        source.stop()
        print(f"rlm-tui: unknown theme {theme!r}; available: {', '.join(theme_names())}", file=sys.stderr)
        return 2
    try:
        RlmApp(source, theme=theme).run()
    finally:
        source.stop()  # also when the app crashed: kernels must not outlive it
    return 0
