"""The Textual app: renders engine events (live or replayed) and nothing else.

Import ``rlm_tui.ui.app`` only when a UI is wanted: the engine and the headless
printer must never import Textual.
"""
