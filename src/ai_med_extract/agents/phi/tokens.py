"""Word tokens with offsets and the casing facts the name and place layers use."""

from __future__ import annotations

import re
from dataclasses import dataclass

WORD = re.compile(r"[A-Za-z\u00C0-\u024F][A-Za-z\u00C0-\u024F']*(?:-[A-Za-z\u00C0-\u024F]+)*")


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int
    text: str
    low: str
    caps_line: bool  # the line is all capitals or all lowercase: letter case says nothing there

    @property
    def capitalised(self) -> bool:
        return self.text[:1].isupper()

    @property
    def proper(self) -> bool:
        """Capitalised where capitals carry meaning (a mixed-case line)."""
        return not self.caps_line and self.text[:1].isupper()


def _caps_lines(text: str) -> list[tuple[int, int, bool]]:
    out = []
    pos = 0
    for line in text.split("\n"):
        end = pos + len(line)
        lowers = sum(1 for c in line if c.islower())
        uppers = sum(1 for c in line if c.isupper())
        # no case signal: (almost) all capitals, or all lowercase with some words on the line
        caseless = (uppers > 0 and lowers <= uppers * 0.1) or (uppers == 0 and lowers > 20)
        out.append((pos, end, caseless))
        pos = end + 1
    return out


def tokenize(text: str) -> list[Token]:
    lines = _caps_lines(text)
    toks: list[Token] = []
    li = 0
    for m in WORD.finditer(text):
        s = m.start()
        while li < len(lines) - 1 and s > lines[li][1]:
            li += 1
        word = m.group(0)
        if word.endswith("'"):
            word = word[:-1]
        if word.lower().endswith("'s") and len(word) > 3:
            word = word[:-2]
        toks.append(Token(s, s + len(word), word, word.lower(), lines[li][2]))
    return toks


def gap(text: str, a: Token, b: Token) -> str:
    return text[a.end : b.start]


def sentence_start(text: str, tok: Token) -> bool:
    """True when the token opens a sentence or a line (capitals say little there)."""
    before = text[max(0, tok.start - 6) : tok.start].rstrip(" \t")
    return before == "" or before.endswith(("\n", ".", ":", "!", "?", ";", "-", ">", "*", ")", '"'))
