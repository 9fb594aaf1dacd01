"""Session files are never shared, and every reader survives any file (issue 15, findings 2, 3, 10).

Damaged files are made by hand from a real recorded session (``sessions_sample``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env
from rlm_tui.core.session import SessionExists, SessionWriter, new_session_path
from rlm_tui.cli import SUBCOMMANDS as COMMANDS
from rlm_tui.sessions.replay import Replayer
from rlm_tui.sessions.transcript import SessionLog
from sessions_sample import copy_sample

pytestmark = pytest.mark.kernel


def test_two_runs_in_the_same_second_get_two_files(tmp_path: Path) -> None:
    name = new_session_path(tmp_path)  # both runs pick the same time-stamped name
    first = SessionWriter(name, unique=True)
    second = SessionWriter(name, unique=True)
    for writer in (first, second):
        writer.write(writer.header())
        writer.close()
    assert first.path == name and second.path == tmp_path / f"{name.stem}-2.jsonl"
    for path in (first.path, second.path):
        assert len(path.read_text().splitlines()) == 1  # one header each, nothing shared


def test_an_existing_session_file_is_refused_unless_overwrite(tmp_path: Path) -> None:
    existing = tmp_path / "run.jsonl"
    existing.write_text("precious\n")
    with pytest.raises(SessionExists):
        SessionWriter(existing)
    assert existing.read_text() == "precious\n"
    writer = SessionWriter(existing, overwrite=True)
    writer.write(writer.header())
    writer.close()
    assert existing.read_text().count("\n") == 1 and "precious" not in existing.read_text()
    SessionWriter(Path(os.devnull)).close()  # a device is written as it is


def test_cli_refuses_an_existing_session_with_one_line_and_no_temp_folder(tmp_path: Path) -> None:
    existing = tmp_path / "run.jsonl"
    existing.write_text("precious\n")
    (tmp_path / "input.txt").write_text("hello\n")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    done = subprocess.run([PYTHON, "-m", "rlm_tui", str(tmp_path / "input.txt"), "q", "--headless",
                           "--session", str(existing)], capture_output=True, text=True, timeout=120,
                          env=cli_env(TMPDIR=str(tmpdir), OPENAI_API_KEY="sk-test"))  # past the key check
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "already exists" in done.stderr and "--overwrite-session" in done.stderr
    assert existing.read_text() == "precious\n"
    assert list(tmpdir.iterdir()) == []  # a setup error leaves no empty rlm-tui-XXXX folder


def test_a_second_header_is_flagged_not_merged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_sample(tmp_path / "two.jsonl")
    one = path.read_text()
    path.write_text(one + one)  # what two runs appending to one file used to leave
    second_line = one.count("\n") + 1
    log = SessionLog.read(path)
    assert [n for n, _ in log.bad_lines] == [second_line] and "second session header" in log.bad_lines[0][1]
    single = SessionLog.read(copy_sample(tmp_path / "one.jsonl"))
    assert [t.number for t in log.nodes[log.tree.root].turns] == [t.number for t in single.nodes[single.tree.root].turns]
    assert COMMANDS["replay"]([str(path), "--headless"]) == 0
    err = capsys.readouterr().err
    assert f"line {second_line}: a second session header" in err


def test_version_one_point_zero_is_version_one(tmp_path: Path) -> None:
    path = copy_sample(tmp_path / "v.jsonl")
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["version"] = 1.0
    path.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    assert SessionLog.read(path).answer is not None


def _damage(path: Path, kind: str, change) -> int:  # type: ignore[no-untyped-def]
    """Apply ``change`` to the first event of ``kind``; returns its line number."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        obj = json.loads(line)
        if obj["kind"] == kind:
            change(obj)
            lines[number - 1] = json.dumps(obj)
            path.write_text("\n".join(lines) + "\n")
            return number
    raise AssertionError(kind)


