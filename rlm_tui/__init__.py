"""rlm-tui: run Recursive Language Models with a person in the loop."""

__version__ = "0.1.0"
