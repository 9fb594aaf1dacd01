"""The kernel backend seam: what the engine needs from a REPL, whatever runs it.

A ``KernelBackend`` makes ``Kernel``s for one run (the local Jupyter kernel, a
sandboxed one, or one on a server elsewhere: one module each) and says how
kernel code reaches the host's sub-call bridge and where the run's input is.
The engine and the pool use only these two classes, so a new place to run
code is one new module and one line in ``backends/__init__.py``.
"""

from __future__ import annotations

import ast
import contextlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..safe_text import strip_ansi

if TYPE_CHECKING:
    from ..bridge import Bridge

OutputHook = Callable[[str, str], None]  # (stream, text)
Timeout = float | Callable[[], float | None] | None  # seconds, or a function giving the current limit


def error_status(ename: str) -> str:
    """A cell's status from the error it raised: an interrupted async cell (``await``) raises
    CancelledError where a plain one raises KeyboardInterrupt; both were interrupted."""
    return "interrupted" if ename in ("KeyboardInterrupt", "CancelledError") else "error"


def take_iopub(kind: str, content: dict[str, Any], emit: "OutputHook", status: str,
               error: str) -> tuple[str, str, bool]:
    """One iopub message of the running cell (every backend's execute loop reads them the same way):
    output goes to ``emit``; returns the cell's status and error so far, and whether it went idle."""
    if kind == "stream":
        emit(content.get("name", "stdout"), content.get("text", ""))
    elif kind == "error":
        if status == "ok":
            status = error_status(content.get("ename", ""))
        error = content.get("ename", "Error")
        emit("error", "\n".join(content.get("traceback", [])) + "\n")
    elif kind in ("execute_result", "display_data"):
        text = content.get("data", {}).get("text/plain")
        if text:
            emit("result", text + "\n")
    elif kind == "status" and content.get("execution_state") == "idle":
        return status, error, True
    return status, error, False


class HeldInterrupt:
    """An interrupt asked for while a cell is sent but its code is not yet running, kept until it is.

    ipykernel ignores SIGINT between requests, so an interrupt that reaches the kernel before it takes the
    request is lost and the cell runs to its end (seen: Esc pressed as a cell appeared, and the cell's 60 s
    sleep went on); one that lands in ipykernel's own steps just before the user's code ("KeyboardInterrupt
    caught in kernel") ends the request with no reply. The request is taken when its ``execute_input``
    comes; the user's code runs ``BEGUN_S`` later. An interrupt held ``HOLD_S`` without that (a kernel that
    never says so) goes out anyway.
    """

    BEGUN_S = 0.2
    HOLD_S = 3.0

    def __init__(self) -> None:
        self._cell = False  # a cell is in flight
        self._begun_at: float | None = None  # when its execute_input came
        self._held_at: float | None = None
        self.went_out = False  # an interrupt reached the kernel while this cell was in flight

    @contextlib.contextmanager
    def cell(self) -> Iterator[None]:
        """A cell sent to the kernel, until it is over: after it, an interrupt goes out at once."""
        self._cell, self._begun_at, self._held_at, self.went_out = True, None, None, False
        try:
            yield
        finally:
            self._cell, self._begun_at, self._held_at = False, None, None

    def hold(self) -> bool:
        """An interrupt is asked for: True to send it now, False when it waits for the cell's code to run."""
        if self._cell and not self._running():
            self._held_at = self._held_at or time.perf_counter()
            return False
        self.went_out = self.went_out or self._cell
        return True

    def due(self, kind: str | None) -> bool:
        """The cell's next iopub message ``kind`` (None: a quiet poll): True to send the held interrupt now."""
        if kind == "execute_input" and self._begun_at is None:
            self._begun_at = time.perf_counter()
        if self._held_at is None or (not self._running() and time.perf_counter() - self._held_at < self.HOLD_S):
            return False
        self._held_at, self.went_out = None, True
        return True

    def _running(self) -> bool:
        return self._begun_at is not None and time.perf_counter() - self._begun_at >= self.BEGUN_S


def interrupted_without_reply(status: str, reply: dict[str, Any], held: HeldInterrupt) -> str:
    """A cell's status when its request ended with no reply: an interrupt that landed in the kernel's own
    steps ends the request so, and the cell did not run to its end."""
    return "interrupted" if status == "ok" and not reply and held.went_out else status


def expression_value(result: dict) -> str:
    """The str a ``user_expressions`` entry evaluated to (its reply carries the value's repr)."""
    return ast.literal_eval(result["data"]["text/plain"])


