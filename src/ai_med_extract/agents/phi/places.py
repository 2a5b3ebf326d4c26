"""Place layer: hospitals and facilities, wards, cities and towns, found by cue words and gazetteer.

Safe Harbor allows states and countries; everything smaller (city, town, street, facility) is PHI.
"""

from __future__ import annotations

import re

from ai_med_extract.agents.phi.lexicon import Lexicon
from ai_med_extract.agents.phi.tokens import Token, gap, sentence_start
from ai_med_extract.agents.phi.types import PhiLabel, PhiSpan

FACILITY_WORDS = frozenset({
    "hospital", "hosp", "medical", "center", "centre", "rehab", "rehabilitation", "clinic", "infirmary",
    "hospice", "house", "manor", "campus", "memorial", "healthcare", "home", "institute",
    "sanatorium", "asylum", "lodge", "pavilion", "vna", "regional",
})  # fmt: skip
# words that commonly make up facility names (general knowledge, not from any note)
NAME_WORDS = frozenset({
    "holy", "cross", "sacred", "heart", "saint", "st", "good", "samaritan", "mercy", "general", "university",
    "union", "presbyterian", "methodist", "baptist", "lutheran", "shriners", "veterans", "mount", "mt",
    "sinai", "providence", "deaconess", "beth", "israel", "children's", "childrens", "women's", "regional",
    "community", "county", "city", "state", "valley", "hill", "hills", "lake", "river", "park", "north",
    "south", "east", "west", "grace", "hope", "trinity", "redeemer", "faith", "harbor", "bay", "spring",
    "springs", "pines", "oaks", "meadows", "view", "kindred", "christ", "cardinal", "st.", "memorial",
})  # fmt: skip
_GENERIC_BEFORE = frozenset({
    "the", "a", "an", "this", "that", "outside", "other", "another", "same", "local", "nursing", "acute",
    "inpatient", "outpatient", "cardiac", "pulmonary", "pulm", "rehab", "home", "medical", "his", "her",
    "their", "to", "from", "at", "in", "of", "for", "via", "by", "with", "and", "or", "pt", "pt's",
    "physical", "short", "long", "term", "group", "day", "sub-acute", "subacute", "transitional", "ward",
    "unit", "floor", "room", "bed", "normal", "baseline",
})  # fmt: skip
_LIVE_CUE = re.compile(
    r"\b(?:lives?|living|resides?|residing|reside|moved|vacationing|visiting|relocated|born|raised|"
    r"works?|home)\s+(?:alone\s+|here\s+|with\s+\w+\s+)?(?:in|at|near|to|from)\s+$",
    re.IGNORECASE,
)
_MOVE_CUE = re.compile(
    r"\b(?:transfer(?:red|ring)?|tx(?:'?d)?|trans|sent|admitted|adm|came|brought|arrived|returned|"
    r"discharged|d/c(?:'?d)?|dc(?:'?d)?|going|go|screened|accepted|called|flown|med-?flighted|taken|"
    r"transported|back)\s+(?:in|back\s+)?(?:to|from|into|at)\s+(?:the\s+)?$",
    re.IGNORECASE,
)
_STATE_AFTER = re.compile(
    r"^\s*,\s*(?:(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|"
    r"NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)\b|(?i:mass|maryland|virginia|florida|"
    r"california|texas|new york|pennsylvania|ohio|maine|delaware)\b)"
)
_STATES_FULL = frozenset({
    "alabama", "alaska", "arizona", "arkansas", "california", "colorado", "connecticut", "delaware",
    "florida", "georgia", "hawaii", "idaho", "illinois", "indiana", "iowa", "kansas", "kentucky",
    "louisiana", "maine", "maryland", "massachusetts", "michigan", "minnesota", "mississippi", "missouri",
    "montana", "nebraska", "nevada", "ohio", "oklahoma", "oregon", "pennsylvania", "tennessee", "texas",
    "utah", "vermont", "virginia", "washington", "wisconsin", "wyoming", "america", "usa", "canada",
    "mexico",
})  # fmt: skip


# acronyms of hospitals and medical centres: "...H" (hospital), "...MC" (medical centre), "...HC", "VA..."
_HOSPITAL_ACRONYM = re.compile(r"[A-Z]{0,3}(?:H|MC|HC|MH)|VA[A-Z]{0,3}|[A-Z]{1,3}VA")
# shorthand that looks like a hospital acronym: chair, motor vehicle accident, interjections
_NOT_HOSPITAL_ACRONYM = frozenset({"ch", "sh", "oh", "ah", "uh", "eh", "mva"})
HOSPITAL_PHRASES = frozenset({
    "holy cross", "sacred heart", "good samaritan", "mount sinai", "mt sinai", "holy family", "holy name",
    "holy spirit", "beth israel", "mercy medical", "shriners hospital", "kindred hospital",
})  # fmt: skip


