"""Text helpers the engine shares with the run model."""

from __future__ import annotations


def one_line(text: str, width: int = 60) -> str:
    """A node label: the first non-empty line of a prompt, shortened."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""
