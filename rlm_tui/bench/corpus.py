"""A synthetic directory for the load benchmark: N text files of about equal size in nested folders."""

from __future__ import annotations

import os
from pathlib import Path

_LINE = "the quick brown fox jumps over the lazy dog while the harness loads file {i} line {j}\n"


def make_corpus(root: Path, total_bytes: int, files: int) -> int:
    """Write ``files`` ASCII text files totalling about ``total_bytes`` under ``root``; returns the bytes written.

    Files sit 100 to a folder. An existing corpus of the same shape is reused.
    """
    marker = root.parent / (root.name + ".shape")  # outside the corpus, so it is not loaded
    shape = f"{total_bytes} {files}"
    if marker.is_file() and marker.read_text().split("\n")[0] == shape:
        return int(marker.read_text().split("\n")[1])
    root.mkdir(parents=True, exist_ok=True)
    per_file = max(1, total_bytes // files)
    block = "".join(_LINE.format(i="{i}", j=j) for j in range(per_file // 60 + 2))
    written = 0
    for i in range(files):
        folder = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(exist_ok=True)
        data = block.replace("{i}", str(i)).encode()[:per_file]
        fd = os.open(folder / f"f{i:06d}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        written += len(data)
    marker.write_text(f"{shape}\n{written}\n")
    return written


def read_dir(root: str | Path) -> dict[str, str]:
    """What an ``rlms`` user writes to pass a directory as context: relative path -> text."""
    result: dict[str, str] = {}
    for current, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = os.path.join(current, name)
            with open(path, "rb") as handle:
                result[os.path.relpath(path, root)] = handle.read().decode("utf-8", "replace")
    return result
