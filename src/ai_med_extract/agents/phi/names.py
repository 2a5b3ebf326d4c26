"""Name layer: cues (titles, relatives, credentials after signatures), dictionaries, propagation.

Decisions are by token. A *strong* position (right after "Dr." or "Mrs.", or a signature line)
accepts any word that is not a stop word; a *weak* position needs name evidence from the
dictionaries (a census first name or surname that is not an ordinary English word, or a word no
dictionary knows) and, on mixed-case lines, a capital letter.
"""

from __future__ import annotations

import re

from ai_med_extract.agents.phi.lexicon import Lexicon
from ai_med_extract.agents.phi.tokens import Token, gap, sentence_start
from ai_med_extract.agents.phi.types import PhiLabel, PhiSpan

TITLES = frozenset({"dr", "drs", "doctor", "doctors", "dr's", "mr", "mrs", "ms", "miss", "mister", "prof", "np"})
RELATIVES = frozenset({
    "wife", "husband", "son", "sons", "daughter", "daughters", "mother", "mom", "father", "dad", "sister",
    "sisters", "brother", "brothers", "niece", "nephew", "grandson", "granddaughter", "grandmother",
    "grandfather", "grandchild", "aunt", "uncle", "cousin", "friend", "fiance", "fiancee", "partner",
    "boyfriend", "girlfriend", "neighbor", "neighbour", "hcp", "proxy", "guardian", "sibling", "dtr",
    "dau", "spouse", "caregiver", "companion", "stepson", "stepdaughter", "godson", "goddaughter",
    "grandma", "grandpa", "spokesperson", "neice", "grandchildren", "children", "kids", "parents", "grandsons",
    "granddaughters", "relatives", "nephews", "nieces", "daughter-in-law", "son-in-law",
})  # fmt: skip
CREDENTIALS = frozenset({
    "rn", "rrt", "np", "md", "lpn", "cna", "pa-c", "msw", "licsw", "lcsw", "rd", "bsn", "pharmd", "slp",
    "otr", "dpt", "crnp", "aprn", "cnm", "rph", "ccrn", "crt", "rrt-nps",
})  # fmt: skip
# staff roles a name may follow: "wound nurse, Florence Garvey", "social worker Ann"
ROLES = frozenset({
    "nurse", "therapist", "worker", "manager", "pharmacist", "chaplain", "intern", "physician", "surgeon",
    "hospitalist", "coordinator", "interpreter", "translator", "nutritionist", "dietitian", "counselor",
})  # fmt: skip
# words that may join two names after a cue: "Drs Smith and Jones"
_JOIN = frozenset({"and", "&", "or"})
_BREAK = re.compile(r"[\n;:!?()\[\]]|\.\s")
# verbs that follow a person's name as the subject: "social: bob visited", "JANE CALLED"
VISIT_VERBS = frozenset({
    "visited", "visiting", "called", "phoned", "telephoned", "came", "stopped", "spoke", "requested", "updated",
    "arrived", "left",
})  # fmt: skip
# words before a person's name as the object: "spoke with ellen", "per jorge", "paged Mickey"
_BEFORE_NAME = re.compile(
    r"(?:\b(?:spoke|talked|spoken|met|conversation|discussed)\s+(?:with|to)|\b(?:per|paged|notified|called|"
    r"seen\s+by|visited\s+by|message\s+(?:for|from)|left\s+for))\s+$",
    re.IGNORECASE,
)
_BEFORE_INITIAL = re.compile(r"\b(?:to|by|per|with|notified|paged|called)\s+$", re.IGNORECASE)
_BEFORE_NAME_LAST = frozenset({"with", "to", "per", "paged", "notified", "called", "by", "for", "from"})
# where the text before a name leaves it in subject position: line start, "social:", a comma, "and"
_SUBJECT_BEFORE = re.compile(r"(?:^|[\n:;,.]|\band|&)\s*$", re.IGNORECASE)


