"""The engine's name for the typed events, which live in ``rlm_tui.model.events``.

Kept so the engine's many ``ev.KIND`` emit sites need no edit; new code imports
``rlm_tui.model.events``.
"""

from ..model.events import *  # noqa: F401,F403
from ..model.events import Event, Sink  # noqa: F401  (named for type checkers)
