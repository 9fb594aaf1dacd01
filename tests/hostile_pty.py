"""Run rlm-tui in a real pseudo-terminal and keep every byte it writes to the terminal.

``disable_sanitiser=True`` starts it with ``rlm_tui.core.safe_text`` replaced by pass-through
functions (before anything imports them), to show that each attack succeeds without it.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path
from typing import Callable

from conftest import PYTHON, cli_env

_DISABLE = ("import json, rlm_tui.core.safe_text as s\n"
            "s.safe = lambda value, sgr='show': s.as_text(value)\n"
            "s.safe_json = lambda obj: json.dumps(obj, ensure_ascii=False, default=str)\n"
            "s.safe_data = lambda value, depth=0: value\n")
_MAIN = "import sys\nfrom rlm_tui.cli import entry\nsys.exit(entry())\n"

# The attacks, as they reach the terminal when nothing stops them.
TITLE = b"\x1b]0;PWNED-TITLE\x07"
CLIPBOARD = b"\x1b]52;c;UFdORUQ=\x07"
WIPE = b"\x1b[2J\x1b[?1049l"
C1_CSI = "\x9b6n".encode()  # U+009B (CSI) in UTF-8, then "6n": a cursor position request


def run_in_pty(args: list[str], *, disable_sanitiser: bool = False, timeout: float = 120.0,
               cwd: Path | None = None, keys: Callable[[float], bytes | None] | None = None,
               env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run ``rlm-tui ARGS`` on a new pty (stdin, stdout and stderr); returns (exit code, bytes).

    ``keys(elapsed)`` is asked every 0.1 s for bytes to type (or None).
    """
    master, slave = os.openpty()
    code = (_DISABLE if disable_sanitiser else "") + _MAIN
    proc = subprocess.Popen([PYTHON, "-c", code, *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env or cli_env(TERM="xterm-256color", COLUMNS="120", LINES="40"),
                            cwd=cwd, start_new_session=True, close_fds=True)
    os.close(slave)
    out = bytearray()
    start = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - start
            if elapsed > timeout:
                proc.kill()
                raise TimeoutError(f"rlm-tui {args} did not finish in {timeout} s; output: {bytes(out[-2000:])!r}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if keys is not None:
                typed = keys(elapsed)
                if typed:
                    os.write(master, typed)
        return proc.wait(timeout=30), bytes(out)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
