"""The scenario behind ``rlm-tui demo`` (``cli/demo.py``): a bundled, scripted run. No API key, no network.

The replies come from ``script`` through a local ``ScriptedServer``; everything
else is real: the engine, Jupyter kernels running the code below, litellm,
the session file. The scenario exercises what the UI must show: a batch of
llm calls, an error in a cell, a child RLM that makes its own llm call (depth
2), and a final answer. Costs are priced as gpt-5 (root) and gpt-5-mini
(sub-calls) so the money columns look like a real run's; the header says it is
scripted.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .core.config import Limits, Settings
from .scripted import ScriptedServer, is_rlm_call, question_of, turn_of

QUESTION = "When is the product launch, and who objected to the date?"
CHILD_QUESTION = "Who objected to moving the launch date, and why?"
BADGE = "SCRIPTED DEMO · canned replies, priced as gpt-5"
ROOT_MODEL, SUB_MODEL = "openai/gpt-5", "openai/gpt-5-mini"

NOTES = {
    "2024-03-05-kickoff.md": (
        "# Kick-off, 2024-03-05\n\nAttendees: Ana, Ben, Dana, Lee.\n\n"
        "Decision: the launch is planned for 2024-05-02.\n\n"
        "Ben owns QA; Dana owns the marketing campaign (six weeks of lead time).\n"),
    "2024-03-12-review.md": (
        "# QA review, 2024-03-12\n\nAttendees: Ana, Ben, Dana.\n\n"
        "Ben reported 14 open blockers; QA needs two more weeks.\n\n"
        "Decision: move the launch to 2024-05-16.\n\n"
        "Dana objected: the move cuts the campaign window, since ads are booked from 2024-05-01, "
        "and the press embargo cannot move.\n"),
    "2024-03-19-sync.md": (
        "# Weekly sync, 2024-03-19\n\nAttendees: Ana, Lee.\n\n"
        "Launch date confirmed: 2024-05-16.\nLee will update the website copy.\n"),
}

SUMMARY_PROMPT = "List the decisions about the launch in these notes, one line each:"
READ_PROMPT = "Who objects in this paragraph, and why? Answer in one sentence."

ROOT_TURNS = [
    "Let me see what the notes contain before anything else.\n```repl\n"
    "for name in sorted(context):\n"
    "    text = context[name]\n"
    "    print(f\"{name}: {len(text):,} chars, {text.splitlines()[0]}\")\n```\n",

    "Three meeting notes. I'll have a sub-model list the launch decisions in each, in parallel.\n```repl\n"
    "names = sorted(context)\n"
    f"summaries = llm_query_batched([f\"{SUMMARY_PROMPT}\\n\\n{{context[n]}}\" for n in names])\n"
    "for name, summary in zip(names, summaries):\n"
    "    print(f\"--- {name}\\n{summary}\")\n```\n",

    "Each summary should name a launch date; let me collect them.\n```repl\n"
    "dates = {n: s.split(\"Launch date: \")[1].split()[0] for n, s in zip(names, summaries)}\n"
    "print(dates)\n```\n",

    "One summary has no `Launch date:` line, so that failed; the dates are clear anyway "
    "(2024-05-02, moved to 2024-05-16). The objection needs a closer read: I'll give the review "
    "meeting to a sub-RLM.\n```repl\n"
    f"objection = rlm_query(\"{CHILD_QUESTION}\", context=context[\"2024-03-12-review.md\"])\n"
    "print(objection)\n```\n",

    "Both parts are answered.\n\n"
    "FINAL(The launch is on **2024-05-16**: it was planned for 2024-05-02 and moved at the "
    "2024-03-12 QA review because of 14 open blockers. **Dana** (marketing) objected: the move cuts "
    "the campaign window, with ads booked from 2024-05-01 and a press embargo that cannot move.)",
]

CHILD_TURNS = [
    "I'll find the paragraph that mentions an objection and have a sub-model read it.\n```repl\n"
    "paragraphs = [p for p in context.split(\"\\n\\n\") if \"object\" in p.lower()]\n"
    "print(len(paragraphs), \"paragraph(s) mention an objection\")\n"
    f"reason = llm_query(\"{READ_PROMPT}\\n\\n\" + paragraphs[0])\n"
    "print(reason)\n```\n",

    "FINAL_VAR(reason)",
]

SUMMARIES = {
    "Kick-off": "Launch date: 2024-05-02 (planned).\nBen owns QA; Dana owns the campaign.",
    "QA review": "Launch date: 2024-05-16 (moved from 2024-05-02; QA needs two more weeks).\n"
                 "Dana objected to the move.",
    "Weekly sync": "The 2024-05-16 date was confirmed.\nLee updates the website copy.",
}
READ_ANSWER = ("Dana (marketing) objects: moving the launch cuts the campaign window, because ads are "
               "booked from 2024-05-01 and the press embargo cannot move.")

#: Seconds each kind of reply takes, so the run unfolds at a watchable pace (about 15 s in all).
DELAYS = {"root": 1.0, "child": 0.8, "summary": (0.5, 0.9, 1.3), "read": 0.8}


def script(messages: list[dict[str, Any]], model: str, pace: float = 1.0) -> str:
    """The scripted model: picks the next reply from who is asking (root, child RLM, llm call)."""
    if is_rlm_call(messages):
        child = question_of(messages) == CHILD_QUESTION
        turns = CHILD_TURNS if child else ROOT_TURNS
        time.sleep(pace * DELAYS["child" if child else "root"])
        return turns[min(turn_of(messages), len(turns)) - 1]
    prompt = str(messages[-1].get("content", ""))
    if prompt.startswith(READ_PROMPT):
        time.sleep(pace * DELAYS["read"])
        return READ_ANSWER
    for i, (title, summary) in enumerate(SUMMARIES.items()):
        if f"# {title}" in prompt:
            time.sleep(pace * DELAYS["summary"][i])
            return summary
    return "I cannot tell from this text."


def demo_settings(api_base: str) -> Settings:
    return Settings(model=ROOT_MODEL, sub_model=SUB_MODEL, api_base=api_base, api_key="scripted-demo-no-key",
                    limits=Limits(max_depth=2, max_iterations=10, budget=1.0, max_tokens=200_000,
                                  timeout=600.0))


def start_demo(pace: float = 1.0) -> tuple[Settings, Path, contextlib.ExitStack]:
    """Write the notes to a temporary folder and start the scripted server; the stack undoes both."""
    stack = contextlib.ExitStack()
    folder = Path(tempfile.mkdtemp(prefix="rlm-tui-demo-")) / "meeting-notes"
    folder.mkdir()
    stack.callback(shutil.rmtree, folder.parent, ignore_errors=True)
    for name, text in NOTES.items():
        (folder / name).write_text(text, encoding="utf-8")
    server = ScriptedServer(lambda messages, model: script(messages, model, pace)).start()
    stack.callback(server.stop)
    return demo_settings(server.url), folder, stack
