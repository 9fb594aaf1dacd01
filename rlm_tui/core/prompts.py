"""What the models are told. Kept in one place so behaviour changes are reviewable."""

from __future__ import annotations

from typing import Any

SYSTEM_MARKER = "You are a Recursive Language Model"

SYSTEM_PROMPT = SYSTEM_MARKER + """ (RLM). You answer a question about a \
context that is too large to read directly. The context is loaded in a Python REPL (a Jupyter \
kernel) as the variable `context`. You never see it unless your code prints parts of it.

Write Python in fenced blocks marked ```repl; each block runs in the REPL, in order, and you \
see what it prints (long output is cut, so print summaries, not whole files). State persists \
between blocks and turns. Available in the REPL:
- `context`: the input (its type and size are in the first message).
- `llm_query(prompt, model=None) -> str`: ask a language model about a piece of text \
(it cannot see `context`; put what it needs in the prompt; keep prompts well under its window).
- `llm_query_batched(prompts, model=None) -> list[str]`: many prompts at once, concurrently; \
results in order; a failed prompt gives an "Error: ..." string in its slot.
- `rlm_query(prompt, context=None, model=None) -> str`: hand a sub-task to a child RLM with its \
own REPL whose `context` is the value you pass (default: the prompt); `rlm_query_batched(prompts, contexts=None)`.
- In a cell that uses `await`, these four return awaitables: await every call there \
(`await asyncio.gather(*(llm_query(p) for p in ps))` runs them concurrently).
- `SHOW_VARS()`: list your variables.

Strategies that work: peek (`print(context[:2000])`), search with regex, split into chunks and \
map `llm_query_batched` over them, then combine; write a full program for structured tasks.
Sub-calls are limited and cost money: batch them and keep them purposeful.

When you know the answer, write FINAL(your answer) on its own line outside code, or \
FINAL_VAR(variable_name) to answer with a REPL variable's value (also callable in code), or set \
`answer["content"] = ...; answer["ready"] = True` in code. Do not answer before you have looked \
at the context with code."""

FIRST_TURN_NOTE = ("Start by looking at the context with code. Do not answer yet: you have not "
                   "seen any of it.")


def describe_context(info: dict[str, Any]) -> str:
    """The context's shape for the first message: type, size, files. Never its content."""
    kind = info.get("type", "str")
    chars = info.get("chars", 0)
    about, unit = ("about ", "bytes") if info.get("estimated") else ("", "chars")  # from file sizes, before loading
    parts = [f"Your context is a {kind} of {about}{chars:,} characters"]
    if "files" in info:
        parts[0] += f" in {about}{info['files']:,} files (keys are relative paths, values the file text)"
        largest = info.get("largest") or []
        if largest:
            listing = "\n".join(f"  {path}  ({size:,} {unit})" for path, size in largest)
            parts.append("Largest files:\n" + listing)
    elif "lines" in info:
        parts[0] += f" and {info['lines']:,} lines"
    elif "items" in info:
        parts[0] += f" with {info['items']:,} items"
    parts[0] += "."
    if info.get("truncated_bytes"):
        parts.append(f"The input was cut: the last {info['truncated_bytes']:,} bytes were not loaded.")
    skipped = info.get("skipped") or {}
    if skipped:
        listing = ", ".join(f"{v['count']} {reason}" for reason, v in skipped.items())
        parts.append(f"Not loaded: {listing}.")
    return "\n".join(parts)


def first_message(question: str, info: dict[str, Any], depth: int, max_depth: int) -> str:
    where = f"You are at recursion depth {depth} of {max_depth}."
    if depth >= max_depth:
        where += " Your rlm_query calls run as plain llm_query calls."
    return f"Question: {question}\n\n{describe_context(info)}\n{where}\n\n{FIRST_TURN_NOTE}"


FOLLOW_UP_ANSWER_CHARS = 600  # an earlier answer as the model is reminded of it


def follow_up_message(question: str, earlier: list[tuple[str, str | None, str | None, bool]], description: str,
                      variables: list[str], restarted: bool = False) -> str:
    """A follow-up's first message: the earlier questions and answers (short), the context's shape (this
    conversation starts afresh) and the REPL's variables (they live on, with `context`, unless its kernel
    died and was ``restarted``). An answer the user's own cell gave is marked as theirs."""
    parts = ["This is a follow-up in the same session. Earlier questions:"]
    for i, (asked, answer, stopped_by, by_user) in enumerate(earlier, start=1):
        said = truncate(answer, FOLLOW_UP_ANSWER_CHARS) if answer else f"(no answer: stopped by {stopped_by})"
        if answer and by_user:
            said = f"(the user answered it with their own code) {said}"
        parts.append(f"{i}. Q: {asked}\n   A: {said}")
    listing = ", ".join(variables) if variables else "(none besides `context`)"
    parts.append(description)
    if restarted:
        parts.append("The REPL's kernel died and was restarted: `context` is loaded again, but the variables "
                     f"made for the earlier questions are gone. Variables now: {listing}.")
    else:
        parts.append(f"The REPL kept its state: `context` and your variables: {listing}.")
    parts.append(f"New question: {question}\n\nUse what you already have where it helps; answer with FINAL(...).")
    return "\n\n".join(parts)


def feedback(outputs: list[str], variables: list[str], notes: list[str]) -> str:
    """The user message after a turn: each block's output, the REPL's variables, and notes."""
    parts = [f"Output of code block {i}:\n{out if out.strip() else '(no output)'}"
             for i, out in enumerate(outputs, start=1)]
    parts.extend(notes)
    if variables:
        parts.append("REPL variables: " + ", ".join(variables))
    return "\n\n".join(parts)


def user_cell_note(code: str, output: str, variables: list[str]) -> str:
    """Told to the root model with its next message: the user ran code in its REPL (output already capped)."""
    note = (f"The user ran this code in your REPL themselves:\n```repl\n{code.rstrip()}\n```\n"
            f"It printed:\n{output if output.strip() else '(no output)'}")
    return note + ("\n\nREPL variables now: " + ", ".join(variables) if variables else "")


NO_CODE_NOTE = ("Your reply had no ```repl code block, so nothing ran. Write code to work on the "
                "context, or answer with FINAL(...).")
UNTERMINATED_NOTE = "A ```repl block in your reply was never closed with ```, so it did not run."
EARLY_FINAL_NOTE = ("Your FINAL answer was not accepted: no code has run yet, so it cannot rest on the "
                    "context. Look at the context with code first.")
LAST_CHANCE = ("You have used all your turns. Give your best final answer now, as FINAL(your answer), "
               "based on what you have found.")


def truncate(text: str, limit: int) -> str:
    """Cut text for the model, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit:,} more characters]"
