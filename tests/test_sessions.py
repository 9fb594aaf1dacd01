"""Session files: damaged and unusual files, format versions, and the list of saved sessions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env
from rlm_tui.cli import main
from rlm_tui.core import events as ev
from rlm_tui.core.session import SessionFormatError, SessionWriter, load
from rlm_tui.sessions.index import SessionIndex
from rlm_tui.sessions.listing import list_sessions, summarize
from rlm_tui.sessions.replay import Replayer
from sessions_sample import ANSWER, QUESTION, copy_sample, recorded_sample

pytestmark = pytest.mark.kernel


def write_session(path: Path, events: list[ev.Event], created: str = "2026-11-20T09:00:00+00:00") -> Path:
    writer = SessionWriter(path)
    header = writer.header()
    header.data["created"] = created
    writer.write(header)
    for seq, event in enumerate(events, 1):
        event.seq = seq
        event.t = seq / 10
        writer.write(event)
    writer.close()
    return path


def small_run(question: str, answer: str | None, *, finished: bool = True, stopped_by: str | None = None,
              error: str | None = None, tokens: int = 1234, model: str = "openai/gpt-5-mini") -> list[ev.Event]:
    events = [
        ev.Event(ev.RUN_STARTED, data={"question": question, "path": "/data", "settings": {"model": model}}),
        ev.Event(ev.NODE_STARTED, "n0", None, {"node_kind": "root", "depth": 0, "model": model, "prompt": question}),
        ev.Event(ev.TURN_STARTED, "n0", None, {"turn": 1}),
        ev.Event(ev.LM_FINISHED, "n0", None, {"model": model, "text": "FINAL(x)", "tokens_in": tokens - 10,
                                              "tokens_out": 10, "cost_usd": 0.01, "cost_known": True}),
    ]
    if finished:
        events += [ev.Event(ev.NODE_FINISHED, "n0", None,
                            {"status": "done" if answer else "limit", "result": answer or ""}),
                   ev.Event(ev.RUN_FINISHED, data={"answer": answer, "stopped_by": stopped_by, "error": error,
                                                   "usage": {"total_tokens": tokens, "cost_usd": 0.01}, "calls": 0})]
    return events


# ---- damaged files ---------------------------------------------------------------------------


def test_torn_last_line_is_reported_and_the_rest_loads(tmp_path: Path) -> None:
    path = copy_sample(tmp_path / "torn.jsonl")
    data = path.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 40  # the middle of the last line (run_finished)
    path.write_bytes(data[:cut])
    lines = data[:cut].count(b"\n") + 1
    replay = Replayer.open(path)
    assert replay.bad_lines == [(lines, f"line {lines}: cut off (the run was stopped mid-write)")]
    assert len(replay) == lines - 1
    replay.to_end()
    assert replay.tree.answer == ANSWER  # final_answer is before the torn line
    assert not replay.tree.finished
    assert load(path).bad_lines and len(load(path).events) == len(replay)  # the core reader agrees


def test_corrupt_middle_lines_are_skipped_with_their_numbers(tmp_path: Path) -> None:
    path = copy_sample(tmp_path / "corrupt.jsonl")
    lines = path.read_bytes().split(b"\n")
    lines[5] = b'{"seq": 5, "t": 1.0, "kind": "kernel", "node": "n0", "parent": null, "sta'  # torn, no brace
    lines[9] = b"\x00\x00garbage\xff"
    lines[12] = b'{"seq": 12, "t": 1.0, "kind": "kernel", "node": "n0", "parent": null, "state": "x"} extra}'
    path.write_bytes(b"\n".join(lines))
    replay = Replayer.open(path)
    assert [n for n, _ in replay.bad_lines] == [6, 10]  # found by the index scan
    replay.to_end()
    assert replay.tree.answer == ANSWER and replay.tree.finished
    # Line 13 looks whole (prefix and closing brace): it is found when it is first decoded.
    decoded = list(replay.index.iter_events())
    assert [n for n, _ in replay.bad_lines] == [6, 10, 13]
    assert all(why.startswith(f"line {n}: unreadable") for n, why in replay.bad_lines)
    assert decoded[10].kind == ev.WARNING and "line 13" in decoded[10].get("message")


def test_lines_in_another_key_order_and_crlf_still_load(tmp_path: Path) -> None:
    path = copy_sample(tmp_path / "odd.jsonl")
    lines = path.read_bytes().split(b"\n")
    obj = json.loads(lines[3])
    lines[3] = json.dumps(dict(reversed(list(obj.items())))).encode()  # the slow path decodes it
    path.write_bytes(b"\r\n".join(lines))
    replay = Replayer.open(path)
    assert replay.bad_lines == []
    assert replay.index.event(3).kind == obj["kind"]
    replay.to_end()
    assert replay.tree.answer == ANSWER


def test_newer_format_version_is_refused_clearly(tmp_path: Path) -> None:
    path = copy_sample(tmp_path / "future.jsonl")
    lines = path.read_text().split("\n")
    header = json.loads(lines[0])
    header["version"] = ev.FORMAT_VERSION + 1
    lines[0] = json.dumps(header)
    path.write_text("\n".join(lines))
    with pytest.raises(SessionFormatError, match=f"version {ev.FORMAT_VERSION + 1} is newer"):
        SessionIndex.open(path)
    done = subprocess.run([PYTHON, "-m", "rlm_tui", "replay", str(path), "--headless"], capture_output=True,
                          text=True, env=cli_env(), timeout=60)
    assert done.returncode == 2
    assert "newer than this rlm-tui understands" in done.stderr and "upgrade" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_not_a_session_file_and_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "notes.jsonl"
    other.write_text('{"hello": 1}\n{"kind": "x"}\n')
    with pytest.raises(SessionFormatError, match="not an rlm-tui session file"):
        SessionIndex.open(other)
    assert main(["replay", str(other), "--headless"]) == 2
    text = tmp_path / "readme.txt"
    text.write_text("just text\n")
    assert main(["export", str(text), "--to", "md"]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["replay", str(empty), "--headless"]) == 2
    assert main(["replay", str(tmp_path), "--headless"]) == 2
    assert main(["export", "/dev/null", "--to", "md"]) == 2
    err = capsys.readouterr().err
    assert "not an rlm-tui session file" in err and "is empty" in err
    assert "is a directory" in err and "not a regular file" in err


def test_unknown_event_kinds_are_kept_and_skipped_by_readers(tmp_path: Path) -> None:
    """Compatibility: a newer minor writer may add kinds; readers of the same version ignore them."""
    path = copy_sample(tmp_path / "extra.jsonl")
    lines = path.read_text().split("\n")
    lines.insert(4, json.dumps({"seq": 99, "t": 0.5, "kind": "future_thing", "node": "n0", "parent": None,
                                "x": [1, 2]}))
    path.write_text("\n".join(lines))
    replay = Replayer.open(path)
    assert replay.index.kind(4) == "future_thing"
    replay.to_end()
    assert replay.tree.answer == ANSWER
    assert main(["replay", str(path), "--headless"]) == 0


def test_index_grows_with_the_file_and_waits_for_a_whole_line(tmp_path: Path) -> None:
    source = recorded_sample().path.read_bytes()
    path = tmp_path / "growing.jsonl"
    path.write_bytes(source[:1])
    index = SessionIndex(path, complete=False)
    assert index.refresh() == 0
    seen = 0
    for end in range(1, len(source), 997):  # arbitrary cut points, mostly mid-line
        path.write_bytes(source[:end])
        index.refresh()
        assert len(index) >= seen
        seen = len(index)
        assert index.bad_lines == []
    path.write_bytes(source)
    index.refresh()
    assert len(index) == source.count(b"\n")
    assert [e.to_json() for e in index.iter_events()] == [e.to_json() for e in load(path).events]


# ---- the list of sessions ---------------------------------------------------------------------


def test_sessions_are_listed_newest_first_from_head_and_tail(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    write_session(folder / "a.jsonl", small_run("oldest question", "an answer"), "2026-11-18T09:00:00+00:00")
    write_session(folder / "b.jsonl", small_run("limit question", None, stopped_by="budget"),
                  "2026-11-19T09:00:00+00:00")
    write_session(folder / "c.jsonl", small_run("killed question", None, finished=False), "2026-11-20T09:00:00+00:00")
    write_session(folder / "d.jsonl", small_run("broken question", None, error="authentication failed"),
                  "2026-11-21T09:00:00+00:00")
    (folder / "notes.txt").write_text("not a session")
    (folder / "junk.jsonl").write_text("garbage\n")
    sessions = list_sessions(folder)
    names = [s.path.name for s in sessions]
    assert names == ["d.jsonl", "c.jsonl", "b.jsonl", "a.jsonl", "junk.jsonl"]  # unreadable ones last
    by_name = {s.path.name: s for s in sessions}
    assert by_name["a.jsonl"].answer == "an answer" and by_name["a.jsonl"].outcome == "answered"
    assert by_name["a.jsonl"].tokens == 1234 and by_name["a.jsonl"].cost_usd == 0.01
    assert by_name["a.jsonl"].question == "oldest question" and by_name["a.jsonl"].model == "openai/gpt-5-mini"
    assert by_name["b.jsonl"].outcome == "stopped by budget"
    assert by_name["c.jsonl"].outcome == "unfinished" and by_name["c.jsonl"].tokens is None
    assert by_name["d.jsonl"].outcome == "error: authentication failed"
    assert by_name["junk.jsonl"].outcome.startswith("unreadable")


def test_each_question_of_a_session_is_listed_with_how_it_ended(tmp_path: Path) -> None:
    """run_finished's ``outcomes``: each row of a session of several questions says how its own question
    ended; a damaged entry reads as unknown, and a file written before ``outcomes`` lists as it did."""
    from rlm_tui.sessions.listing import format_table

    def asked(outcomes: object | None) -> list[ev.Event]:
        events = small_run("first question", "forty-two")
        events[-1].data["questions"] = ["first question", "second question", "third question"]
        if outcomes is not None:
            events[-1].data["outcomes"] = outcomes
        return events

    newer = summarize(write_session(tmp_path / "new.jsonl", asked([
        {"answer": None, "stopped_by": "timeout", "error": None},
        {"answer": None, "stopped_by": "error", "error": "HTTP 500 \x1b[2J"},
        {"answer": "forty-two", "stopped_by": None, "error": None}])))
    assert newer.outcomes == ["stopped by timeout", "error: HTTP 500 \x1b[2J", "forty-two"]
    rows = format_table([newer]).splitlines()[1:]
    assert "first question" in rows[0] and "stopped by timeout" in rows[0] and "forty-two" not in rows[0]
    assert "2. second question" in rows[1] and "error: HTTP 500 \\x1b[2J" in rows[1] and "\x1b" not in rows[1]
    assert "3. third question" in rows[2] and rows[2].rstrip().endswith("forty-two")
    damaged = summarize(write_session(tmp_path / "damaged.jsonl", asked([7, {"answer": ["x"]}, None])))
    assert damaged.outcomes == ["unknown", "stopped by an unknown cause", "unknown"]
    older = summarize(write_session(tmp_path / "old.jsonl", asked(None)))
    assert older.outcomes is None and older.answer == "forty-two"
    assert "forty-two" in format_table([older]).splitlines()[1]  # the last answer, on the first row as before


def test_summary_reads_only_head_and_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = small_run("big one", None, finished=False)
    events += [ev.Event(ev.CELL_OUTPUT, "n0", None, {"cell": 1, "stream": "stdout", "text": "x" * 10_000})
               for _ in range(300)]
    events += small_run("big one", "done")[-2:]
    path = write_session(tmp_path / "big.jsonl", events)
    read: list[int] = []
    real_open = open

    class Counting:
        def __init__(self, handle):  # type: ignore[no-untyped-def]
            self.handle = handle

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.handle, name)

        def read(self, *args):  # type: ignore[no-untyped-def]
            data = self.handle.read(*args)
            read.append(len(data))
            return data

        def readline(self, *args):  # type: ignore[no-untyped-def]
            data = self.handle.readline(*args)
            read.append(len(data))
            return data

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.handle.close()

    monkeypatch.setattr("builtins.open", lambda *a, **k: Counting(real_open(*a, **k)))
    summary = summarize(path)
    assert summary.answer == "done"
    assert sum(read) < 100_000 < os.path.getsize(path) / 10


def test_sessions_command_lists_and_opens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sessions"
    copy_sample(folder / "20261121-100000.jsonl")
    write_session(folder / "older.jsonl", small_run("older question", "42"), "2020-01-01T00:00:00+00:00")
    assert main(["sessions", "--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line[:3].strip().isdigit()]
    assert len(rows) == 2 and QUESTION[:30] in rows[0] and "older question" in rows[1]
    assert "openai/gpt-4o-mini" in rows[0] and "22 files; child said" in rows[0]
    assert main(["sessions", "--dir", str(folder), "--json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["question"] for o in objects] == [QUESTION, "older question"]
    assert objects[0]["tokens"] > 0 and objects[0]["outcome"] == "answered"
    assert main(["sessions", "--dir", str(folder), "--open", "2", "--headless"]) == 0
    assert "older question" in capsys.readouterr().out
    assert main(["sessions", "--dir", str(folder), "--open", "9"]) == 2
    assert main(["sessions", "--dir", str(tmp_path / "missing")]) == 2
