"""Canonical clinical concepts the summariser reasons about (measurements and a few conditions).

Measurements are keyed by LOINC code (FHIR input) or by common names and abbreviations (the patient data
model and free text). Conditions are recognised by SNOMED CT / ICD-10 codes or by wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Measurement:
    key: str
    title: str
    category: str  # "vital-signs" | "laboratory"
    unit: str
    loinc: tuple[str, ...]
    aliases: tuple[str, ...]


MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("systolic_bp", "Systolic blood pressure", "vital-signs", "mmHg", ("8480-6",), ("systolic", "sbp")),
    Measurement("diastolic_bp", "Diastolic blood pressure", "vital-signs", "mmHg", ("8462-4",), ("diastolic", "dbp")),
    Measurement("heart_rate", "Heart rate", "vital-signs", "/min", ("8867-4",), ("heart rate", "hr", "pulse")),
    Measurement(
        "respiratory_rate", "Respiratory rate", "vital-signs", "/min", ("9279-1",),
        ("respiratory rate", "rr", "resp rate", "respiration"),
    ),
    Measurement(
        "temperature", "Body temperature", "vital-signs", "Cel", ("8310-5", "8331-1"),
        ("temperature", "temp", "body temperature"),
    ),
    Measurement("weight", "Body weight", "vital-signs", "kg", ("29463-7", "3141-9"), ("weight", "body weight", "wt")),
    Measurement("height", "Body height", "vital-signs", "cm", ("8302-2",), ("height", "body height", "ht")),
    Measurement("bmi", "Body mass index", "vital-signs", "kg/m2", ("39156-5",), ("bmi", "body mass index")),
    Measurement(
        "spo2", "Oxygen saturation", "vital-signs", "%", ("59408-5", "2708-6"),
        ("spo2", "oxygen saturation", "o2 sat", "sao2"),
    ),
    Measurement(
        "hba1c", "Hemoglobin A1c", "laboratory", "%", ("4548-4", "17856-6"),
        ("hba1c", "a1c", "hemoglobin a1c", "haemoglobin a1c", "glycated hemoglobin"),
    ),
    Measurement(
        "glucose", "Glucose", "laboratory", "mg/dL", ("2339-0", "2345-7", "1558-6"),
        ("glucose", "blood glucose", "fasting glucose", "fbg"),
    ),
    Measurement("creatinine", "Creatinine", "laboratory", "mg/dL", ("2160-0", "38483-4"), ("creatinine", "cr")),
    Measurement(
        "egfr", "eGFR", "laboratory", "mL/min/1.73m2", ("33914-3", "62238-1", "98979-8", "48643-1", "48642-3"),
        ("egfr", "gfr", "estimated gfr"),
    ),
    Measurement(
        "uacr", "Urine albumin/creatinine ratio", "laboratory", "mg/g", ("14959-1", "9318-7", "32294-1"),
        ("uacr", "acr", "microalbumin", "albumin/creatinine", "urine albumin"),
    ),
    Measurement(
        "cholesterol", "Total cholesterol", "laboratory", "mg/dL", ("2093-3",),
        ("cholesterol", "total cholesterol", "tc"),
    ),
    Measurement("ldl", "LDL cholesterol", "laboratory", "mg/dL", ("18262-6", "13457-7", "2089-1"), ("ldl", "ldl-c")),
    Measurement("hdl", "HDL cholesterol", "laboratory", "mg/dL", ("2085-9",), ("hdl", "hdl-c")),
    Measurement("triglycerides", "Triglycerides", "laboratory", "mg/dL", ("2571-8",), ("triglycerides", "tg")),
    Measurement("hemoglobin", "Hemoglobin", "laboratory", "g/dL", ("718-7",), ("hemoglobin", "hgb", "hb")),
    Measurement("wbc", "Leukocytes", "laboratory", "10*3/uL", ("6690-2",), ("wbc", "white blood cells", "leukocytes")),
    Measurement("sodium", "Sodium", "laboratory", "mmol/L", ("2951-2", "2947-0"), ("sodium", "na")),
    Measurement("potassium", "Potassium", "laboratory", "mmol/L", ("2823-3", "6298-4"), ("potassium", "k")),
)

BP_PANEL_LOINC = ("85354-9", "55284-4", "35094-2")

BY_KEY = {m.key: m for m in MEASUREMENTS}
BY_LOINC = {code: m for m in MEASUREMENTS for code in m.loinc}
BY_ALIAS = {alias: m for m in MEASUREMENTS for alias in (m.key, m.title.lower(), *m.aliases)}


def measurement_for(*, loinc: str | None = None, name: str | None = None) -> Measurement | None:
    if loinc and loinc in BY_LOINC:
        return BY_LOINC[loinc]
    if name:
        norm = re.sub(r"[\s_]+", " ", name.strip().lower())
        if norm in BY_ALIAS:
            return BY_ALIAS[norm]
        compact = norm.replace(" ", "_")
        if compact in BY_KEY:
            return BY_KEY[compact]
        for alias, m in BY_ALIAS.items():
            if len(alias) > 3 and re.search(rf"\b{re.escape(alias)}\b", norm):
                return m
    return None


# --- conditions ---------------------------------------------------------------------------------

# concept -> (SNOMED CT codes, ICD-10 prefixes, wording pattern, wording that excludes it)
CONDITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, str | None]] = {
    "diabetes": (
        ("44054006", "46635009", "73211009", "190330002", "427089005"),
        ("E10", "E11", "E13"),
        r"diabet|\bt[12]dm\b|\bdm ?(type )?[12]?\b|\bniddm\b|\biddm\b",
        r"prediabet|pre-diabet|insipidus",
    ),
    "hypertension": (
        ("38341003", "59621000", "1201005"),
        ("I10", "I11", "I12", "I13", "I15"),
        r"hypertens|\bhtn\b|high blood pressure",
        r"pulmonary hypertens|ocular hypertens",
    ),
    "ckd": (
        ("709044004", "431855005", "431856006", "433144002", "700379002"),
        ("N18",),
        r"chronic kidney disease|\bckd\b",
        None,
    ),
}


def condition_concept(label: str, codes: list[str] | tuple[str, ...] = ()) -> str | None:
    """The canonical concept of a condition (``diabetes``, ``hypertension``, ``ckd``) or None."""
    lower = label.lower()
    for concept, (snomed, icd_prefixes, pattern, exclude) in CONDITIONS.items():
        for code in codes:
            bare = code.split("|")[-1]
            if bare in snomed or any(bare.upper().startswith(p) for p in icd_prefixes):
                return concept
        if exclude and re.search(exclude, lower):
            continue
        if re.search(pattern, lower):
            return concept
    return None


# --- diagnosis wording, for the grounding check ------------------------------------------------

# Abbreviations clinicians and models use, expanded before comparing with recorded diagnoses.
ABBREVIATIONS = {
    "htn": "hypertension",
    "dm": "diabetes",
    "t2dm": "diabetes type 2",
    "t1dm": "diabetes type 1",
    "ckd": "chronic kidney disease",
    "copd": "chronic obstructive pulmonary disease",
    "chf": "heart failure",
    "hf": "heart failure",
    "mi": "myocardial infarction",
    "afib": "atrial fibrillation",
    "af": "atrial fibrillation",
    "cad": "coronary artery disease",
    "uti": "urinary tract infection",
    "gerd": "gastroesophageal reflux disease",
    "osa": "obstructive sleep apnea",
    "dvt": "deep vein thrombosis",
    "pe": "pulmonary embolism",
    "tia": "transient ischemic attack",
    "cva": "stroke",
    "hld": "hyperlipidemia",
}

# Common diagnoses a generated text may name. A mention found here that the record does not support is
# an unsupported diagnosis. Suffix patterns below catch many more (-itis, -emia, -oma, ... disease).
DIAGNOSIS_TERMS = (
    "hypertension", "diabetes", "prediabetes", "asthma", "chronic obstructive pulmonary disease", "pneumonia",
    "bronchitis", "sinusitis", "pharyngitis", "otitis media", "heart failure", "atrial fibrillation",
    "coronary artery disease", "myocardial infarction", "stroke", "transient ischemic attack",
    "chronic kidney disease", "acute kidney injury", "hyperlipidemia", "hypercholesterolemia", "obesity",
    "anemia", "depression", "anxiety", "dementia", "alzheimer", "parkinson", "epilepsy", "migraine",
    "osteoarthritis", "rheumatoid arthritis", "osteoporosis", "gout", "hypothyroidism", "hyperthyroidism",
    "cancer", "carcinoma", "lymphoma", "leukemia", "sepsis", "urinary tract infection", "cellulitis",
    "covid-19", "influenza", "tuberculosis", "hepatitis", "cirrhosis", "pancreatitis", "appendicitis",
    "gastroesophageal reflux disease", "sleep apnea", "deep vein thrombosis", "pulmonary embolism",
    "fracture", "concussion", "sprain", "neuropathy", "retinopathy", "nephropathy", "dermatitis", "psoriasis",
    "allergic rhinitis", "anaphylaxis", "hypoglycemia", "hyperglycemia", "metabolic syndrome",
)

DIAGNOSIS_SUFFIX = re.compile(
    r"\b[a-z]{4,}(?:itis|emia|aemia|oma|osis|pathy|plegia|algia)\b|\b[a-z]+(?:'s)? (?:disease|syndrome|disorder)\b"
)
