"""Saved sessions: index, replay, follow, resume, export and the list of past runs.

A session file is the run's event stream (see ``rlm_tui.core.events`` and the
"Session files" section of README.md). Everything here reads that stream; only
``resume`` runs the engine again. Nothing in this package imports Textual or prints:
the commands that print what it reads are in ``rlm_tui/cli/``.
"""