DAMAGE = {
    "usage-as-string": ("run_finished", lambda o: o.update(usage="lots")),
    "text-as-list": ("lm_finished", lambda o: o.update(text=[{"type": "text", "text": "hi"}])),
    "result-as-list": ("node_finished", lambda o: o.update(result=["a", "b"], error={"x": 1})),
    "tokens-as-string": ("lm_finished", lambda o: o.update(tokens_in="many", cost_usd=None)),
    "settings-as-list": ("run_started", lambda o: o.update(settings=[1], question=7)),
    "info-wrong": ("context_loaded", lambda o: o.update(info={"description": 5, "skipped": {"x": 1}})),
}


def damaged_files(folder: Path) -> dict[str, tuple[Path, int]]:
    files = {}
    for name, (kind, change) in DAMAGE.items():
        path = copy_sample(folder / f"{name}.jsonl")
        files[name] = (path, _damage(path, kind, change))
    for name, line in {"nested-100k": "[" * 100_000 + "]" * 100_000, "not-an-object": "[1, 2]",
                       "a-string": '"event"', "garbage": "\x00\xff{{{"}.items():
        path = copy_sample(folder / f"{name}.jsonl")
        lines = path.read_text().splitlines()
        lines.insert(3, line)
        path.write_text("\n".join(lines) + "\n")
        files[name] = (path, 4)
    return files


READERS = {
    "replay --headless": lambda p: ["replay", str(p), "--headless"],
    "export md": lambda p: ["export", str(p), "--to", "md", "-o", str(p.with_suffix(".md"))],
    "export ipynb": lambda p: ["export", str(p), "--to", "ipynb", "-o", str(p.with_suffix(".ipynb"))],
    "follow": lambda p: ["replay", str(p), "--follow", "--headless"],
    "resume": lambda p: ["resume", str(p), "--at", "99", "--headless"],  # reads it all, then refuses --at
}


@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_survives_damaged_files(reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, (path, line) in damaged_files(tmp_path).items():
        command, *args = READERS[reader](path)
        code = COMMANDS[command](args)  # in-process: a traceback would fail the test
        captured = capsys.readouterr()
        assert code in (0, 1, 2), (name, code)
        assert f"line {line}" in captured.err + captured.out, (name, captured.err[-500:])
        if reader == "resume":
            assert code == 2 and "--at must be between" in captured.err, (name, captured.err)


def test_sessions_lists_every_file_even_damaged_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = damaged_files(tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "deep-header.jsonl").write_text("[" * 100_000 + "\n")
    assert COMMANDS["sessions"](["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for path, _ in files.values():
        assert path.name in out
    assert "deep-header.jsonl" in out and "empty.jsonl" in out
    assert COMMANDS["sessions"](["--dir", str(tmp_path), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(files) + 2


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A copy of the sample, recorded (if not yet) outside the test's event loop, so any test order works."""
    return copy_sample(tmp_path / "list.jsonl")


@pytest.mark.ui
async def test_the_replay_app_shows_non_text_fields(sample_copy: Path) -> None:
    from rlm_tui.ui.replay import ReplayApp

    path = sample_copy
    _damage(path, "lm_finished", DAMAGE["text-as-list"][1])
    _damage(path, "node_finished", DAMAGE["result-as-list"][1])
    replayer = Replayer.open(path)
    app = ReplayApp(replayer, play=False, theme="rlm-midnight", remember_theme=False)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            app.move_to(len(replayer))
            await pilot.pause(0.3)
            for _ in range(8):  # every node's transcript, each drawn
                await pilot.press("down")
                await pilot.pause(0.05)
            assert app.is_running
    finally:
        replayer.close()


def test_follow_keeps_what_was_read_when_the_file_is_truncated(tmp_path: Path) -> None:
    path = copy_sample(tmp_path / "live.jsonl")
    replayer = Replayer.open(path, follow=True)
    total = len(replayer)
    with open(path, "r+b") as handle:
        handle.truncate(200)  # the writer's file cut short under the reader
    with pytest.raises(Exception, match="replaced or truncated"):
        replayer.refresh()
    tree = replayer.to_end()  # everything read before is still there (a mapped file would fault)
    assert len(replayer) == total and tree.answer is not None
    assert [e.kind for e in replayer.events(0, total)][-1] == "run_finished"
    replayer.close()
