"""What the upload pipeline builds for one document: ``DocumentResult``.

The record is typed while the stages build it (``jobs/upload.py``) and stored as JSON (``to_dict``);
routes that read a stored document get it back with ``from_dict``. The JSON shape is the API's::

    {"document_id", "media_type", "text", "extraction": {...}, "phi": {...}, "medical": {...}, "stages": [...]}

``phi`` and ``medical`` are absent when their stage did not run (switched off, or failed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from ai_med_extract.agents.medical.schema import MedicalExtraction
from ai_med_extract.agents.phi.types import Operator, PhiLabel, PhiSpan, ScrubResult
from ai_med_extract.agents.text.result import ExtractedDocument
from ai_med_extract.errors import AppError


class StageStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"  # a stage it needs failed


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """What became of one stage for one document (PHI-free: a name, a status, a stable code)."""

    stage: str
    status: StageStatus
    code: str | None = None
    message: str | None = None

    @classmethod
    def failure(cls, stage: str, exc: Exception) -> StageOutcome:
        if isinstance(exc, AppError):
            return cls(stage, StageStatus.failed, exc.code, exc.message)
        return cls(stage, StageStatus.failed, "INTERNAL_ERROR", "the stage failed; see the service logs")

    def to_dict(self) -> dict[str, Any]:
        return {key: (str(value) if key == "status" else value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageOutcome:
        return cls(data["stage"], StageStatus(data["status"]), data.get("code"), data.get("message"))


MedicalSource = Literal["phi.text", "text"]


@dataclass(frozen=True, slots=True)
class MedicalResult:
    """The structured medical data of one document, with its FHIR R4 Bundle.

    ``source`` names the text the offsets point into: ``phi.text`` (de-identified) or ``text``."""

    source: MedicalSource
    extraction: MedicalExtraction
    fhir: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.extraction.counts(),
            **self.extraction.model_dump(mode="json"),
            "fhir": self.fhir,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MedicalResult:
        fields = {key: value for key, value in data.items() if key not in ("source", "counts", "fhir")}
        fhir = data.get("fhir")
        return cls(
            source="phi.text" if data.get("source") == "phi.text" else "text",
            extraction=MedicalExtraction.model_validate(fields),
            fhir=fhir if isinstance(fhir, dict) else None,
        )


def _phi_to_dict(result: ScrubResult) -> dict[str, Any]:
    return {
        "operator": str(result.operator),
        "text": result.text,
        "spans": [s.to_dict() for s in result.spans],
        "counts": result.counts(),
    }


def _phi_from_dict(data: dict[str, Any]) -> ScrubResult:
    spans = [
        PhiSpan(
            start=int(s["start"]), end=int(s["end"]), label=PhiLabel(s["label"]), score=float(s["score"]),
            detector=str(s.get("detector", "")), recognizer=str(s.get("recognizer", "")),
        )
        for s in data.get("spans") or []
    ]  # fmt: skip
    return ScrubResult(text=str(data.get("text") or ""), spans=spans, operator=Operator(data["operator"]))


@dataclass(frozen=True, slots=True)
class DocumentResult:
    """One uploaded document through the pipeline: its text and where it came from, its
    de-identified copy, its medical data, and what became of each stage."""

    document_id: str
    media_type: str | None = None
    text: str | None = None  # the extracted text (holds identifiers)
    extraction: ExtractedDocument | None = None  # provenance: segments, methods, confidence, metadata
    phi: ScrubResult | None = None  # the de-identified copy (never reversible in the pipeline)
    medical: MedicalResult | None = None
    stages: tuple[StageOutcome, ...] = field(default=())

    def best_text(self) -> str | None:
        """The de-identified text when the document was scrubbed, else the extracted text."""
        return self.phi.text if self.phi is not None else self.text

    @property
    def best_text_source(self) -> MedicalSource:
        """Which text ``best_text`` is: ``phi.text`` or ``text``."""
        return "phi.text" if self.phi is not None else "text"

    @property
    def fhir(self) -> dict[str, Any] | None:
        return self.medical.fhir if self.medical is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The stored and returned JSON (the same shape the API has always answered)."""
        out: dict[str, Any] = {"document_id": self.document_id, "media_type": self.media_type}
        if self.extraction is not None or self.text is not None:
            out["text"] = self.text
        if self.extraction is not None:
            out["extraction"] = self.extraction.model_dump(mode="json", exclude={"text"})
        if self.phi is not None:
            out["phi"] = _phi_to_dict(self.phi)
        if self.medical is not None:
            out["medical"] = self.medical.to_dict()
        out["stages"] = [o.to_dict() for o in self.stages]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocumentResult:
        """A stored document result (``to_dict``'s output) as the typed record."""
        text = data.get("text")
        extraction = data.get("extraction")
        phi = data.get("phi")
        medical = data.get("medical")
        return cls(
            document_id=str(data.get("document_id") or ""),
            media_type=data.get("media_type"),
            text=text if isinstance(text, str) else None,
            extraction=(
                ExtractedDocument.model_validate({**extraction, "text": text or ""})
                if isinstance(extraction, dict) else None
            ),
            phi=_phi_from_dict(phi) if isinstance(phi, dict) else None,
            medical=MedicalResult.from_dict(medical) if isinstance(medical, dict) else None,
            stages=tuple(StageOutcome.from_dict(s) for s in data.get("stages") or [] if isinstance(s, dict)),
        )
