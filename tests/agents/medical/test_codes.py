"""Codes that are right or absent: every code the extractor can emit names a concept of its vocabulary
file, every unit is UCUM, and every bundle built from generated notes is valid FHIR R4."""

from __future__ import annotations

import bz2
import functools
import pickle
import random
import re
from importlib import resources
from typing import Any

import pytest
import simple_icd_10_cm as icd
from ucumvert import get_ucum_parser, parse_ucum

from ai_med_extract.agents.medical import measurements as ms
from ai_med_extract.agents.medical import sig
from ai_med_extract.agents.medical.extractor import VITAL_LOINC, MedicalExtractor
from ai_med_extract.agents.medical.fhir import DOSE_UCUM, to_fhir_bundle, validate_r4
from ai_med_extract.agents.medical.rules import _no_known_kind
from ai_med_extract.agents.medical.vocabulary import DRUGBANK, ICD10CM, LOINC, SNOMED, UCUM, Vocabulary

from .generated import generate_notes


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    return get_ucum_parser()


@functools.cache
def _ucum_valid(code: str) -> bool:
    try:
        parse_ucum(code, _parser())
    except Exception:  # noqa: BLE001 - any parse failure is "not UCUM"
        return False
    return True


def _luhn_ok(loinc: str) -> bool:
    """LOINC's mod-10 check digit."""

    body, check = loinc.split("-")
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10 == int(check)