# employers and companies: "CEO OF IBM", "works for Acme", "hospice care co.- stella maris", "Acme Inc"
_ORG_CUE = re.compile(
    r"(?:\b(?:ceo|cfo|president|owner|founder|employee|chairman|director|vp)\s+(?:of|at)|\bworks?\s+(?:at|for)|"
    r"\bworked\s+(?:at|for)|\bemployed\s+(?:by|at|with)|\bretired\s+from|\b(?:company|co\.|corp\.?|agency)"
    r"\s*[-:,]+)\s*",
    re.IGNORECASE,
)
# written exactly so (on a line with case): "INC" and "CO" are "increased" and "cardiac output"
_ORG_AFTER = frozenset({"Inc", "Corp", "Corporation", "LLC", "Ltd", "Co", "Company", "Incorporated"})
# "at seymour black's house": whose house it is names a person
_DWELLING = frozenset({"house", "home", "apartment", "apt", "place", "farm", "condo", "residence"})
_OWNER_NOT = frozenset({"pt", "patient", "patients", "pts", "family", "own", "friend", "friends", "neighbor",
                        "neighbors", "parents", "parent", "someone", "somebody", "nursing"})
_LIVE_NEAR = re.compile(r"\b(?:lives?|living|resides?|residing|moved|housing)\b", re.IGNORECASE)


