"""The reply parser never fails, whatever a model writes (hypothesis fuzzing)."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rlm_tui.core.parsing import CODE_LANGS, parse_reply

# Text made of the pieces that matter to the parser, mixed with anything at all.
TOKENS = st.sampled_from(["```", "```repl", "```python", "```py", "```bash", "~~~", "~~~repl", "````",
                          "\n", " ", "\t", "FINAL(", "FINAL_VAR(", ")", "(", "'", '"', '"""', "**",
                          "answer", "x", "print(1)", "\r\n", "\x00", "é", "\U0001f600"])
REPLIES = st.lists(st.one_of(TOKENS, st.text(max_size=20)), max_size=60).map("".join)
CODE_LINE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="`~\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                    max_size=40)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REPLIES)
@example("```repl\n")
@example("FINAL(")
@example("FINAL_VAR()")
@example("```\n```repl\nx\n")
@example("~~~~\n```repl\nprint(1)\n```\n~~~~")
def test_parse_never_raises_and_returns_pieces_of_the_reply(reply: str) -> None:
    parsed = parse_reply(reply)
    for block in parsed.code_blocks:
        assert block.strip() and block in reply
    if parsed.final is not None:
        assert isinstance(parsed.final, str)
    if parsed.final_var is not None:
        assert parsed.final_var and parsed.final_var in reply
    assert isinstance(parsed.unterminated, bool)


@settings(max_examples=500, deadline=None)
@given(st.lists(CODE_LINE.filter(lambda line: line.strip()), min_size=1, max_size=8),
       st.sampled_from(sorted(CODE_LANGS)), st.text(st.characters(blacklist_characters="`~F"), max_size=30))
def test_a_fenced_block_round_trips(lines: list[str], lang: str, prose: str) -> None:
    code = "\n".join(lines) + "\n"
    parsed = parse_reply(f"{prose}\n```{lang}\n{code}```\nmore prose")
    assert parsed.code_blocks == [code]
    assert not parsed.unterminated


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(blacklist_characters="()\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=80))
def test_final_text_round_trips(answer: str) -> None:
    parsed = parse_reply(f"Some reasoning.\nFINAL({answer})\n")
    text = answer.strip()  # the answer, or the answer without one pair of the same quotes around it
    assert parsed.final == text or any(len(text) >= 2 * len(q) and text.startswith(q) and text.endswith(q)
                                       and parsed.final == text[len(q):-len(q)].strip()
                                       for q in ('"""', "'''", '"', "'"))


def test_final_inside_code_does_not_count() -> None:
    parsed = parse_reply("```repl\nFINAL(not this)\n```\n")
    assert parsed.final is None and parsed.code_blocks == ["FINAL(not this)\n"]


def test_huge_reply_parses_in_reasonable_time() -> None:
    reply = ("```repl\nprint(1)\n```\n" * 5_000) + ("(" * 100_000) + "\nFINAL(" + ("x" * 1_000_000)
    parsed = parse_reply(reply)
    assert len(parsed.code_blocks) == 5_000 and parsed.final == "x" * 1_000_000


# Exact FINAL(...) arguments: written after `mutmut` (see README, Mutation testing) left 29 mutants of
# _balanced and _unquote alive: nested parentheses, an unclosed FINAL, quotes of each kind.
FINAL_CASES = {
    "FINAL(f(a) and (b))": "f(a) and (b)",
    "FINAL((1 + 2) * 3) then prose": "(1 + 2) * 3",
    "FINAL(x) and more (y)": "x",
    "FINAL(open (paren": "open (paren",
    "FINAL(unclosed but (a) ends)": "unclosed but (a) ends",
    "FINAL(a) b) c)": "a",
    'FINAL("quoted")': "quoted",
    "FINAL('single')": "single",
    'FINAL("""  triple  """)': "triple",
    "FINAL('''three''')": "three",
    'FINAL(")': '"',
    "FINAL('')": "",
    'FINAL("a" and "b")': 'a" and "b',
    "FINAL(  spaced  )": "spaced",
}


def test_final_arguments_exactly() -> None:
    for reply, expected in FINAL_CASES.items():
        assert parse_reply("looked at it\n" + reply).final == expected, reply
