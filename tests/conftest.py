"""Shared fixtures: a scripted model server on 127.0.0.1 and a way to run the real engine."""

from __future__ import annotations

import atexit
import functools
import json
import os
import signal
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rlm_tui.core import events as ev
from rlm_tui.core.config import Limits, Settings
from rlm_tui.core.engine import Engine, RunResult
from rlm_tui.core.session import load
from rlm_tui.scripted import Fault, Script, ScriptedServer, turn_of

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
if sys.__stdin__ is None:
    # pytest started with standard input closed (`<&-`): it puts /dev/null on fd 0 itself, but
    # its capture asks sys.__stdin__ for an encoding (as IPython does on import) and fails on None.
    sys.__stdin__ = open(os.devnull, encoding="utf-8")

# Every Jupyter kernel a test starts, in this process or a child (cli_env passes JUPYTER_PATH on), goes through
# this kernel spec: the real one with one line first that counts the start. A test that starts a kernel
# without the `kernel` marker then fails (pytest_runtest_makereport below), so the fast tier has none.
# The app is counted in this process only (a pty test's app is not seen; those modules are marked whole).
def _counting_kernel_spec() -> Path:
    from jupyter_client.kernelspec import KernelSpecManager

    real = KernelSpecManager().get_kernel_spec("python3")
    folder = Path(tempfile.mkdtemp(prefix="rlm-tests-kernelspec-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    count = (folder / "starts").as_posix()
    spec = real.to_dict()
    # A sandboxed kernel cannot write outside its sandbox: its start is counted by the launcher patch below
    # (in this process; sandboxed kernels of CLI children are not counted: those modules are marked whole).
    spec["argv"] = [sys.executable, "-c", f"import os, runpy\ntry: open({count!r}, 'a').write('%d\\n' % os.getpid())\n"
                    "except OSError: pass\n"
                    "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)", "-f",
                    "{connection_file}"]
    (folder / "kernels" / "python3").mkdir(parents=True)
    (folder / "kernels" / "python3" / "kernel.json").write_text(json.dumps(spec))
    from jupyter_client.provisioning import local_provisioner

    def launch_counted(cmd: list[str], *args: Any, _launch: Any = local_provisioner.launch_kernel, **kwargs: Any) -> Any:
        with open(count, "a") as handle:
            handle.write("host\n")
        return _launch(cmd, *args, **kwargs)

    local_provisioner.launch_kernel = launch_counted
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("JUPYTER_PATH")]))
    return folder / "starts"


KERNEL_STARTS = _counting_kernel_spec()
_BEFORE = pytest.StashKey[tuple[int, int]]()


def kernels_started() -> int:
    """How many kernels were started so far in this test session (by any process)."""
    try:
        return KERNEL_STARTS.read_text().count("\n")
    except FileNotFoundError:
        return 0


#: Textual apps run in this process so far (counted once the test modules are collected; see below).
APPS_RUN = [0]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Count the Textual apps tests run in this process, so that the `ui` marker is checked like `kernel`.

    Only when a collected module imported Textual: a run of modules without the app does not load it.
    """
    if "textual.app" not in sys.modules:
        return
    from textual.app import App

    for name in ("run", "run_async", "run_test"):
        original = getattr(App, name)

        @functools.wraps(original)
        def counted(self: App, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            APPS_RUN[0] += 1
            return _original(self, *args, **kwargs)

        setattr(App, name, counted)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_BEFORE] = (kernels_started(), APPS_RUN[0])  # before any fixture of the test is set up


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A test that started a kernel or ran the app without its marker fails (at teardown)."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "teardown" or _BEFORE not in item.stash or not report.passed:
        return
    kernels, apps = item.stash[_BEFORE]
    seen = {"kernel": (kernels_started() - kernels, "started {} Jupyter kernel(s)"),
            "ui": (APPS_RUN[0] - apps, "ran the Textual app {} time(s)")}
    missing = [what.format(n) + f" without the `{marker}` marker (@pytest.mark.{marker})"
               for marker, (n, what) in seen.items() if n and item.get_closest_marker(marker) is None]
    if missing:
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} {'; '.join(missing)}: the fast tier must run neither"


@pytest.fixture
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """UI tests never read or write the real ~/.config or ~/.local/share."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