class PlaceFinder:
    def __init__(self, lexicon: Lexicon) -> None:
        self.lx = lexicon

    def _namey(self, t: Token) -> bool:
        """Could be part of a proper place name."""
        low = t.low
        if low in NAME_WORDS and low not in _GENERIC_BEFORE:
            return True
        if low in self.lx.stop or low in _GENERIC_BEFORE or low in self.lx.clinical:
            return False
        if t.proper:
            return True
        if t.caps_line:
            return (low not in self.lx.english or low in self.lx.first_names or low in self.lx.cities) and (
                low not in self.lx.drugs and len(low) > 1
            )
        return False

    def find(self, text: str, toks: list[Token]) -> list[PhiSpan]:
        out: list[PhiSpan] = []
        n = len(toks)
        lx = self.lx
        for i, t in enumerate(toks):
            low = t.low
            # "<name words> hospital|rehab|house|campus"
            possessive = i > 0 and text[toks[i - 1].end : t.start].lower() in ("'s ", "s' ")
            if low in FACILITY_WORDS and i > 0 and not (possessive and low in _DWELLING):
                k = i - 1
                taken: list[Token] = []
                while k >= 0 and len(taken) < 3:
                    g = gap(text, toks[k], toks[k + 1])
                    if len(g) > 3 or "\n" in g or "," in g:
                        break
                    if not self._namey(toks[k]) or toks[k].low in FACILITY_WORDS and toks[k].low != "memorial":
                        break
                    taken.append(toks[k])
                    k -= 1
                # a single common word before "home"/"house" is rarely a name ("group home")
                if not taken and low in ("hospital", "campus", "rehab", "clinic", "infirmary", "hospice") and k >= 0:
                    x = toks[i - 1]
                    if (
                        not x.caps_line and x.low not in lx.english and x.low not in lx.clinical
                        and x.low not in lx.drugs and x.low not in lx.stop and len(x.low) > 2
                        and gap(text, x, t) == " "
                    ):
                        taken.append(x)
                    elif x.low in NAME_WORDS and x.low not in _GENERIC_BEFORE:
                        taken.append(x)
                        y = toks[i - 2] if i > 1 else None
                        if y is not None and y.low in NAME_WORDS and gap(text, y, x) == " ":
                            taken.append(y)
                if taken and not (low in ("home", "house", "center", "medical") and all(
                    x.low in lx.english and not x.proper and x.low not in NAME_WORDS for x in taken
                )):
                    for x in taken:
                        out.append(PhiSpan(x.start, x.end, PhiLabel.HOSPITAL, 0.85, "cue.facility"))
                    if low in ("memorial", "rehab", "regional") or (low in ("center", "medical") and t.proper):
                        out.append(PhiSpan(t.start, t.end, PhiLabel.HOSPITAL, 0.85, "cue.facility"))
            # hospital acronyms: "GH", "GBMC", "MGH" after to/at/from/by
            if (
                i > 0 and toks[i - 1].low in ("to", "at", "from", "by", "into", "@")
                and (_HOSPITAL_ACRONYM.fullmatch(t.text) or (t.caps_line and t.text.islower() and re.fullmatch(
                    r"[a-z]{1,2}(?:h|mc)", low)))
                and low not in _NOT_HOSPITAL_ACRONYM
                and low not in lx.clinical and low not in lx.english
                and low != "ph" and text[t.start - 1 : t.start] == " "
                and not re.match(r"[\d/]", text[t.end : t.end + 1])
            ):
                out.append(PhiSpan(t.start, t.end, PhiLabel.HOSPITAL, 0.75, "cue.acronym"))
            # "U Maryland", "University of Chicago"
            if (
                low in ("u", "univ", "university") and t.capitalised and i + 1 < n
                and text[t.start - 1 : t.start] in ("", " ", "\n") and gap(text, t, toks[i + 1]) in (" ", " of ")
            ):
                k = i + 1
                if toks[k].low == "of" and k + 1 < n:
                    k += 1
                nx = toks[k]
                if (
                    nx.capitalised and nx.low not in lx.stop and nx.low not in lx.clinical and len(nx.low) > 2
                    and (nx.low in lx.cities or nx.low in _STATES_FULL or nx.low not in lx.english)
                    and nx.low not in lx.drugs
                ):
                    out.append(PhiSpan(t.start, nx.end, PhiLabel.HOSPITAL, 0.8, "cue.university"))
            if i + 1 < n and f"{low} {toks[i + 1].low}" in HOSPITAL_PHRASES and gap(text, t, toks[i + 1]) == " ":
                out.append(PhiSpan(t.start, toks[i + 1].end, PhiLabel.HOSPITAL, 0.8, "cue.facility"))
            # "St Mary", "Saint Agnes", "St A."
            if low in ("st", "saint") and t.capitalised and not t.caps_line and i + 1 < n:
                nx = toks[i + 1]
                if gap(text, t, nx) in (" ", ". ") and nx.capitalised and nx.low not in lx.clinical and (
                    nx.low not in lx.stop or len(nx.low) == 1
                ):
                    out.append(PhiSpan(t.start, nx.end, PhiLabel.HOSPITAL, 0.85, "cue.saint"))
            elif low in ("st", "saint") and t.caps_line and i + 1 < n:
                nx = toks[i + 1]
                after = toks[i + 2].low if i + 2 < n else ""
                if (
                    gap(text, t, nx) in (" ", ". ") and nx.low in lx.first_names and len(nx.low) > 2
                    and nx.low not in lx.clinical and not (nx.low in lx.stop or nx.low in lx.frequent)
                    and after not in ("wort", "elevation", "elevations", "depression", "depressions", "changes")
                ):
                    out.append(PhiSpan(t.start, nx.end, PhiLabel.HOSPITAL, 0.8, "cue.saint"))
            # ward: "to Quartermain 2", "per Quartermain 3 RN"
            if i > 0 and toks[i - 1].low in ("to", "from", "per", "into", "on", "transfer", "at") and (
                low not in lx.english and low not in lx.clinical and low not in lx.drugs and len(low) > 3
                and low not in lx.first_names
            ):
                after = text[t.end : t.end + 5]
                m = re.match(r"\s?\d{1,2}(?!\.\d|[\d/%-])\b", after)
                if m and not t.capitalised and (
                    toks[i - 1].low not in ("to", "from", "into")
                    or re.match(
                        r"\s*(?:pm|am|bags?|mg|mcg|units?|u|doses?|x|times|hrs?|l|liters?|ml|cc|tabs?|puffs?)\b",
                        text[t.end + m.end() : t.end + m.end() + 8],
                        re.IGNORECASE,
                    )
                ):
                    m = None
                if m:  # the ward's name; its number alone identifies nobody
                    out.append(PhiSpan(t.start, t.end, PhiLabel.LOCATION, 0.8, "cue.ward"))
            # "lives in X", "transferred to X", "X, MA"
            before = text[max(0, t.start - 40) : t.start]
            live = _LIVE_CUE.search(before)
            move = _MOVE_CUE.search(before)
            if live or move:
                self._take_place(text, toks, i, out, bool(live))
            if (
                not t.caps_line and _STATE_AFTER.match(text[t.end : t.end + 16])
                and self._namey(t) and low not in _STATES_FULL
            ):
                k = i
                while k >= 0 and self._namey(toks[k]) and i - k < 3:
                    out.append(PhiSpan(toks[k].start, toks[k].end, PhiLabel.LOCATION, 0.8, "cue.city_state"))
                    if gap(text, toks[k - 1], toks[k]) != " " if k else True:
                        break
                    k -= 1
        out.extend(self._organisations(text, toks))
        out.extend(self._dwellings(text, toks))
        out.extend(self._gazetteer(text, toks))
        out.extend(self._in_proper_place(text, toks))
        return out

    def _org_word(self, t: Token) -> bool:
        lx = self.lx
        if t.low in lx.stop or t.low in lx.clinical or t.low in lx.drugs or t.low in FACILITY_WORDS:
            return False
        if t.text.isupper() and 2 <= len(t.text) <= 5 and not t.caps_line:
            return True  # an acronym on a mixed-case line
        if t.proper:
            return True
        return t.low not in lx.frequent or t.low in lx.first_names or t.low in lx.surnames

    def _organisations(self, text: str, toks: list[Token]) -> list[PhiSpan]:
        """Employers and companies after a cue ("CEO of", "works for", "co.-") or before "Inc"/"Corp"."""
        out = []
        n = len(toks)
        cue_ends = {m.end() for m in _ORG_CUE.finditer(text)}
        for i, t in enumerate(toks):
            if t.start in cue_ends:
                j = i
                while j < n and j - i < 3 and self._org_word(toks[j]):
                    if j > i and gap(text, toks[j - 1], toks[j]) != " ":
                        break
                    out.append(PhiSpan(toks[j].start, toks[j].end, PhiLabel.LOCATION, 0.75, "cue.organisation"))
                    j += 1
            if (
                t.text in _ORG_AFTER and i > 0 and not t.caps_line and gap(text, toks[i - 1], t) in (" ", ", ")
                and (t.text != "Co" or text[t.end : t.end + 1] == ".")
            ):
                k = i - 1
                while k >= 0 and i - k <= 3 and toks[k].proper and self._org_word(toks[k]):
                    out.append(PhiSpan(toks[k].start, toks[k].end, PhiLabel.LOCATION, 0.75, "cue.organisation"))
                    if k == 0 or gap(text, toks[k - 1], toks[k]) != " ":
                        break
                    k -= 1
        return out

    def _dwellings(self, text: str, toks: list[Token]) -> list[PhiSpan]:
        """"at seymour black's house", "staying at Joan's place": the owner's name."""
        lx = self.lx
        out = []
        for i in range(1, len(toks)):
            t = toks[i]
            if t.low not in _DWELLING:
                continue
            owner = toks[i - 1]
            if text[owner.end : owner.end + 3].lower() not in ("'s ", "s' ") or owner.end + 3 != t.start:
                continue
            k = i - 1
            taken = 0
            while k >= 0 and taken < 2:
                x = toks[k]
                if x.low in _OWNER_NOT or x.low in lx.stop or x.low in lx.clinical or len(x.low) < 2:
                    break
                if x.low in {"wife", "husband", "son", "daughter", "mother", "father", "sister", "brother", "aunt",
                             "uncle", "cousin", "niece", "nephew", "grandmother", "grandfather", "dtr", "mom", "dad"}:
                    break
                named = x.low in lx.first_names or x.low in lx.surnames
                if not (named or x.proper or x.low not in lx.english):
                    break
                out.append(PhiSpan(x.start, x.end, PhiLabel.LOCATION, 0.75, "cue.dwelling"))
                taken += 1
                if k == 0 or gap(text, toks[k - 1], x) != " ":
                    break
                k -= 1
        return out

    def _in_proper_place(self, text: str, toks: list[Token]) -> list[PhiSpan]:
        """"lives ... in Lansdowne.": "in"/"near" + a capitalised word no dictionary knows, ending a
        clause, on a mixed-case line."""
        lx = self.lx
        out = []
        for i in range(1, len(toks)):
            t = toks[i]
            if toks[i - 1].low not in ("in", "near", "outside") or gap(text, toks[i - 1], t) != " ":
                continue
            if t.caps_line:  # no case to go by: an uncommon word ending the clause, with living in view
                if (
                    len(t.low) >= 5 and t.low not in lx.frequent and t.low not in lx.clinical and t.low not in lx.drugs
                    and t.low not in lx.stop and t.low not in _STATES_FULL and t.low not in lx.first_names
                    and text[t.end : t.end + 1] in (".", ",", ";", "\n", "")
                    and _LIVE_NEAR.search(text[max(0, t.start - 80) : t.start])
                ):
                    out.append(PhiSpan(t.start, t.end, PhiLabel.LOCATION, 0.6, "cue.place"))
                continue
            if not t.proper or t.text.isupper() or len(t.low) < 4 or t.low in lx.clinical:
                continue
            if t.low in lx.english and (
                t.low in lx.frequent or not _LIVE_NEAR.search(text[max(0, t.start - 80) : t.start])
            ):
                continue
            if t.low in lx.drugs or t.low in lx.first_names or t.low in _STATES_FULL:
                continue
            if text[t.end : t.end + 1] not in (".", ",", ";", "\n", ""):
                continue
            out.append(PhiSpan(t.start, t.end, PhiLabel.LOCATION, 0.6, "cue.place"))
        return out

    def _take_place(self, text: str, toks: list[Token], i: int, out: list[PhiSpan], live: bool) -> None:
        t = toks[i]
        lx = self.lx
        # hospital abbreviations: "came into GH", "transferred to GBMC"
        if re.fullmatch(r"[A-Z]{2,5}", t.text) and t.low not in lx.clinical and t.low not in lx.english and (
            "icu" not in t.low and not live
        ):
            out.append(PhiSpan(t.start, t.end, PhiLabel.HOSPITAL, 0.75, "cue.transfer"))
            return
        j = i
        taken: list[Token] = []
        while j < len(toks) and len(taken) < 3:
            x = toks[j]
            if taken and gap(text, toks[j - 1], x) not in (" ",):
                break
            if x.low in _STATES_FULL or x.low in FACILITY_WORDS:
                break
            if len(x.low) < 2 or "icu" in x.low:
                break
            if x.caps_line:
                ok = self._namey(x) and (
                    x.low in lx.cities or live or x.low not in lx.english
                    or (bool(taken) and x.low in NAME_WORDS)
                )
            else:
                ok = self._namey(x) or (live and x.low not in lx.stop and x.low not in lx.clinical)
            if not ok:
                break
            if live and x.low in lx.english and not x.proper and x.low in lx.frequent:
                if not self._odd_word_follows(text, toks, j):
                    break
            taken.append(x)
            j += 1
        for x in taken:
            out.append(PhiSpan(x.start, x.end, PhiLabel.LOCATION, 0.8, "cue.place"))

    def _odd_word_follows(self, text: str, toks: list[Token], j: int) -> bool:
        """"lives in white amrsh,": the next word, ending the clause, is no word any dictionary knows."""
        if j + 1 >= len(toks) or gap(text, toks[j], toks[j + 1]) != " ":
            return False
        y = toks[j + 1]
        lx = self.lx
        return (
            len(y.low) > 3 and y.low not in lx.english and y.low not in lx.clinical and y.low not in lx.drugs
            and y.low not in lx.stop and text[y.end : y.end + 1] in (",", ".", ";", "\n", "")
        )

    def _gazetteer(self, text: str, toks: list[Token]) -> list[PhiSpan]:
        """Cities and towns from the gazetteer, one or two words, when written like a proper noun."""
        lx = self.lx
        out = []
        n = len(toks)
        for i, t in enumerate(toks):
            if t.caps_line:
                nx = toks[i + 1] if i + 1 < n else None
                if t.low not in lx.cities and (nx is None or f"{t.low} {nx.low}" not in lx.cities):
                    continue
                prev = text[max(0, t.start - 6) : t.start].lower()
                after_prep = re.search(r"(?:\b(?:to|at|in|from|near|of)|@)\s+$", prev)
                if after_prep and nx is not None and gap(text, t, nx) == " " and f"{t.low} {nx.low}" in lx.cities:
                    out.append(PhiSpan(t.start, nx.end, PhiLabel.LOCATION, 0.75, "dictionary.city"))
                    continue
                if (
                    re.search(r"(?:\b(?:to|at|in|from|near|of)|@)\s+$", prev) and t.low in lx.cities and len(t.low) > 3
                    and t.low not in lx.english and t.low not in lx.clinical and t.low not in lx.first_names
                    and t.low not in lx.stop and t.low not in lx.drugs
                ):
                    out.append(PhiSpan(t.start, t.end, PhiLabel.LOCATION, 0.7, "dictionary.city"))
                continue
            if not t.capitalised:
                continue
            if i + 1 < n and gap(text, t, toks[i + 1]) == " ":
                two = f"{t.low} {toks[i + 1].low}"
                if two in lx.cities and toks[i + 1].capitalised:
                    out.append(PhiSpan(t.start, toks[i + 1].end, PhiLabel.LOCATION, 0.8, "dictionary.city"))
                    continue
            if t.low in lx.cities and t.low not in lx.english and t.low not in lx.clinical and len(t.low) > 3:
                if t.low in lx.first_names or t.low in lx.stop:
                    continue
                if t.proper and sentence_start(text, t) and t.low in lx.surnames:
                    continue
                out.append(PhiSpan(t.start, t.end, PhiLabel.LOCATION, 0.7, "dictionary.city"))
        return out