class NameFinder:
    def __init__(self, lexicon: Lexicon) -> None:
        self.lx = lexicon

    # --- evidence ----------------------------------------------------------------------------
    def _stop(self, t: Token) -> bool:
        return t.low in self.lx.stop or t.low in TITLES or t.low in RELATIVES

    def evidence(self, t: Token) -> float:
        """How much a word on its own looks like a personal name (0..1)."""
        low = t.low
        lx = self.lx
        if self._stop(t) or len(low) < 2:
            return 0.0
        if low in lx.clinical or low in lx.drugs:
            return 0.05
        first, sur = low in lx.first_names, low in lx.surnames
        plain = low in lx.english
        frequent = low in lx.frequent
        if (first or sur) and not plain:
            return 0.9
        if (first or sur) and not frequent:
            return 0.6
        if first or sur:
            return 0.3
        if plain:
            return 0.1
        return 0.5  # unknown word: a rare surname, or a misspelling

    def _accept(self, t: Token, strong: bool) -> bool:
        if len(t.low) == 1:
            return True  # an initial; the caller checks what follows
        if self._stop(t):
            return False
        if strong:
            return t.low not in self.lx.clinical or t.capitalised
        ev = self.evidence(t)
        if t.caps_line or not t.text[:1].isalpha():
            return ev >= 0.5
        if t.proper:
            return ev >= 0.3
        return ev >= 0.9 and t.low not in self.lx.english

    # --- rules -------------------------------------------------------------------------------
    def _take_after(
        self, text: str, toks: list[Token], i: int, strong: bool, out: list[PhiSpan], score: float, det: str
    ) -> int:
        """Collect the name words following position i (exclusive). Returns how many were taken."""
        taken = 0
        j = i + 1
        first = True
        while j < len(toks) and taken < 4:
            g = gap(text, toks[j - 1], toks[j])
            if len(g) > 3 or (not first and _BREAK.search(g) and len(toks[j - 1].low) > 1):
                break
            if not first and g == "." and len(toks[j - 1].low) > 1:
                break
            if "\n" in g:
                break
            t = toks[j]
            if t.low in _JOIN and taken and j + 1 < len(toks):
                nxt = toks[j + 1]
                if self._accept(nxt, strong and toks[i].low in ("drs", "dr's", "doctors")) or (
                    self.evidence(nxt) >= 0.5
                ):
                    j += 1
                    continue
                break
            follows_name = (
                t.proper and toks[j - 1].proper and t.low not in self.lx.frequent
                and t.low not in self.lx.clinical and not self._stop(t)
            )
            if not follows_name and not self._accept(t, strong if first else False):
                # a second word right after a strong cue ("Dr. Art White") gets the lenient test
                if not (first is False and strong and taken == 1 and self._accept_second(t)):
                    break
            if len(t.low) == 1 and not text[t.end : t.end + 1] == ".":
                following = toks[j + 1] if j + 1 < len(toks) else None
                if following is None or not (
                    following.low in self.lx.first_names or following.low in self.lx.surnames
                ):
                    break
            out.append(PhiSpan(t.start, t.end, PhiLabel.NAME, score, det))
            taken += 1
            first = False
            j += 1
        return taken

    def _accept_second(self, t: Token) -> bool:
        if self._stop(t) or t.low in self.lx.clinical or t.low in self.lx.drugs:
            return False
        if not t.capitalised:
            return t.low not in self.lx.english and len(t.low) > 2
        return t.proper or self.evidence(t) >= 0.3

    def find(self, text: str, toks: list[Token]) -> list[PhiSpan]:
        out: list[PhiSpan] = []
        n = len(toks)
        for i, t in enumerate(toks):
            low = t.low
            if low == "np":  # a credential as well as a title: "E. Smith NP aware"
                self._signature(text, toks, i, out)
            if low in TITLES:
                nxt = toks[i + 1] if i + 1 < n else None
                if nxt is None:
                    continue
                if low == "np" and not (nxt.proper or (nxt.caps_line and self.evidence(nxt) >= 0.5)):
                    continue  # "2L NP" is a nasal prong
                if low in ("ms", "miss") and (self.evidence(nxt) < 0.5 or nxt.low in self.lx.english):
                    continue  # "ms" is also mental status / multiple sclerosis
                if low == "np" and gap(text, t, nxt) != " ":
                    continue
                self._take_after(text, toks, i, True, out, 0.95, "cue.title")
            elif low in RELATIVES or (low in ROLES and gap(text, t, toks[i + 1] if i + 1 < n else t) in (" ", ", ")):
                j = i
                # "mother and father, Henry Jones" / "daughter-in-law Mary" / "pt's son, Rob"
                while j + 2 < n and toks[j + 1].low in ("and", "or", "in-law", "in") and (
                    toks[j + 2].low in RELATIVES or toks[j + 2].low in ("law",)
                ):
                    j += 2
                if j + 1 < n and toks[j + 1].low in ("law",):
                    j += 1
                self._relative(text, toks, j, out)
            if low in CREDENTIALS and low != "np":
                self._signature(text, toks, i, out)
                if low == "md" and i + 1 < n and gap(text, t, toks[i + 1]) == " ":
                    nxt = toks[i + 1]
                    ev = self.evidence(nxt)
                    named = nxt.low in self.lx.surnames and nxt.low not in self.lx.frequent
                    if not self._stop(nxt) and (nxt.low not in self.lx.english or named) and ev >= 0.5:
                        out.append(PhiSpan(nxt.start, nxt.end, PhiLabel.NAME, 0.75, "cue.title"))
        self._bigrams(text, toks, out)
        self._positions(text, toks, out)
        self._triples(text, toks, out)
        self._initials(text, toks, out)
        self._before_relation(text, toks, out)
        return out

    def _positions(self, text: str, toks: list[Token], out: list[PhiSpan]) -> None:
        """A first name with no title where only a person can stand: before "visited"/"called" as the
        subject ("social: bob visited"), or after "spoke with"/"per"/"paged" as the object."""
        lx = self.lx
        n = len(toks)
        for i, t in enumerate(toks):
            low = t.low
            if len(low) < 3 or self._stop(t) or low in lx.clinical or low in lx.drugs or low in CREDENTIALS:
                continue
            nxt = toks[i + 1] if i + 1 < n else None
            if low not in lx.first_names and not (
                low in lx.surnames and low not in lx.english and nxt is not None and nxt.low in VISIT_VERBS
            ):
                continue
            prev = toks[i - 1].low if i else ""
            visit = nxt is not None and nxt.low in VISIT_VERBS and gap(text, t, nxt) == " "
            if not visit and prev not in _BEFORE_NAME_LAST:
                continue
            before = text[max(0, t.start - 30) : t.start]
            subject = visit and (bool(_SUBJECT_BEFORE.search(before)) or low not in lx.english)
            obj = bool(_BEFORE_NAME.search(before)) and (
                low not in lx.english or t.proper
                or (nxt is not None and gap(text, t, nxt) == " " and self.evidence(nxt) >= 0.9)
            )
            if not (subject or obj):
                continue
            if t.capitalised and not t.caps_line and not t.proper:
                continue
            if not t.caps_line and not t.proper and low in lx.frequent and not subject:
                continue
            out.append(PhiSpan(t.start, t.end, PhiLabel.NAME, 0.8, "cue.position"))
            if nxt is not None and nxt.low not in VISIT_VERBS:
                self._take_after(text, toks, i, False, out, 0.75, "cue.position")

    def _triples(self, text: str, toks: list[Token], out: list[PhiSpan]) -> None:
        """Three name words in a row on a line without case ("mary theresa kondouli"): a first name,
        a second first name that is no English word, then a name-like word no dictionary calls common."""
        lx = self.lx
        for a, b, c in zip(toks, toks[1:], toks[2:], strict=False):
            if not a.caps_line or gap(text, a, b) != " " or gap(text, b, c) != " ":
                continue
            if a.low not in lx.first_names or self._stop(a) or a.low in lx.clinical or a.low in lx.drugs:
                continue
            if b.low not in lx.first_names or b.low in lx.english or b.low in lx.clinical or b.low in lx.drugs:
                continue
            if self._stop(c) or c.low in lx.clinical or c.low in lx.drugs or self.evidence(c) < 0.5:
                continue
            if c.low in lx.english and c.low not in lx.surnames:
                continue
            for x in (a, b, c):
                out.append(PhiSpan(x.start, x.end, PhiLabel.NAME, 0.8, "dictionary.fullname"))

    def _initials(self, text: str, toks: list[Token], out: list[PhiSpan]) -> None:
        """"D. Phyl", "K. ABRAMS", "q. lander": an initial, a full stop, then a name-like word."""
        lx = self.lx
        for a, b in zip(toks, toks[1:], strict=False):
            if len(a.low) != 1 or gap(text, a, b) not in (". ", "."):
                continue
            if a.start > 0 and (text[a.start - 1].isalnum() or text[a.start - 1] in "/.'&-"):
                continue  # "u/o", "a.m.", "90's."
            if a.low in ("r", "l", "s", "c", "g") and b.low not in lx.first_names and b.low not in lx.surnames:
                continue  # right/left, "C. diff", "G.U."
            if b.low in lx.clinical or b.low in lx.drugs or self._stop(b) or len(b.low) < 3:
                continue
            if text[b.end : b.end + 1].isdigit() or text[b.end : b.end + 1] in "-/":
                continue
            named = b.low in lx.surnames or b.low in lx.first_names
            if b.low in lx.english and not named:
                continue
            reported = b.caps_line and bool(_BEFORE_INITIAL.search(text[max(0, a.start - 14) : a.start]))
            if not named and not (b.proper and len(b.low) > 3) and not (reported and len(b.low) > 3):
                continue
            if b.low in lx.frequent:
                continue
            out.append(PhiSpan(a.start, a.end, PhiLabel.NAME, 0.75, "cue.initial"))
            out.append(PhiSpan(b.start, b.end, PhiLabel.NAME, 0.75, "cue.initial"))

    def _before_relation(self, text: str, toks: list[Token], out: list[PhiSpan]) -> None:
        """"URSLA MORETTI (DAUGHTER)", "Nancy Smith, his niece", "KEEP ROMERO FAMILY AWARE"."""
        lx = self.lx
        for i, t in enumerate(toks):
            if i == 0:
                continue
            g = gap(text, toks[i - 1], t)
            rel = t.low in RELATIVES and "(" in g
            rel = rel or (t.low in RELATIVES and toks[i - 1].low in ("his", "her") and i > 1)
            fam = t.low == "family" and g == " "
            if not (rel or fam):
                continue
            k = i - 1 if toks[i - 1].low not in ("his", "her") else i - 2
            taken = 0
            while k >= 0 and taken < 3:
                c = toks[k]
                if self._stop(c) or c.low in lx.clinical or c.low in lx.drugs:
                    break
                ev = self.evidence(c)
                if ev < 0.5 and not (c.proper and ev >= 0.3):
                    break
                named = c.low in lx.surnames or c.low in lx.first_names
                if c.low in lx.english and not named:
                    break
                if fam and (not named or c.low in lx.frequent):
                    break
                if not named and not (c.capitalised and len(c.low) > 2):
                    break
                out.append(PhiSpan(c.start, c.end, PhiLabel.NAME, 0.75, "cue.relative"))
                taken += 1
                if k == 0 or gap(text, toks[k - 1], c) != " ":
                    break
                k -= 1

    def _relative(self, text: str, toks: list[Token], i: int, out: list[PhiSpan]) -> None:
        j = i + 1
        if j >= len(toks):
            return
        g = gap(text, toks[i], toks[j])
        if "\n" in g or len(g) > 4:
            return
        t = toks[j]
        if t.low in ("is", "was") and j + 1 < len(toks) and gap(text, t, toks[j + 1]) == " ":
            j += 1
            t = toks[j]
        if self._stop(t) or t.low in self.lx.clinical:
            return
        ev = self.evidence(t)
        is_first = t.low in self.lx.first_names
        if t.low in self.lx.english and not is_first:
            return
        unknown = (
            t.low not in self.lx.english and t.low not in self.lx.drugs and len(t.low) > 3 and "-" not in t.low
            and (t.proper or (not t.low.endswith(("ed", "ing", "s", "ly"))
                              and text[t.end : t.end + 1] in (".", ",", ";", "\n", "")))
        )
        if not (is_first or (t.low in self.lx.surnames and ev >= 0.5) or (t.proper and ev >= 0.5) or unknown):
            return
        out.append(PhiSpan(t.start, t.end, PhiLabel.NAME, 0.9, "cue.relative"))
        nx = toks[j + 1] if j + 1 < len(toks) else None
        if (
            is_first and nx is not None and gap(text, t, nx) == " " and len(nx.low) > 2 and not self._stop(nx)
            and nx.low not in self.lx.frequent and nx.low not in self.lx.clinical and nx.low not in self.lx.drugs
            and text[nx.end : nx.end + 1] in (",", ";", "(", "\n", "")
        ):
            out.append(PhiSpan(nx.start, nx.end, PhiLabel.NAME, 0.8, "cue.relative"))
        # surname right after
        self._take_after(text, toks, j, False, out, 0.85, "cue.relative")

    def _signature(self, text: str, toks: list[Token], i: int, out: list[PhiSpan]) -> None:
        """"Ilene Macdonald RN", "irene snell, rn" at a line's end, "E. Smith NP aware"."""
        line_start = text.rfind("\n", 0, toks[i].start) + 1
        line_end = text.find("\n", toks[i].end)
        line_end = len(text) if line_end < 0 else line_end
        rest = text[toks[i].end : line_end].strip(" .,;:-\t")
        k = i - 1
        cand: list[Token] = []
        while k >= 0 and toks[k].start >= line_start and len(cand) < 4:
            g = gap(text, toks[k], toks[i] if not cand else cand[-1])
            if len(g) > 3 or any(c in g for c in "\n;:()"):
                break
            cand.append(toks[k])
            k -= 1
        if not cand:
            return
        before = text[line_start : cand[-1].start].strip()
        signature_line = before == "" and len(rest) <= 12
        # "per ... RN": only the words that carry name evidence, nearest first
        taken: list[Token] = []
        for ci, c in enumerate(cand):
            initial = len(c.low) == 1 and text[c.end : c.end + 1] == "."
            after_first = ci + 1 < len(cand) and cand[ci + 1].low in self.lx.first_names
            eponym = signature_line and (c.proper or after_first) and c.low in self.lx.clinical and (
                c.low in self.lx.surnames
            )
            if not initial and not eponym and (
                self._stop(c) or c.low in self.lx.clinical or c.low in CREDENTIALS
            ):
                break
            first_before_name = bool(taken) and c.low in self.lx.first_names and not self._stop(c)
            if signature_line or len(c.low) == 1 or self._accept(c, False) or first_before_name:
                taken.append(c)
            else:
                break
        if not signature_line and len(taken) == 1 and len(taken[0].low) == 1:
            return
        if not signature_line and taken and all(len(c.low) > 1 for c in taken):
            # mid-line "charge RN", "night RN": need at least one good name word
            if max(self.evidence(c) for c in taken) < 0.5:
                return
        for c in taken:
            out.append(PhiSpan(c.start, c.end, PhiLabel.NAME, 0.9 if signature_line else 0.75, "cue.signature"))

    def _bigrams(self, text: str, toks: list[Token], out: list[PhiSpan]) -> None:
        """First name + surname with no cue: "LINDSEY CARDARELLI CALLED", "seen by Mary Jones"."""
        lx = self.lx
        for a, b in zip(toks, toks[1:], strict=False):
            if gap(text, a, b) not in (" ", "  "):
                continue
            if a.low not in lx.first_names or a.low in lx.frequent or self._stop(a) or a.low in lx.clinical:
                continue
            if self._stop(b) or b.low in lx.clinical or b.low in lx.drugs:
                continue
            eb = self.evidence(b)
            if b.low in lx.english and not (b.proper and b.low in lx.surnames):
                continue
            strong_sur = b.low in lx.surnames and b.low not in lx.english and len(b.low) > 3
            if a.caps_line and (
                len(a.low) < 3 or (a.low in lx.english and not strong_sur) or (b.low not in lx.surnames and len(b.low) < 4)
            ):
                continue
            if a.caps_line or (a.proper and b.proper) or (not a.capitalised and eb >= 0.9 and a.low not in lx.english):
                if eb >= 0.5 or (b.proper and eb >= 0.3):
                    out.append(PhiSpan(a.start, a.end, PhiLabel.NAME, 0.8, "dictionary.fullname"))
                    out.append(PhiSpan(b.start, b.end, PhiLabel.NAME, 0.8, "dictionary.fullname"))

    def singles(self, text: str, toks: list[Token]) -> list[PhiSpan]:
        """A capitalised word on a mixed-case line that only the name dictionaries know."""
        out = []
        lx = self.lx
        for t in toks:
            if not t.proper or len(t.low) < 3 or t.low in lx.english or self._stop(t) or t.low in lx.clinical:
                continue
            if t.low in lx.drugs or sentence_start(text, t) or t.text.isupper() or "'" in t.text:
                continue
            if text[t.end : t.end + 1].isdigit() or text[t.end : t.end + 1] == "-":
                continue
            if t.low in lx.first_names or t.low in lx.surnames:
                out.append(PhiSpan(t.start, t.end, PhiLabel.NAME, 0.7, "dictionary.name"))
        return out
