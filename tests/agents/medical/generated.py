"""Clinical notes generated from the extractor's own tables, so that every form it knows is written.

Each note is a short clinic note: medications (every drug alias, every dose unit and dose form of the
sig parser, and a seeded sample of the drug dictionary), labs (every lab with each alias, a value and
a unit it reads), every vital sign in its written forms, every allergen and every "no known allergies"
phrase, problems and procedures with dates in the forms the dates module reads. Nothing here comes
from a corpus; values are drawn from a seeded random generator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from ai_med_extract.agents.medical import measurements as ms
from ai_med_extract.agents.medical.vocabulary import Vocabulary

# every written form of each vital sign the patterns read (value drawn within its plausible range)
VITAL_FORMS = [
    "BP {sbp}/{dbp}", "blood pressure {sbp}/{dbp} mmHg", "HR {hr}", "pulse {hr} bpm", "RR {rr}",
    "respiratory rate {rr} breaths/min", "Temp {tf} F", "temperature {tc} C", "T {tc} degrees C",
    "SpO2 {sat}%", "O2 sat {sat}% on RA", "Wt {lb} lbs", "weight {kg} kg", "Ht 5'{inch}\"",
    "height {cm} cm", "BMI {bmi}", "BMI {bmi} kg/m2",
]
NO_KNOWN = ["NKDA", "NKA", "NKFA", "No known drug allergies", "No known allergies", "No known food allergies",
            "Allergies: none", "denies drug allergies", "no medication allergies"]
DATE_FORMS = ["{m}/{d}/{yy}", "{m}/{d}/{yyyy}", "{yyyy}-{m:02d}-{d:02d}", "{mon} {d}, {yyyy}", "{mon} {yyyy}"]
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
# sig parts that put every dose unit and dose form of sig.py in a note
SIGS = [
    "{n} mg PO BID", "{n} mcg daily", "{n} g IV q8h", "{n} units subq qhs", "{n} IU daily", "{n} mEq PO daily",
    "{n} mmol IV once", "{n} mL PO TID", "{n} L/min via nasal cannula", "{n} mg/kg IV daily",
    "{n} mcg/hr transdermal", "{n} mg/hr IV", "{n} units/hr IV", "1 tab PO daily", "2 caps PO BID",
    "2 puffs inh q4h prn wheezing", "1 drop each eye BID", "1 patch transdermal daily", "2 sprays each nostril daily",
    "1 vial neb q6h", "1 packet PO daily", "1 suppository PR daily", "1 lozenge PO q4h", "1 application topically BID",
    "1 ampule IV once", "{n} mg/mL PO daily", "{n}% topically BID",
]


@dataclass(frozen=True, slots=True)
class GeneratedNote:
    id: str
    text: str


def _date(rng: random.Random) -> str:
    year = rng.randint(1990, 2024)
    form = rng.choice(DATE_FORMS)
    return form.format(m=rng.randint(1, 12), d=rng.randint(1, 28), yy=f"{year % 100:02d}", yyyy=year,
                       mon=rng.choice(MONTHS))


def _vital(rng: random.Random, form: str) -> str:
    return form.format(
        sbp=rng.randint(100, 180), dbp=rng.randint(55, 95), hr=rng.randint(50, 130), rr=rng.randint(10, 28),
        tf=round(rng.uniform(96.5, 103.0), 1), tc=round(rng.uniform(35.5, 39.5), 1), sat=rng.randint(85, 100),
        lb=rng.randint(100, 300), kg=rng.randint(45, 140), inch=rng.randint(0, 11), cm=rng.randint(150, 195),
        bmi=round(rng.uniform(17, 45), 1),
    )


def _lab_value(rng: random.Random, unit: str) -> str:
    value = round(rng.uniform(0.5, 250), 1)
    return f"{value} {unit}"


def generate_notes(vocabulary: Vocabulary, drug_names: list[str], *, seed: int = 13) -> Iterator[GeneratedNote]:
    """Notes that together write every lab alias, vital form, allergen, dose unit and drug alias at
    least once, and each name in ``drug_names`` (a sample of the drug dictionary)."""

    rng = random.Random(seed)
    aliases = sorted(vocabulary.drug_aliases)
    labs = sorted({t.surface for t in vocabulary.lab_terms})
    lab_units = sorted(set(ms.LAB_UNITS))
    allergens = sorted({t.surface for t in vocabulary.allergens})
    problems = sorted({t.surface for t in vocabulary.problems if not t.case_sensitive})
    procedures = sorted({t.surface for t in vocabulary.procedures if not t.case_sensitive})
    drugs = aliases + drug_names
    rounds = max(len(drugs) // 6, len(labs) // 6, len(allergens) // 2, len(SIGS) // 3, len(VITAL_FORMS),
                 len(NO_KNOWN), len(lab_units) // 3) + 1
    for n in range(rounds):
        meds = [drugs[(n * 6 + i) % len(drugs)] for i in range(6)]
        sigs = [SIGS[(n * 3 + i) % len(SIGS)].format(n=rng.choice([1, 2, 5, 10, 20, 40, 100, 500])) for i in range(6)]
        med_lines = "\n".join(f"{name} {sig}" for name, sig in zip(meds, sigs, strict=True))
        lab_parts = []
        for i in range(6):
            lab = labs[(n * 6 + i) % len(labs)]
            unit = lab_units[(n * 3 + i) % len(lab_units)] if i < 3 else ""
            lab_parts.append(f"{lab} {_lab_value(rng, unit).strip()}")
        vitals = ", ".join(_vital(rng, VITAL_FORMS[(n + i) % len(VITAL_FORMS)]) for i in range(4))
        allergy = (NO_KNOWN[n % len(NO_KNOWN)] if n % 3 == 0 else
                   f"Allergies: {allergens[n % len(allergens)]} (hives), {allergens[(n + 1) % len(allergens)]} - rash")
        text = (
            f"Clinic note {_date(rng)}\n"
            f"HPI: history of {problems[n % len(problems)]} and {problems[(n * 7 + 3) % len(problems)]}.\n"
            f"PAST SURGICAL HISTORY: {procedures[n % len(procedures)]} {_date(rng)}.\n"
            f"MEDICATIONS:\n{med_lines}\n"
            f"{allergy}\n"
            f"VITALS {_date(rng)}: {vitals}\n"
            f"LABS {_date(rng)}: {', '.join(lab_parts)}\n"
            f"PLAN: {procedures[(n * 5 + 1) % len(procedures)]}.\n"
        )
        yield GeneratedNote(f"generated-{n}", text)
