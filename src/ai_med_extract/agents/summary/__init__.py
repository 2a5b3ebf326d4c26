"""Patient summaries: any record shape into facts, then cited, grounded Markdown and JSON sections."""

from .agent import TEMPLATE_MODEL, PatientSummaryAgent, SummaryOptions
from .cache import SummaryCache, cache_key
from .facts import Fact, FactKind, InputKind, PatientRecord
from .inputs import load_record
from .output import PatientSummary, SoapNote

__all__ = [
    "TEMPLATE_MODEL",
    "Fact",
    "FactKind",
    "InputKind",
    "PatientRecord",
    "PatientSummary",
    "PatientSummaryAgent",
    "SoapNote",
    "SummaryCache",
    "SummaryOptions",
    "cache_key",
    "load_record",
]