def _verhoeff_ok(number: str) -> bool:
    """SNOMED CT identifiers end in a Verhoeff check digit."""

    d = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
         [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
         [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
         [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
    p = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
         [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
         [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]
    c = 0
    for i, ch in enumerate(reversed(number)):
        c = d[c][p[i % 8][int(ch)]]
    return c == 0


@pytest.fixture(scope="module")
def vocab(extractor: MedicalExtractor) -> Vocabulary:
    return extractor.vocabulary


@pytest.fixture(scope="module")
def drug_dictionary() -> dict[str, dict[str, Any]]:
    """The drug dictionary file shipped by drug-named-entity-recognition: canonical name -> data."""

    path = resources.files("drug_named_entity_recognition").joinpath("drug_ner_dictionary.pkl.bz2")
    with path.open("rb") as fh:
        data = pickle.load(bz2.open(fh))  # noqa: S301 - the installed package's own file
    return data["drug_canonical_to_data"]  # type: ignore[no-any-return]


# --- the tables, enumerated --------------------------------------------------------------------------


def test_every_problem_code_in_the_tables_is_an_icd10cm_code(vocab: Vocabulary) -> None:
    codes = {t.code for t in [*vocab.problems, *vocab.icd_terms] if t.code}
    assert codes and all(icd.is_valid_item(code) for code in codes)


def test_every_loinc_code_in_the_tables_is_listed_with_a_valid_check_digit(vocab: Vocabulary) -> None:
    emitted = {d.loinc for d in vocab.labs.values() if d.loinc} | {c for cs in VITAL_LOINC.values() for c in cs}
    emitted |= {"8480-6", "8462-4"}  # the blood-pressure components
    assert emitted <= set(vocab.loinc)
    assert all(_luhn_ok(code) for code in vocab.loinc)


def test_every_snomed_code_the_extractor_can_emit_is_listed(vocab: Vocabulary) -> None:
    emitted = {_no_known_kind(p)[1] for p in ("NKA", "NKDA", "NKFA", "no known allergies")}
    assert emitted == set(vocab.snomed)
    assert all(_verhoeff_ok(code) for code in vocab.snomed)


def test_drug_codes_are_ingredient_drugbank_ids_never_mesh_classes(
    extractor: MedicalExtractor, drug_dictionary: dict[str, dict[str, Any]]
) -> None:
    names = {d["drugbank_id"]: d.get("name", n) for n, d in drug_dictionary.items() if d.get("drugbank_id")}
    for case in ("metformin", "lisinopril", "metoprolol", "warfarin"):
        [med] = extractor.extract(f"on {case} daily").medications
        [code] = med.codes
        assert code.system == DRUGBANK and re.fullmatch(r"DB\d{5}", code.code)
        assert names[code.code].lower() == case
    # aliases resolve through the same dictionary, or stay uncoded
    for alias_code in extractor.detectors._alias_codes.values():
        assert alias_code in names


def test_every_unit_in_the_tables_is_ucum(vocab: Vocabulary) -> None:
    units = set(ms.VITAL_UNITS.values()) | set(ms.LAB_UNITS.values()) | {d.unit for d in vocab.labs.values()}
    units |= set(DOSE_UCUM.values()) | {"d", "wk", "mo", "h"}
    bad = sorted(u for u in units if not _ucum_valid(u))
    assert bad == []
    assert not _ucum_valid("[U]")  # what "unit" doses were coded as before


def test_every_dose_unit_and_form_of_the_sig_parser_has_a_ucum_code() -> None:
    written = set(sig._STRENGTH_UNITS.values()) | set(sig._FORMS.values())
    assert written <= set(DOSE_UCUM)


# --- generated records -------------------------------------------------------------------------------


def _walk(value: Any) -> list[dict[str, Any]]:
    out = []
    if isinstance(value, dict):
        out.append(value)
        for v in value.values():
            out.extend(_walk(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(_walk(v))
    return out


@pytest.fixture(scope="module")
def generated_bundles(
    extractor: MedicalExtractor, drug_dictionary: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    rng = random.Random(7)
    coded = sorted(n for n, d in drug_dictionary.items() if d.get("drugbank_id") and " " not in n and len(n) > 4)
    sample = rng.sample(coded, 120)
    notes = list(generate_notes(extractor.vocabulary, sample))
    return [to_fhir_bundle(extractor.extract(n.text), seed=n.id) for n in notes]


def test_generated_records_cover_every_resource_form(generated_bundles: list[dict[str, Any]]) -> None:
    kinds = {e["resource"]["resourceType"] for b in generated_bundles for e in b["entry"]}
    assert {"Condition", "MedicationStatement", "Observation", "AllergyIntolerance", "Procedure"} <= kinds
    vitals = {c["code"] for b in generated_bundles for e in b["entry"]
              if "vitalsigns" in str(e["resource"].get("meta")) for c in e["resource"]["code"].get("coding", [])}
    assert {c for cs in VITAL_LOINC.values() for c in cs} <= vitals


def test_generated_records_emit_no_code_outside_its_vocabulary(
    generated_bundles: list[dict[str, Any]], vocab: Vocabulary, drug_dictionary: dict[str, dict[str, Any]]
) -> None:
    drugbank = {d["drugbank_id"] for d in drug_dictionary.values() if d.get("drugbank_id")}
    checks = {
        ICD10CM: icd.is_valid_item, LOINC: vocab.loinc.__contains__, SNOMED: vocab.snomed.__contains__,
        DRUGBANK: drugbank.__contains__,
    }
    outside: list[tuple[str, str]] = []
    seen = 0
    for bundle in generated_bundles:
        for element in _walk(bundle):
            system, code = element.get("system"), element.get("code")
            if not isinstance(system, str) or not isinstance(code, str) or "terminology.hl7.org" in system:
                continue
            seen += 1
            if system == UCUM:
                ok = _ucum_valid(code)
            else:
                ok = system in checks and checks[system](code)
            if not ok:
                outside.append((system, code))
    assert seen > 1000 and outside == []


def test_generated_records_are_valid_r4_with_profiles_dates_and_coded_nka(
    generated_bundles: list[dict[str, Any]],
) -> None:
    no_known = 0
    for bundle in generated_bundles:
        validate_r4(bundle)
        for entry in bundle["entry"]:
            r = entry["resource"]
            if r["resourceType"] == "Observation":
                assert "effectiveDateTime" in r or "_effectiveDateTime" in r
                if r["category"][0]["coding"][0]["code"] == "vital-signs":
                    assert r["meta"]["profile"][0] == "http://hl7.org/fhir/StructureDefinition/vitalsigns"
                    quantities = [c["valueQuantity"] for c in [r, *r.get("component", [])] if "valueQuantity" in c]
                    assert quantities and all(q["system"] == UCUM for q in quantities)
            if r["resourceType"] == "Procedure":
                assert "performedString" not in r
            if r["resourceType"] == "AllergyIntolerance":
                assert "clinicalStatus" in r  # ait-1
                if r["code"]["text"].startswith("no known"):
                    no_known += 1
                    assert r["code"]["coding"][0]["system"] == SNOMED
    assert no_known > 0
