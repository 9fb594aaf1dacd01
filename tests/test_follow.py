"""Following a session file while something else writes it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT, cli_env, run_script
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.sessions.follow import follow
from sessions_sample import ANSWER, QUESTION, make_corpus, recorded_sample, script

pytestmark = pytest.mark.kernel


async def collect(path: Path, timeout: float = 60) -> tuple[list[ev.Event], list]:
    events: list[ev.Event] = []
    updates = []

    async def run() -> None:
        async for update in follow(path, poll_s=0.2):
            updates.append(update)
            if update.reset:
                events.clear()
            events.extend(update.events)

    await asyncio.wait_for(run(), timeout)
    return events, updates


async def test_follow_a_live_engine_run(tmp_path: Path) -> None:
    """The real engine writes the file while the follower reads it, in the same loop."""
    corpus = make_corpus(tmp_path / "corpus")
    session = tmp_path / "session.jsonl"
    follower = asyncio.create_task(collect(session))
    await asyncio.sleep(0.2)  # the follower starts before the file exists
    run = await run_script(script, corpus, tmp_path, question=QUESTION, max_depth=2, latency=0.05)
    events, updates = await follower
    assert run.result.answer == ANSWER
    assert len(updates) > 3  # it arrived in pieces, not at the end
    assert updates[-1].finished and events[-1].kind == ev.RUN_FINISHED
    assert [e.to_json() for e in events] == [e.to_json() for e in load(session).events]


@pytest.fixture
def source() -> list[bytes]:
    """The sample session's lines (recorded outside the test's event loop)."""
    return recorded_sample().path.read_bytes().splitlines(keepends=True)


async def test_follow_sees_partial_lines_whole(tmp_path: Path, source: list[bytes]) -> None:
    path = tmp_path / "live.jsonl"

    async def writer() -> None:
        await asyncio.sleep(0.2)
        with open(path, "wb") as handle:
            for line in source:
                for piece in (line[:7], line[7:30], line[30:]):  # each line in three writes
                    handle.write(piece)
                    handle.flush()
                    await asyncio.sleep(0.002)

    task = asyncio.create_task(writer())
    events, updates = await collect(path)
    await task
    assert all(not u.bad_lines for u in updates)
    assert len(events) == len(source) and updates[-1].finished
    assert events[-1].get("answer") == ANSWER


async def test_follow_a_file_replaced_by_rename(tmp_path: Path, source: list[bytes]) -> None:
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"".join(source[:10]))

    async def replace() -> None:
        await asyncio.sleep(0.5)
        fresh = tmp_path / ".live.tmp"
        fresh.write_bytes(b"".join(source[:20]))
        os.replace(fresh, path)  # an atomic rename over the followed file
        await asyncio.sleep(0.5)
        with open(path, "ab") as handle:
            handle.write(b"".join(source[20:]))

    task = asyncio.create_task(replace())
    events, updates = await collect(path)
    await task
    assert updates[0].events and len(updates[0].events) == 10 and not updates[0].reset
    assert any(u.reset for u in updates)
    assert len(events) == len(source) and updates[-1].finished


def test_headless_follow_prints_progress_until_the_run_ends(tmp_path: Path, source: list[bytes]) -> None:
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"".join(source[:5]))
    proc = subprocess.Popen([PYTHON, "-m", "rlm_tui", "replay", str(path), "--headless", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ROOT)
    try:
        with open(path, "ab") as handle:
            for start in range(5, len(source), 20):  # in pieces, while it follows
                time.sleep(0.3)
                handle.write(b"".join(source[start:start + 20]))
                handle.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "turn 1" in out and "turn 3" in out
    assert out.rstrip().endswith(f"the run has finished: answer: {ANSWER}")


def test_headless_follow_reads_a_replaced_file_from_its_start(tmp_path: Path, source: list[bytes]) -> None:
    """A file replaced by a rename (a new run written to the same name) is read again, whole."""
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"".join(source[:5]))
    proc = subprocess.Popen([PYTHON, "-m", "rlm_tui", "replay", str(path), "--headless", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ROOT)
    try:
        time.sleep(1.0)  # it has printed the first five events
        fresh = tmp_path / ".live.tmp"
        fresh.write_bytes(b"".join(source))  # the whole run, under a new inode
        os.replace(fresh, path)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    replaced = out.index("was replaced; reading it from the start")
    assert "turn 1" in out[replaced:] and "turn 3" in out[replaced:]  # the new file from its first turn
    assert out.rstrip().endswith(f"the run has finished: answer: {ANSWER}")
