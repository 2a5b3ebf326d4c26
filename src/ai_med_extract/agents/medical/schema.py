"""The structured output of medical extraction (the project's JSON schema).

Every item is grounded: ``start``/``end`` are character offsets into the source text such that
``source[start:end] == text``, and ``detector`` names the rule set or model that found it. Codes are
only attached when a shipped vocabulary gives them (see ``vocabulary.py``); nothing is guessed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"

Subject = Literal["patient", "family", "other"]
MedicationStatus = Literal["active", "stopped", "on-hold", "intended", "completed", "not-taken", "unknown"]
VitalKind = Literal[
    "blood_pressure", "heart_rate", "respiratory_rate", "temperature", "spo2", "weight", "height", "bmi"
]
LabFlag = Literal["high", "low", "critical_high", "critical_low", "abnormal", "normal"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Code(_Model):
    system: str = Field(description="Code system URI (FHIR canonical)")
    code: str
    display: str | None = None


class Context(_Model):
    """Clinical context from ConText rules and the section the item sits in."""

    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    hypothetical: bool = False
    subject: Subject = "patient"


class Item(_Model):
    id: str = Field(description="Stable within one extraction: <type>-<n>")
    text: str = Field(description="Exactly source[start:end]")
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    detector: str = Field(description="Rule set or model that found the item")
    section: str | None = Field(None, description="Normalised section category (hpi, medications, ...)")
    context: Context = Field(default_factory=Context)
    codes: list[Code] = Field(default_factory=list)
    source_path: str | None = Field(
        None, description="Structured source (C-CDA): XPath-like path of the XML element the item came from"
    )


class Problem(Item):
    name: str = Field(description="Normalised problem name")


class Procedure(Item):
    name: str
    date: str | None = Field(None, description="ISO date it was done, or the start of its period")
    end_date: str | None = Field(None, description="ISO date its period ended, when the text gives one")


class Medication(Item):
    name: str = Field(description="Normalised generic name, lower case")
    strength: str | None = Field(None, description="Strength as written, normalised: '500 mg'")
    dose: float | None = Field(None, description="Amount per administration")
    unit: str | None = Field(None, description="Unit of `dose`: mg, mcg, tablet, puff, unit, mL, ...")
    route: str | None = None
    frequency: str | None = Field(None, description="Normalised: QD, BID, TID, QID, QHS, Q6H, QW, ...")
    duration: str | None = Field(None, description="'7 day', '2 week'")
    prn: bool = False
    prn_reason: str | None = None
    status: MedicationStatus = "active"


class Lab(Item):
    name: str
    value: float | None = None
    value_text: str | None = Field(None, description="Value as written (also non-numeric: 'positive')")
    unit: str | None = Field(None, description="UCUM unit")
    reference_low: float | None = None
    reference_high: float | None = None
    flag: LabFlag | None = None
    date: str | None = Field(None, description="ISO date when the text gives one")


class Vital(Item):
    kind: VitalKind
    value: float = Field(description="Systolic for blood pressure")
    diastolic: float | None = None
    unit: str = Field(description="UCUM unit after normalisation")
    original_value: str = Field(description="Value as written")
    original_unit: str | None = None
    date: str | None = Field(None, description="ISO date when the text gives one")


class Allergy(Item):
    substance: str
    no_known_allergies: bool = False
    category: Literal["medication", "food", "environment"] | None = None
    reactions: list[str] = Field(default_factory=list)
    severity: Literal["mild", "moderate", "severe"] | None = None


class Section(_Model):
    category: str
    title: str
    start: int
    end: int


class MedicalExtraction(_Model):
    schema_version: str = SCHEMA_VERSION
    mode: Literal["rules", "llm"] = "rules"
    text_length: int = 0
    problems: list[Problem] = Field(default_factory=list)
    medications: list[Medication] = Field(default_factory=list)
    procedures: list[Procedure] = Field(default_factory=list)
    labs: list[Lab] = Field(default_factory=list)
    vitals: list[Vital] = Field(default_factory=list)
    allergies: list[Allergy] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
    llm_dropped_ungrounded: int = Field(0, description="LLM items whose text was not found in the source")
    llm_model: str | None = None

    def items(self) -> list[Item]:
        return [*self.problems, *self.medications, *self.procedures, *self.labs, *self.vitals, *self.allergies]

    def ungrounded(self, source: str) -> list[str]:
        """Ids of items whose offsets do not give back their text in ``source`` (the grounding rule a
        clinician's correction must keep; items added by a clinician, detector ``clinician``, are exempt)."""
        bad = []
        for item in self.items():
            if item.detector == "clinician":
                continue
            if not (0 <= item.start <= item.end <= len(source)) or source[item.start : item.end] != item.text:
                bad.append(item.id)
        return bad

    def counts(self) -> dict[str, int]:
        return {
            "problems": len(self.problems),
            "medications": len(self.medications),
            "procedures": len(self.procedures),
            "labs": len(self.labs),
            "vitals": len(self.vitals),
            "allergies": len(self.allergies),
        }
