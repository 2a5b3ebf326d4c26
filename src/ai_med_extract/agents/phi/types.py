"""Value types of the PHI scrubber: labels, detected spans, operators and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class PhiLabel(StrEnum):
    """HIPAA Safe Harbor identifier kinds (one label per kind the scrubber reports)."""

    NAME = "NAME"
    DATE = "DATE"
    YEAR = "YEAR"  # a year on its own: allowed by Safe Harbor, redacted unless keep_years is set
    AGE = "AGE"  # ages over 89 only
    LOCATION = "LOCATION"  # city, town, street, ward, geographic unit smaller than a state
    HOSPITAL = "HOSPITAL"
    ADDRESS = "ADDRESS"
    ZIP = "ZIP"
    PHONE = "PHONE"
    FAX = "FAX"
    EMAIL = "EMAIL"
    SSN = "SSN"
    MRN = "MRN"
    HEALTH_PLAN = "HEALTH_PLAN"
    ACCOUNT = "ACCOUNT"
    LICENSE = "LICENSE"
    VEHICLE = "VEHICLE"
    DEVICE = "DEVICE"
    URL = "URL"
    IP_ADDRESS = "IP_ADDRESS"
    BIOMETRIC = "BIOMETRIC"
    PHOTO = "PHOTO"
    ID = "ID"  # any other unique identifying number


class Operator(StrEnum):
    """What happens to a detected span."""

    redact = "redact"  # "[NAME]"
    mask = "mask"  # "*****" of the same length
    surrogate = "surrogate"  # consistent realistic fake values; dates shifted per patient
    reversible = "reversible"  # opaque tokens "[NAME-1a2b3c4d]" kept in an encrypted mapping


@dataclass(frozen=True, slots=True)
class PhiSpan:
    """One identifier in the input text: ``text[start:end]``."""

    start: int
    end: int
    label: PhiLabel
    score: float
    detector: str  # the rule or model inside the recognizer ("cue.title", "learned.spacy")
    recognizer: str = ""  # the registry entry that found it ("names", "learned")

    def to_dict(self) -> dict[str, object]:
        return {
            "start": self.start,
            "end": self.end,
            "label": str(self.label),
            "score": round(self.score, 3),
            "detector": self.detector,
            "recognizer": self.recognizer,
        }


@dataclass(slots=True)
class ScrubResult:
    """Scrubbed text plus the spans found in the *input* text (offsets refer to the input)."""

    text: str
    spans: list[PhiSpan]
    operator: Operator
    # reversible mode only: token -> original value (never logged; stored encrypted by the caller)
    mapping: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.spans:
            out[str(s.label)] = out.get(str(s.label), 0) + 1
        return out
