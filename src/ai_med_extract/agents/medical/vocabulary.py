"""Lexicons and code systems shipped with the product.

Codes come only from vocabularies that ship with the installed packages or with this package:

- ICD-10-CM (public domain, US CDC/NCHS) through ``simple_icd_10_cm``: every problem code is checked
  against that release and its display taken from it; a term whose code is not in the release keeps
  no code. Besides the curated problem list (``data/problems.txt``), short category descriptions of the
  release itself are used as a second, lower-priority problem lexicon.
- Drugs: the ingredient's DrugBank accession (``DB00331`` metformin) from the dictionary of
  ``drug_named_entity_recognition``; an entry without one (drug classes such as "penicillins",
  combination products) stays uncoded. That dictionary's ``mesh_id`` names a drug *class*
  (metformin's is "Hypoglycemic Agents") and is never used. No licence-free offline RxNorm copy is
  published as a Python package, so RxNorm codes are not emitted.
- LOINC codes for the labs in ``data/labs.txt`` and the FHIR R4 vital-signs profile codes, each
  listed with its long common name in ``data/loinc.txt``; a lab code not listed there is dropped
  (LOINC is distributed under the Regenstrief licence, which permits this use with attribution:
  "This material contains content from LOINC (http://loinc.org)").
- SNOMED CT only for the concepts FHIR R4's own value sets name (``data/snomed.txt``: "no known
  allergy" and its children).

Nothing here invents a code: a term without a code in these sources stays uncoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
# DrugBank's own namespace; HL7 registers no canonical URI for DrugBank accessions
DRUGBANK = "http://www.drugbank.ca"
UCUM = "http://unitsofmeasure.org"

# ICD-10-CM chapters whose short titles make poor free-text terms (external causes, encounters,
# status codes) and single words too common in notes to stand for a diagnosis on their own.
_ICD_SKIP_PREFIXES = ("V", "W", "X", "Y", "Z", "P")
_ICD_SKIP_WORDS = re.compile(
    r"\b(other|unspecified|and|or|with|without|due|in|of|by|not|specified|classified|elsewhere|following|"
    r"complicating|sequela|encounter|subsequent|initial|type|site|part|stage|personal|history|status|"
    r"codes?|score|findings?|abnormal|contact|exposure|examination|screening)\b|[,;:\d]"
)
_COMMON_WORDS = frozenset(
    "pain fall falls mass lump shock crush burn burns cramp cramps choking drowning gas hunger thirst "
    "fatigue tremor stress grief cough fever abnormality disorder disease disorders diseases".split()
)


@dataclass(frozen=True, slots=True)
class Term:
    """One surface form that names a concept."""

    surface: str
    canonical: str
    case_sensitive: bool = False
    code: str | None = None
    extra: tuple[str, ...] = ()


@dataclass(slots=True)
class LabDefinition:
    canonical: str
    loinc: str | None
    unit: str


@dataclass(slots=True)
class Vocabulary:
    """Everything the rules need, loaded once per agent."""

    problems: list[Term] = field(default_factory=list)
    icd_terms: list[Term] = field(default_factory=list)
    procedures: list[Term] = field(default_factory=list)
    labs: dict[str, LabDefinition] = field(default_factory=dict)
    lab_terms: list[Term] = field(default_factory=list)
    allergens: list[Term] = field(default_factory=list)
    drug_aliases: dict[str, str] = field(default_factory=dict)
    icd_displays: dict[str, str] = field(default_factory=dict)
    loinc: dict[str, str] = field(default_factory=dict)
    snomed: dict[str, str] = field(default_factory=dict)

    def icd_display(self, code: str) -> str | None:
        return self.icd_displays.get(code)


def _rows(name: str) -> list[list[str]]:
    text = resources.files("ai_med_extract.agents.medical").joinpath("data").joinpath(name).read_text("utf-8")
    return [line.split("|") for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _surface_forms(canonical: str, synonyms: str) -> list[tuple[str, bool]]:
    forms: list[tuple[str, bool]] = [(canonical, False)]
    for raw in synonyms.split(";"):
        raw = raw.strip()
        if not raw:
            continue
        if raw.startswith("^"):
            forms.append((raw[1:], True))
        else:
            forms.append((raw, False))
    return forms


def _icd_module() -> Any:
    import simple_icd_10_cm as cm  # imported here: building its index takes a moment

    return cm


def load_vocabulary(*, icd_lexicon: bool = True) -> Vocabulary:
    cm = _icd_module()
    vocab = Vocabulary()

    for canonical, code, synonyms in _rows("problems.txt"):
        valid = code if code and cm.is_valid_item(code) else None
        if valid:
            vocab.icd_displays[valid] = cm.get_description(valid)
        for surface, case_sensitive in _surface_forms(canonical, synonyms):
            vocab.problems.append(Term(surface, canonical, case_sensitive, valid))

    if icd_lexicon:
        curated = {t.surface.lower() for t in vocab.problems}
        seen: dict[str, str] = {}
        for code in cm.get_all_codes(True):
            if code.startswith(_ICD_SKIP_PREFIXES) or not cm.is_category_or_subcategory(code):
                continue
            description = cm.get_description(code)
            term = re.sub(r"\s*\[[^\]]*\]|\s*\([^)]*\)", "", description.lower()).strip()
            if _ICD_SKIP_WORDS.search(term) or len(term) < 5 or term in _COMMON_WORDS:
                continue
            if not 1 <= len(term.split()) <= 3 or term in curated:
                continue
            if term not in seen or len(code) < len(seen[term]):
                seen[term] = code
        for term, code in seen.items():
            vocab.icd_displays[code] = cm.get_description(code)
            vocab.icd_terms.append(Term(term, term, False, code))

    for canonical, synonyms in _rows("procedures.txt"):
        for surface, case_sensitive in _surface_forms(canonical, synonyms):
            vocab.procedures.append(Term(surface, canonical, case_sensitive))

    vocab.loinc = {code: name for code, name in _rows("loinc.txt")}
    vocab.snomed = {code: name for code, name in _rows("snomed.txt")}
    for canonical, loinc, unit, aliases in _rows("labs.txt"):
        listed = loinc if loinc in vocab.loinc else None
        vocab.labs[canonical] = LabDefinition(canonical, listed, unit)
        for surface, case_sensitive in _surface_forms(canonical, aliases):
            vocab.lab_terms.append(Term(surface, canonical, case_sensitive, listed))

    for canonical, category, synonyms in _rows("allergens.txt"):
        for surface, case_sensitive in _surface_forms(canonical, synonyms):
            vocab.allergens.append(Term(surface, canonical, case_sensitive, None, (category,)))

    for alias, generic in _rows("drug_abbreviations.txt"):
        vocab.drug_aliases[alias.lower()] = generic
    return vocab


def _norm(surface: str, *, keep_case: bool = False) -> str:
    collapsed = re.sub(r"[\s-]+", " ", surface.strip())
    return ("=" + collapsed) if keep_case else collapsed.lower()


def compile_terms(terms: list[Term]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None, dict[str, Term]]:
    """One case-insensitive and one case-sensitive alternation, longest surface first."""

    by_surface: dict[str, Term] = {}
    insensitive: list[str] = []
    sensitive: list[str] = []
    for term in sorted(terms, key=lambda t: -len(t.surface)):
        key = _norm(term.surface, keep_case=term.case_sensitive)
        if key in by_surface:
            continue
        by_surface[key] = term
        (sensitive if term.case_sensitive else insensitive).append(_surface_regex(term.surface))

    def build(parts: list[str], flags: int) -> re.Pattern[str] | None:
        if not parts:
            return None
        return re.compile(r"(?<![\w/-])(?:" + "|".join(parts) + r")(?![\w-])", flags)

    return build(insensitive, re.IGNORECASE), build(sensitive, 0), by_surface


def _surface_regex(surface: str) -> str:
    # spaces and hyphens in a term match any run of spaces or a hyphen ("a-fib", "a fib")
    parts = [p for p in re.split(r"[\s-]+", surface) if p]
    body = r"[\s-]+".join(re.escape(p) for p in parts)
    # a plural of a word term ("murmurs", "ulcers"); abbreviations and short words stay exact
    if len(parts[-1]) > 3 and parts[-1].isalpha() and not parts[-1].endswith("s"):
        body += "(?:s|es)?"
    return body


def lookup(by_surface: dict[str, Term], matched: str) -> Term | None:
    found = by_surface.get(_norm(matched, keep_case=True)) or by_surface.get(_norm(matched))
    if found is None and matched[-1:] in "sS":
        singular = matched[:-2] if matched.lower().endswith("es") else matched[:-1]
        found = by_surface.get(_norm(singular)) or by_surface.get(_norm(matched[:-1]))
    return found