def kernel_source(name: str) -> str:
    """Source of a file in ``kernels/``: the source checkout, or the copy packed in the wheel."""
    here = Path(__file__).resolve().parent.parent.parent
    for folder in (here / "_kernels", here.parent / "kernels"):
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"kernel file {name} not found next to {here}")


class KernelDied(Exception):
    """The kernel process went away."""


@dataclass
class ExecResult:
    status: str  # ok | error | interrupted | timeout | died
    duration_s: float
    user_expressions: dict = field(default_factory=dict)
    error: str = ""
    restarted: bool = False  # the kernel was replaced: its namespace is empty


class Kernel(ABC):
    """One REPL process: runs cells with streamed output; its namespace lives until restart."""

    id: str

    @abstractmethod
    async def start(self) -> None:
        """Start the process and wait until it answers."""

    @abstractmethod
    async def execute(self, code: str, on_output: OutputHook | None = None, *, timeout: Timeout = None,
                      user_expressions: dict[str, str] | None = None, interrupt_grace: float = 5.0) -> ExecResult:
        """Run a cell, streaming its output; interrupt it after ``timeout`` seconds and restart the
        kernel when it ignores the interrupt for ``interrupt_grace`` seconds."""

    @abstractmethod
    async def interrupt(self) -> None:
        """Stop the running cell (KeyboardInterrupt in the kernel); one sent but not yet begun is stopped
        as it begins (``HeldInterrupt``)."""

    @abstractmethod
    async def restart(self) -> None:
        """A fresh process in place of this one, alive or dead; the namespace is empty after."""

    @abstractmethod
    async def shutdown(self) -> None:
        """Stop the process and free what it held."""

    @abstractmethod
    async def is_alive(self) -> bool:
        """Whether the process is still running."""

    def attach_command(self) -> str | None:
        """A shell command a person can run to inspect this kernel's state, if there is one."""
        return None

    async def call(self, code: str, expression: str, timeout: float | None = None) -> str:
        """Run internal ``code`` then return the str value of ``expression``; raise on error."""
        out: list[str] = []
        result = await self.execute(code, lambda s, t: out.append(t), timeout=timeout,
                                    user_expressions={"value": expression})
        if result.status == "died":
            raise KernelDied(result.error)
        value = result.user_expressions.get("value", {})
        if result.status != "ok" or value.get("status") != "ok":
            detail = strip_ansi("".join(out)).strip().splitlines()
            raise RuntimeError(detail[-1] if detail else f"kernel call failed ({result.status})")
        return expression_value(value)


class KernelBackend(ABC):
    """Makes the kernels of one run and connects them to the host.

    ``run_dir`` is the run's private folder (removed at its end); ``input_path``
    the file or directory the run reads.
    """

    #: Short name for ``run_started`` and the status bar: local | sandbox | ...
    name: str = ""

    def __init__(self, run_dir: Path, input_path: Path) -> None:
        self.run_dir = run_dir
        self.input_path = input_path

    @property
    def description(self) -> str:
        """One line for people: what runs the model's code, and what it can reach."""
        return self.name

    @property
    def warning(self) -> str:
        """What a person must be told before the run (shown as a warning event), or ""."""
        return ""

    def info(self) -> dict[str, Any]:
        """What ``run_started`` records about the backend (its ``kernel_backend`` field)."""
        return {"name": self.name, "description": self.description,
                **({"warning": self.warning} if self.warning else {})}

    @abstractmethod
    async def open(self, bridge: "Bridge") -> None:
        """Make the run's sub-call bridge reachable by this backend's kernels."""

    @abstractmethod
    def new_kernel(self) -> Kernel:
        """A kernel not yet started."""

    @abstractmethod
    def connect_config(self, kernel: Kernel) -> dict[str, Any]:
        """The bootstrap's ``connect`` config: how ``kernel`` reaches the bridge
        (``{"port": N}`` for TCP on 127.0.0.1, ``{"unix": PATH}`` for a Unix socket)."""

    async def context_spec(self, kernel: Kernel, spec: dict[str, Any],
                           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """The loader's spec (``kernels/loader.py``) as ``kernel`` must see it: host paths it can
        open, or a spec for data shipped to it (``progress`` gets a line now and then while it is)."""
        return spec

    async def close(self) -> None:
        """Free what ``open`` took (the pool shuts the kernels down)."""
