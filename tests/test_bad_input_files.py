"""Bad input paths: each gives a working run with a report of what was skipped,
or a one-line error and exit code 2. Never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env, fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.scripted import ScriptedServer, turn_of

REPORT = fence("import json\nprint(json.dumps(sorted(context)) if isinstance(context, dict) else len(context))")


def _report_script(messages, model):
    return REPORT if turn_of(messages) == 1 else "FINAL(ok)"


def _as_user_without_root_powers() -> list[str]:
    """Root reads any file; drop the capabilities that allow it so permission bits apply."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def _cli(path: Path | str, tmp_path: Path, server: ScriptedServer | None = None,
         prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    api = ["--api-base", server.url] if server else []
    return subprocess.run([*(prefix or []), PYTHON, "-m", "rlm_tui", str(path), "q", "--headless",
                           "--model", "openai/scripted", *api, "--session", str(tmp_path / "s.jsonl")],
                          capture_output=True, text=True, timeout=300, env=cli_env(OPENAI_API_KEY="sk-test-bad"))


def _one_line_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rlm-tui: ")
    for needle in needles:
        assert needle in last, last
    return last


def test_nonexistent_path(tmp_path: Path) -> None:
    proc = _cli(tmp_path / "missing", tmp_path)
    assert _one_line_usage_error(proc, "no such file or directory") == proc.stderr.strip()


def test_symlink_loop_as_the_path(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    proc = _cli(loop, tmp_path)
    assert _one_line_usage_error(proc, "symbolic links") == proc.stderr.strip()


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with ScriptedServer(_report_script) as server:
        proc = _cli(tmp_path / "empty", tmp_path, server)
    _one_line_usage_error(proc, "no text files to read", "(it is empty)")
    assert not (tmp_path / "s.jsonl").exists()  # found before the session file is made: nothing left behind


def test_empty_file_and_empty_stdin_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    with ScriptedServer(_report_script) as server:
        proc = _cli(tmp_path / "empty.txt", tmp_path, server)
        _one_line_usage_error(proc, "is empty")
        piped = subprocess.run([PYTHON, "-m", "rlm_tui", "-", "q", "--headless", "--model", "openai/scripted",
                                "--api-base", server.url, "--session", str(tmp_path / "s.jsonl")], input="",
                               capture_output=True, text=True, timeout=300, env=cli_env(OPENAI_API_KEY="sk-test-bad"))
        _one_line_usage_error(piped, "is empty")
        assert server.requests == []
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.kernel
def test_a_fifo_as_path_is_refused_and_one_inside_a_directory_is_skipped(tmp_path: Path) -> None:
    """A named pipe with no writer would block the read for ever (seen: the run hung with no output)."""
    os.mkfifo(tmp_path / "pipe")
    root = tmp_path / "dir"
    root.mkdir()
    os.mkfifo(root / "inner.pipe")
    (root / "notes.txt").write_text("hello\n")
    with ScriptedServer(_report_script) as server:
        proc = _cli(tmp_path / "pipe", tmp_path, server)
        _one_line_usage_error(proc, "not a regular file or a directory")
        proc = _cli(root, tmp_path, server)
    assert proc.returncode == 0, proc.stderr
    assert "not a regular file" in proc.stderr  # reported as skipped, like binary files


@pytest.mark.kernel
def test_directory_of_only_binary_files(tmp_path: Path) -> None:
    root = tmp_path / "bin"
    root.mkdir()
    for i in range(3):
        (root / f"blob{i}.dat").write_bytes(bytes(range(256)) * 10)
    with ScriptedServer(_report_script) as server:
        proc = _cli(root, tmp_path, server)
    _one_line_usage_error(proc, "no text files to read", "3 binary")


def test_unreadable_file_as_the_path(tmp_path: Path) -> None:
    secret = tmp_path / "locked.txt"
    secret.write_text("no entry")
    secret.chmod(0)
    proc = _cli(secret, tmp_path, prefix=_as_user_without_root_powers())
    assert _one_line_usage_error(proc, "permission denied") == proc.stderr.strip()


@pytest.mark.kernel
def test_unreadable_files_inside_a_directory_are_skipped_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    (root / "closed").mkdir(parents=True)
    (root / "open.txt").write_text("readable\n")
    (root / "locked.txt").write_text("no entry\n")
    (root / "closed" / "inner.txt").write_text("hidden\n")
    (root / "locked.txt").chmod(0)
    (root / "closed").chmod(0)
    try:
        with ScriptedServer(_report_script) as server:
            proc = _cli(root, tmp_path, server, prefix=_as_user_without_root_powers())
            first_prompt = server.requests[0]["messages"][1]["content"]
    finally:
        (root / "closed").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert "skipped: 2 unreadable (Permission denied)" in proc.stderr  # the user sees what was left out
    info = next(e for e in load(tmp_path / "s.jsonl").events if e.kind == ev.CONTEXT_LOADED).get("info")
    assert info["files"] == 1
    assert sorted(info["skipped"]["unreadable (Permission denied)"]["examples"]) == ["closed/", "locked.txt"]
    assert "Not loaded:" in first_prompt  # and so does the model


@pytest.mark.kernel
async def test_2_gb_file_is_capped_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    with open(big, "wb") as handle:  # sparse: 2 GB on paper, a few MB on disk
        handle.write(b"first line of a huge log\n" * 40_000)
        handle.seek(2 * 1024**3 - 100)
        handle.write(b"the very end\n")
    run = await run_script(_report_script, big, tmp_path, max_context_bytes=5_000_000)
    assert run.result.answer == "ok"
    info = run.kinds(ev.CONTEXT_LOADED)[0].get("info")
    assert info["chars"] == 5_000_000 and info["truncated_bytes"] == 2 * 1024**3 - 87 - 5_000_000
    assert "The input was cut" in run.server.requests[0]["messages"][1]["content"]

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "small.txt").write_text("small\n")
    os.link(big, folder / "big.log")
    second = tmp_path / "second"
    second.mkdir()
    run = await run_script(_report_script, folder, second)
    info = run.kinds(ev.CONTEXT_LOADED)[0].get("info")
    assert info["files"] == 1 and info["skipped"]["larger than 10 MB"]["examples"] == ["big.log"]


