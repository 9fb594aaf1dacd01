"""The run model: typed events (``events``) and the one fold of them that every view reads (``run``).

Nothing here imports Textual or prints: the app, the headless printer, replay
and the exporters present what the model holds.
"""
