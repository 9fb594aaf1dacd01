"""Hostile text never reaches the terminal raw (issue 15, finding 1).

A scripted model sends an OSC 52 clipboard write in its prose and in a sub-call's reply, and
answers with a screen wipe, an alternate-screen exit, a title change and a C1 cursor request;
the repository has a file whose name sets the terminal title. Each presenter runs on a real
pseudo-terminal and the bytes it wrote are checked; each attack is also shown to succeed with
the sanitiser replaced by a pass-through (``hostile_pty.run_in_pty(disable_sanitiser=True)``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from hostile_pty import C1_CSI, CLIPBOARD, TITLE, WIPE, run_in_pty
from rlm_tui.core.safe_text import safe, safe_json
from rlm_tui.scripted import ScriptedServer, is_rlm_call, turn_of

pytestmark = pytest.mark.kernel

ANSWER = f"done {WIPE.decode()} {TITLE.decode()} {C1_CSI.decode()} end"
ATTACKS = (TITLE, CLIPBOARD, WIPE, C1_CSI)


def script(messages, model):  # type: ignore[no-untyped-def]
    if not is_rlm_call(messages):
        return f"sub reply {CLIPBOARD.decode()}"
    if turn_of(messages) == 1:
        return (f"Looking {CLIPBOARD.decode()} now.\n```repl\nprint(llm_query('hi'))\n"
                "print(sorted(context))\n```\n")
    return f"FINAL({ANSWER})\n"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "repo"
    corpus.mkdir()
    (corpus / f"a{TITLE.decode()}.txt").write_text("a file with a hostile name\n" * 20)
    (corpus / "b.txt").write_text("plain\n")
    with ScriptedServer(script) as server:
        yield root, corpus, server


def run_args(corpus: Path, server: ScriptedServer, session: Path, *extra: str) -> list[str]:
    return [str(corpus), "What is here?", "--model", "openai/scripted", "--api-base", server.url,
            "--api-key", "sk-test-not-a-real-key-1234", "--session", str(session), *extra]


def no_attack(out: bytes) -> None:
    for attack in ATTACKS:
        assert attack not in out, (attack, out[-3000:])


def test_safe_shows_controls_and_keeps_text() -> None:
    assert safe("a\x1b]0;T\x07b\x9b6n\u202ec") == "a\\x1b]0;T\\x07b\\x9b6n\\u202ec"
    assert safe("line\r\nnext\rover\ttab") == "line\nnext\\x0dover\ttab"
    assert safe("\x1b[31mred\x1b[0m\x1b[2J", sgr="keep") == "\x1b[31mred\x1b[0m\\x1b[2J"
    assert safe("\x1b[31mred\x1b[0m\x1b]8;;x\x07", sgr="drop") == "red\\x1b]8;;x\\x07"
    assert safe(["parts", {"text": "hi"}]) == '["parts", {"text": "hi"}]' and safe(None) == ""
    assert safe(safe("\x1b\x9b")) == safe("\x1b\x9b")  # idempotent: a second pass changes nothing
    line = safe_json({"answer": "\x9b6n\x7f\x1b"})
    assert "\x9b" not in line and "\x7f" not in line and "\x1b" not in line
    assert json.loads(line) == {"answer": "\x9b6n\x7f\x1b"}  # the value is unchanged for programs


def test_headless_and_json_write_no_escape_sequences(hostile) -> None:  # type: ignore[no-untyped-def]
    root, corpus, server = hostile
    code, out = run_in_pty(run_args(corpus, server, root / "headless.jsonl", "--headless"))
    assert code == 0, out[-2000:]
    no_attack(out)
    assert b"done \\x1b[2J\\x1b[?1049l \\x1b]0;PWNED-TITLE\\x07 \\x9b6n end" in out  # shown, visibly
    code, out = run_in_pty(run_args(corpus, server, root / "json.jsonl", "--headless", "--json"))
    assert code == 0, out[-2000:]
    no_attack(out)
    line = next(l for l in out.decode().splitlines() if l.startswith("{"))
    assert json.loads(line)["answer"] == ANSWER  # JSON escapes, the value stays exact

    code, out = run_in_pty(run_args(corpus, server, root / "raw.jsonl", "--headless"), disable_sanitiser=True)
    assert code == 0 and WIPE in out and TITLE in out and C1_CSI in out  # the attack, unprotected
    code, out = run_in_pty(run_args(corpus, server, root / "raw-json.jsonl", "--headless", "--json"),
                           disable_sanitiser=True)
    assert C1_CSI in out


def test_replay_sessions_and_export_write_no_escape_sequences(hostile) -> None:  # type: ignore[no-untyped-def]
    root, corpus, server = hostile
    session = root / "runs" / "recorded.jsonl"
    session.parent.mkdir()
    code, out = run_in_pty(run_args(corpus, server, session, "--headless"))
    assert code == 0, out[-2000:]
    commands = {
        "replay": ["replay", str(session), "--headless"],
        "sessions": ["sessions", "--dir", str(session.parent)],
        "sessions --json": ["sessions", "--dir", str(session.parent), "--json"],
        "export md": ["export", str(session), "--to", "md", "-o", "-"],
        "follow": ["replay", str(session), "--follow", "--headless"],
    }
    for name, args in commands.items():
        code, out = run_in_pty(args)
        assert code == 0, (name, out[-2000:])
        no_attack(out)
        assert b"\\x1b" in out or b"\\u009b" in out, name  # something was there, and it is shown
        code, raw = run_in_pty(args, disable_sanitiser=True)
        assert any(attack in raw for attack in ATTACKS), name  # unprotected, the attack gets through
    assert b"\\x1b]52;c;UFdORUQ=\\x07" in run_in_pty(commands["replay"])[1]  # the clipboard write, in a cell


@pytest.mark.ui
def test_the_app_writes_no_escape_sequences(hostile) -> None:  # type: ignore[no-untyped-def]
    root, corpus, server = hostile

    def app_run(session: Path, disable: bool) -> bytes:
        sent: list[float] = []

        def keys(elapsed: float) -> bytes | None:
            done = session.exists() and b'"final_answer"' in session.read_bytes()  # the app then takes
            # a follow-up question until q
            if done and (not sent or elapsed - sent[-1] > 3):
                sent.append(elapsed)
                if len(sent) == 1:
                    time.sleep(1.0)  # let the app draw the answer first
                return b"q"
            return None

        code, out = run_in_pty(run_args(corpus, server, session), keys=keys, disable_sanitiser=disable,
                               timeout=180)
        assert code == 0 and sent, out[-2000:]
        return out

    no_attack(app_run(root / "app.jsonl", False))
    raw = app_run(root / "app-raw.jsonl", True)
    assert TITLE in raw or CLIPBOARD in raw or WIPE in raw  # unprotected, the app passes them on


def test_a_copy_of_the_hostile_session_keeps_the_raw_text(hostile) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = hostile
    recorded = next(root.glob("headless.jsonl"), None) or next(root.glob("*.jsonl"))
    copy = root / "copy.jsonl"
    shutil.copyfile(recorded, copy)
    lines = [json.loads(line) for line in copy.read_text().splitlines()]
    answers = [e["answer"] for e in lines if e["kind"] == "run_finished"]
    assert answers == [ANSWER]  # the session file is the record: raw, not sanitised
