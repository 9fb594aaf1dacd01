"""The input's shape from file metadata, before any kernel exists.

The root model's first request needs only the question and the context's
shape (type, size, files, the largest ones), not its content. This module
finds the files on the host with ``stat`` alone, so that request can go out
while the kernel starts; the kernel then reads exactly the files listed here
(``kernels/loader.py``), so which files make up a directory's context is
decided once, in this walk: ``.gitignore`` files respected, ``.git`` skipped,
symlinked directories not followed (a symlink loop cannot recurse), files over
the per-file cap and past the total cap skipped. Binary files are found when
the kernel reads them; the model is told if the loaded context differs from
this estimate.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LARGEST = 10  # files listed by size in the first message


@dataclass
class Shape:
    """What the first message says about the input, and the files the kernel is to read."""

    info: dict[str, Any]
    files: list[str] = field(default_factory=list)  # relative paths (a directory's input)


class EmptyInput(ValueError):
    """Nothing to read: the run cannot start."""


def scan(path: Path, max_file_bytes: int, max_total_bytes: int) -> Shape:
    """The shape of a file or directory; raises EmptyInput or OSError when there is nothing to read."""
    if path.is_dir():
        return _scan_dir(path, max_file_bytes, max_total_bytes)
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):  # a FIFO with no writer would block the read for ever
        raise EmptyInput("not a regular file or a directory (a pipe, a device or a socket?): "
                         "give a file, a directory, or - for standard input")
    size = info.st_size
    with open(path, "rb") as handle:
        head = handle.read(8192)
    if b"\x00" in head:
        raise EmptyInput("the file looks binary (it holds NUL bytes); give a text file")
    if size == 0:
        raise EmptyInput("the input is empty (0 bytes)")
    return Shape({"type": "str", "chars": min(size, max_total_bytes), "estimated": True,
                  "truncated_bytes": max(0, size - max_total_bytes)})


class _Skips:
    """Skipped files by reason: a count and a few examples, as the kernel reports them."""

    def __init__(self) -> None:
        self.by_reason: dict[str, dict[str, Any]] = {}

    def add(self, reason: str, rel: str) -> None:
        entry = self.by_reason.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < 5:
            entry["examples"].append(_printable(rel))


def _printable(name: str) -> str:
    """File names may hold invalid UTF-8 (surrogate escapes): keep them printable and encodable."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _scan_dir(root: Path, max_file: int, max_total: int) -> Shape:
    import pathspec

    skips = _Skips()
    specs: list[tuple[str, Any]] = []  # (base relative dir, GitIgnoreSpec)
    files: list[str] = []
    sizes: list[tuple[str, int]] = []
    total = 0

    def ignored(rel: str, is_dir: bool) -> bool:
        for base, spec in specs:
            if base and not rel.startswith(base + os.sep):
                continue
            if spec.match_file((rel[len(base) + 1:] if base else rel) + ("/" if is_dir else "")):
                return True
        return False

    def unreadable(exc: OSError) -> None:
        skips.add(f"unreadable ({exc.strerror or type(exc).__name__})",
                  os.path.relpath(str(exc.filename), root) + "/")

    for current, dirs, names in os.walk(root, followlinks=False, onerror=unreadable):
        rel_dir = os.path.relpath(current, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        if ".gitignore" in names:
            try:
                with open(os.path.join(current, ".gitignore"), encoding="utf-8", errors="replace") as handle:
                    specs.append((rel_dir, pathspec.GitIgnoreSpec.from_lines(handle)))
            except OSError:
                pass
        kept = []
        for name in sorted(dirs):
            rel = os.path.join(rel_dir, name)
            if name == ".git":
                continue
            if os.path.islink(os.path.join(current, name)):
                skips.add("symlinked directory", rel)
            elif specs and ignored(rel, True):
                skips.add("gitignored", rel + "/")
            else:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(names):
            rel = os.path.join(rel_dir, name)
            if specs and ignored(rel, False):
                skips.add("gitignored", rel)
                continue
            try:
                found = os.stat(os.path.join(current, name))
            except OSError as exc:
                skips.add(f"unreadable ({exc.strerror or type(exc).__name__})", rel)
                continue
            size = found.st_size
            if not stat.S_ISREG(found.st_mode):  # the kernel would block reading a FIFO
                skips.add("not a regular file", rel)
            elif size > max_file:
                skips.add(f"larger than {max_file // 1_000_000} MB", rel)
            elif total + size > max_total:
                skips.add("over the total size cap", rel)
            else:
                files.append(rel)
                sizes.append((_printable(rel), size))
                total += size
    if not files:
        detail = ", ".join(f"{v['count']} {reason}" for reason, v in skips.by_reason.items())
        raise EmptyInput(f"no text files to read in {root}" + (f" (skipped: {detail})" if detail else " (it is empty)"))
    sizes.sort(key=lambda item: -item[1])
    return Shape({"type": "dict", "files": len(files), "chars": total, "largest": sizes[:LARGEST],
                  "estimated": True, "truncated_bytes": 0, "skipped": skips.by_reason}, files)
