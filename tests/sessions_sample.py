"""One scripted run recorded once per test process, shared by the session tests.

The run has three root turns over a small directory: turn 1 counts the files
and calls llm_query; turn 2 runs two cells (a batch of three, then a child RLM
at depth 2 whose cell calls llm_query, then an error); turn 3 builds the
answer from the REPL state and returns it with FINAL_VAR. Tests must copy the
file before changing it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conftest import Run, fence, run_script
from rlm_tui.scripted import is_rlm_call, question_of, turn_of

QUESTION = "How many files, and what does the child say?"
ANSWER = "22 files; child said child done"


def script(messages, model):  # type: ignore[no-untyped-def]
    if not is_rlm_call(messages):
        return "summary: " + messages[-1]["content"][:24]
    turn = turn_of(messages)
    if question_of(messages).startswith("child task"):
        if turn == 1:
            return fence("x = llm_query('hi from child')\nprint(len(context), x)")
        return "FINAL(child done)"
    if turn == 1:
        return fence("found = len(context)\nprint('files', found)\nnote = llm_query('summarise part 1')\nprint(note)")
    if turn == 2:
        return ("Two steps.\n```repl\nr = llm_query_batched(['a', 'b', 'c'])\nprint(r)\n```\n"
                "```repl\nc = rlm_query('child task', context='abc')\nprint(c)\n1/0\n```\n")
    return fence("result = f'{found} files; child said {c}'\nprint(result)") + "FINAL_VAR(result)\n"


@dataclass
class Sample:
    path: Path  # the session file
    corpus: Path  # the input directory
    run: Run


_cache: dict[str, Sample] = {}


def make_corpus(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    for i in range(21):
        (root / "src" / f"file{i}.txt").write_text(f"line of filler {i}\n" * 20)
    (root / "notes.md").write_text("the magic number is 7316\n")
    return root


def recorded_sample() -> Sample:
    """The sample run, recorded on first use (real kernel, real litellm, scripted model)."""
    if "sample" not in _cache or not _cache["sample"].path.exists():  # a new test session emptied TMP
        tmp = Path(tempfile.mkdtemp(prefix="sample-"))  # in the test session's own folder (conftest.TMP)
        corpus = make_corpus(tmp / "corpus")
        run = asyncio.run(run_script(script, corpus, tmp, question=QUESTION, max_depth=2,
                                     model="openai/gpt-4o-mini"))
        assert run.result.answer == ANSWER, run.result
        _cache["sample"] = Sample(tmp / "session.jsonl", corpus, run)
    return _cache["sample"]


def copy_sample(dest: Path) -> Path:
    """A private copy of the sample's session file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(recorded_sample().path, dest)
    return dest
