"""Row 6: process start -> the Textual app's first frame, measured on a pseudo-terminal.

Runs the real ``rlm-tui PATH QUESTION`` (UI mode) with its output on a pty and
takes the moment the app's first frame (the call-tree pane's "Calls" title)
appears in the bytes it writes. Then quits with ``q`` as a person would (the
app shuts its kernels down first).
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

MARKER = b"Calls"


def first_frame(cmd: list[str], env: dict[str, str], timeout: float = 60.0) -> float | None:
    """Seconds from process start to ``MARKER`` on the terminal; None if it never came."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(env, TERM="xterm-256color", COLUMNS="120", LINES="40")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    seen: float | None = None
    buffer = b""
    try:
        while time.perf_counter() - started < timeout and seen is None:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    buffer = (buffer + os.read(master, 65536))[-4096:]
                except OSError:
                    break
                if MARKER in buffer:
                    seen = time.perf_counter() - started
            elif proc.poll() is not None:
                break
        _quit(proc, master)
    finally:
        os.close(master)
    return seen


def _quit(proc: subprocess.Popen[bytes], master: int) -> None:
    deadline = time.monotonic() + 20
    try:
        os.write(master, b"q")
    except OSError:
        pass
    while proc.poll() is None and time.monotonic() < deadline:
        try:  # keep draining the terminal so the app never blocks on a full pty
            if select.select([master], [], [], 0.1)[0]:
                os.read(master, 65536)
        except OSError:
            time.sleep(0.1)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tui_command(python: str, path: Path, question: str, url: str, session: Path) -> list[str]:
    return [python, "-m", "rlm_tui", str(path), question, "--model", "openai/bench", "--api-base", url,
            "--api-key", "sk-bench-not-a-real-key", "--session", str(session)]