# Every temporary file of this test session (ours, the engine's, the CLI subprocesses') goes to a
# private folder, so what a run leaves behind can be checked at the end without seeing other runs'.
TMP = Path(tempfile.mkdtemp(prefix="rlm-tests-"))
os.environ["TMPDIR"] = str(TMP)
tempfile.tempdir = str(TMP)
atexit.register(shutil.rmtree, TMP, ignore_errors=True)


@pytest.hookimpl(trylast=True)  # after plugins that still use their temporary files (snapshot reports)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if a run left an ``rlm-tui-*`` temporary folder or file behind."""
    left = sorted(p.name for p in TMP.glob("rlm-tui-*"))
    for entry in TMP.iterdir():  # emptied, not removed: one process may run several sessions (mutmut)
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
    if left:
        session.config.get_terminal_writer().line(f"left behind in the temporary folder: {left}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def fence(code: str) -> str:
    """A reply with one ```repl block."""
    return f"Let me run this.\n```repl\n{code.strip()}\n```\n"


def fed_root(first: str, fed: list[str]):
    """An RLM that replies ``first`` on turn 1, then keeps what it was fed and answers FINAL(done)."""

    def root(messages, model):
        if turn_of(messages) == 1:
            return first
        fed.append(messages[-1]["content"])
        return "FINAL(done)"

    return root


@dataclass
class Run:
    result: RunResult
    events: list[ev.Event] = field(default_factory=list)
    server: ScriptedServer | None = None

    def kinds(self, kind: str) -> list[ev.Event]:
        return [e for e in self.events if e.kind == kind]

    def cell_text(self) -> str:
        return "".join(e.get("text", "") for e in self.kinds(ev.CELL_OUTPUT))


async def run_script(script: Script, path: Path, tmp_path: Path, *, model: str = "openai/scripted",
                     latency: float = 0.0, question: str = "What is the answer?",
                     faults: list[Fault] | None = None, settings: dict[str, Any] | None = None,
                     **limits: Any) -> Run:
    """Run the real engine (kernel, bridge, litellm) against a scripted loopback model.

    ``faults`` are queued on the server before the run; ``settings`` override Settings fields.
    """
    events: list[ev.Event] = []
    with ScriptedServer(script, latency=latency) as server:
        server.faults.extend(faults or [])
        fields: dict[str, Any] = {"api_key": "sk-test-not-a-real-key-1234", "lm_backoff": 0.05, **(settings or {})}
        config = Settings(model=model, api_base=server.url, limits=Limits(**limits),
                          session_path=tmp_path / "session.jsonl", **fields)
        result = await Engine(config, question, path, sink=events.append).run()
    return Run(result, events, server)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small directory with one needle."""
    root = tmp_path / "corpus"
    (root / "src" / "deep").mkdir(parents=True)
    for i in range(20):
        (root / "src" / f"file{i}.txt").write_text(f"line of filler {i}\n" * 50)
    (root / "src" / "deep" / "needle.txt").write_text("nothing\nthe magic number is 7316\nnothing\n")
    (root / "image.bin").write_bytes(b"\x89PNG\x00\x00binary")
    (root / ".gitignore").write_text("ignored/\n*.log\n")
    (root / "ignored").mkdir()
    (root / "ignored" / "secret.txt").write_text("should not load")
    (root / "debug.log").write_text("should not load")
    return root


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for running the CLI in a subprocess from the source tree."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), LITELLM_LOCAL_MODEL_COST_MAP="True")
    env.update(extra)
    return env


def sigint_default() -> None:
    """``preexec_fn`` for a child a test will Ctrl+C: SIGINT back to its default action.

    pytest started as a background job of a non-interactive shell (CI steps, ``cmd &`` in a
    script) runs with SIGINT ignored, children inherit that, and Python then installs no
    KeyboardInterrupt handler: the test's Ctrl+C would never arrive. A terminal's Ctrl+C
    reaches a process whose SIGINT is in its default state; this gives the child that state.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


PYTHON = sys.executable
__all__ = ["fence", "fed_root", "run_script", "Run", "load", "cli_env", "sigint_default", "PYTHON", "ROOT"]