@pytest.mark.kernel
async def test_undecodable_bytes_and_a_50_mb_line(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    root.mkdir()
    (root / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    (root / "mixed.txt").write_bytes(b"ok \xff\xfe\xfd ok")
    one_line = tmp_path / "line.txt"
    one_line.write_bytes(b"a" * 50_000_000)
    run = await run_script(_report_script, root, tmp_path)
    assert '["latin1.txt", "mixed.txt"]' in run.cell_text()
    run = await run_script(lambda m, model: fence("print(len(context), context.count('\\n'))")
                           if turn_of(m) == 1 else "FINAL(ok)", one_line, tmp_path / "second")  # a new session file
    assert "50000000 0" in run.cell_text() and run.result.answer == "ok"
    assert "a str of about 50,000,000 characters." in run.server.requests[0]["messages"][1]["content"]
    assert next(e for e in run.events if e.kind == ev.CONTEXT_LOADED).get("info")["lines"] == 1


@pytest.mark.kernel
async def test_symlink_loops_inside_a_directory(tmp_path: Path) -> None:
    root = tmp_path / "links"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "real.txt").write_text("real\n")
    (root / "sub" / "up").symlink_to("..")  # a directory loop
    (root / "self").symlink_to(root / "self")  # a file that points at itself
    (root / "dangling").symlink_to(root / "nowhere")
    run = await run_script(_report_script, root, tmp_path)
    assert run.result.answer == "ok"
    assert '["sub/real.txt"]' in run.cell_text()
    skipped = run.kinds(ev.CONTEXT_LOADED)[0].get("info")["skipped"]
    assert skipped["symlinked directory"]["examples"] == ["sub/up"]
    assert sum(v["count"] for k, v in skipped.items() if k.startswith("unreadable")) == 2


@pytest.mark.kernel
async def test_file_names_with_newlines_and_invalid_utf8(tmp_path: Path) -> None:
    root = tmp_path / "names"
    root.mkdir()
    (root / "new\nline.txt").write_text("newline name\n")
    with open(os.path.join(os.fsencode(root), b"bad\xffname.txt"), "wb") as handle:
        handle.write(b"bad name\n")
    weird_dir = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"dir\xfe"))  # the path itself, too
    os.mkdir(weird_dir)
    shutil.copytree(root, os.path.join(weird_dir, "names"))

    def script(messages, model):
        if turn_of(messages) == 1:
            return fence("import json\nprint(json.dumps(sorted(context)))\nprint(context['new\\nline.txt'].strip())")
        return "FINAL(ok)"

    for i, path in enumerate((root, Path(weird_dir) / "names")):
        run_dir = tmp_path / f"run{i}"  # each run its own session file (an existing one is refused)
        run = await run_script(script, path, run_dir)
        assert run.result.answer == "ok" and run.result.error is None
        text = run.cell_text()
        assert json.dumps(["bad\ufffdname.txt", "new\nline.txt"]) in text and "newline name" in text
        assert load(run_dir / "session.jsonl").bad_lines == []
        (run_dir / "session.jsonl").read_bytes().decode("utf-8")  # strict: load() would hide a raw 0xFE byte
