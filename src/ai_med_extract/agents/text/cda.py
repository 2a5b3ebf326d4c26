"""C-CDA / CDA R2 clinical documents, parsed with defusedxml.

Each section of the structured body becomes one segment: its title, then its narrative block
(``<text>``: paragraphs, list items and table rows one a line, cells separated by `` | ``). The
section's code (a LOINC section code) is kept in ``ExtractedDocument.sections``. The structured
entries of the problem, medication, allergy and result sections are mapped straight to the medical
data model (``agents/medical/schema.py``): each item names the XML element it came from
(``source_path``, an XPath-like path) and points at its words in the text; an entry whose words the
narrative does not carry gets a line of its own at the end of its section. A body that is not XML
(``nonXMLBody``, e.g. a PDF in base64) is handed back for extraction as a document of its own type.

Errors (stable codes): ``XML_UNSAFE`` (422, entity declarations, external entities or a DTD: refused
before anything is expanded), ``CORRUPT_XML`` (422, not well-formed or not a ClinicalDocument).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]

from ai_med_extract.agents.medical.schema import (
    Allergy,
    Code,
    Context,
    Item,
    Lab,
    MedicalExtraction,
    Medication,
    Problem,
)
from ai_med_extract.agents.text.base import (
    ExtractionOutput,
    Extractor,
    Nested,
    Runner,
    Source,
    Step,
    add_document,
    decode_base64,
)
from ai_med_extract.agents.text.result import DocumentKind, DocumentSection, Method, SegmentKind
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import Unprocessable

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_N = f"{{{V3}}}"

CODE_SYSTEMS = {
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "2.16.840.1.113883.6.103": "http://hl7.org/fhir/sid/icd-9-cm",
    "2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "2.16.840.1.113883.6.69": "http://hl7.org/fhir/sid/ndc",
    "2.16.840.1.113883.3.26.1.1": "http://ncithesaurus-stage.nci.nih.gov",
}

# LOINC section codes -> (section category used by medical extraction, entry kind read from it)
SECTION_KINDS: dict[str, tuple[str, str | None]] = {
    "11450-4": ("problem_list", "problem"),
    "10160-0": ("medications", "medication"),
    "48765-2": ("allergies", "allergy"),
    "30954-2": ("labs", "lab"),
    "8716-3": ("vitals", None),
    "47519-4": ("procedures", None),
    "10164-2": ("hpi", None),
    "51848-0": ("assessment_and_plan", None),
    "18776-5": ("assessment_and_plan", None),
    "29762-2": ("social_history", None),
    "10157-6": ("family_history", None),
    "11348-0": ("past_medical_history", None),
    "10154-3": ("chief_complaint", None),
    "29545-1": ("physical_exam", None),
    "10187-3": ("review_of_systems", None),
    "8648-8": ("hospital_course", None),
    "10183-2": ("medications", "medication"),  # hospital discharge medications
}

_INTERPRETATION = {"H": "high", "HH": "critical_high", "L": "low", "LL": "critical_low", "A": "abnormal",
                   "N": "normal"}  # fmt: skip
_CELL_SEPARATOR = " | "


def unsafe() -> Unprocessable:
    return Unprocessable(
        "the XML declares entities or a DTD, which are refused", code="XML_UNSAFE"
    )


def corrupt() -> Unprocessable:
    return Unprocessable("the clinical document is not well-formed CDA XML", code="CORRUPT_XML")


@dataclass
class CdaSection:
    title: str
    text: str
    code: str | None
    code_system: str | None
    category: str | None
    path: str
    items: list[Item] = field(default_factory=list)  # offsets relative to ``text``


@dataclass
class CdaDocument:
    title: str | None
    sections: list[CdaSection]
    attachments: list[tuple[str | None, bytes]]  # nonXMLBody: (media type, decoded bytes)


def parse_cda(data: bytes) -> CdaDocument:
    """Blocking: parse and read a CDA document (hostile XML refused before expansion)."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException:
        raise unsafe() from None
    except (ET.ParseError, ValueError, UnicodeError):
        raise corrupt() from None
    if root.tag != f"{_N}ClinicalDocument":
        raise corrupt()
    title = _text(root.find(f"{_N}title"))
    sections: list[CdaSection] = []
    attachments: list[tuple[str | None, bytes]] = []
    for component, path in _children(root, "component", "/ClinicalDocument"):
        body = component.find(f"{_N}structuredBody")
        if body is not None:
            sections.extend(_sections(body, f"{path}/structuredBody"))
        nonxml = component.find(f"{_N}nonXMLBody")
        if nonxml is not None:
            attachments.extend(_non_xml(nonxml))
    return CdaDocument(title=title or None, sections=sections, attachments=attachments)


def _sections(container: ET.Element, path: str) -> Iterator[CdaSection]:
    for component, component_path in _children(container, "component", path):
        section = component.find(f"{_N}section")
        if section is None:
            continue
        section_path = f"{component_path}/section"
        yield _read_section(section, section_path)
        yield from _sections(section, section_path)  # nested sections


def _read_section(section: ET.Element, path: str) -> CdaSection:
    code_el = section.find(f"{_N}code")
    code = code_el.get("code") if code_el is not None else None
    system = code_el.get("codeSystem") if code_el is not None else None
    category, entry_kind = SECTION_KINDS.get(code or "", (None, None))
    title = _text(section.find(f"{_N}title")) or (code_el.get("displayName", "") if code_el is not None else "")
    narrative = section.find(f"{_N}text")
    lines = [title] if title else []
    if narrative is not None:
        lines.extend(line for line in _narrative_lines(narrative) if line.strip())
    entries = list(_entries(section, path, entry_kind)) if entry_kind else []
    text = "\n".join(lines)
    # Ground each entry in the narrative (after the title); add a line for those it does not carry.
    items: list[Item] = []
    for entry in entries:
        if not entry.label:
            continue
        at = text.lower().find(entry.label.lower(), len(title))
        if at < 0:
            at = len(text) + 1 if text else 0
            text = f"{text}\n{entry.label}" if text else entry.label
        end = at + len(entry.label)
        items.append(entry.build(f"{entry.kind}-{len(items) + 1}", text[at:end], at, end, category))
    return CdaSection(
        title=title, text=text, code=code, code_system=CODE_SYSTEMS.get(system or "", system),
        category=category, path=path, items=items,
    )  # fmt: skip


# -- entries ----------------------------------------------------------------------------------


@dataclass
class _Entry:
    kind: str
    label: str
    path: str
    codes: list[Code]
    fields: dict[str, Any]
    negated: bool = False

    def build(self, item_id: str, text: str, start: int, end: int, section: str | None) -> Item:
        base: dict[str, Any] = {
            "id": item_id, "text": text, "start": start, "end": end, "detector": "cda",
            "section": section, "codes": self.codes, "source_path": self.path,
            "context": Context(negated=self.negated),
        }  # fmt: skip
        if self.kind == "problem":
            return Problem(**base, name=self.label.lower())
        if self.kind == "medication":
            return Medication(**base, name=self.label.lower(), **self.fields)
        if self.kind == "allergy":
            return Allergy(**base, substance=self.label.lower(), **self.fields)
        return Lab(**base, name=self.label, **self.fields)


def _entries(section: ET.Element, path: str, kind: str) -> Iterator[_Entry]:
    for entry, entry_path in _children(section, "entry", path):
        if kind == "lab":
            yield from _results(entry, entry_path)
            continue
        found = _first_clinical_statement(entry, entry_path, kind)
        if found is not None:
            yield found


def _first_clinical_statement(entry: ET.Element, path: str, kind: str) -> _Entry | None:
    if kind == "medication":
        for el, el_path in _walk(entry, path):
            if el.tag == f"{_N}substanceAdministration":
                return _medication(el, el_path)
        return None
    for el, el_path in _walk(entry, path):
        if el.tag != f"{_N}observation":
            continue
        if kind == "problem":
            value = el.find(f"{_N}value")
            if value is not None and (value.get("displayName") or _original_text(value)):
                return _Entry(
                    "problem", value.get("displayName") or _original_text(value), el_path, _codes(value), {},
                    negated=el.get("negationInd") == "true",
                )
        if kind == "allergy":
            substance = el.find(f"{_N}participant/{_N}participantRole/{_N}playingEntity/{_N}code")
            if substance is not None and (substance.get("displayName") or _original_text(substance)):
                reactions = [
                    v.get("displayName", "")
                    for rel in el.findall(f"{_N}entryRelationship")
                    if rel.get("typeCode") == "MFST"
                    for v in rel.findall(f"{_N}observation/{_N}value")
                    if v.get("displayName")
                ]
                return _Entry(
                    "allergy", substance.get("displayName") or _original_text(substance), el_path,
                    _codes(substance), {"reactions": [r.lower() for r in reactions]},
                    negated=el.get("negationInd") == "true",
                )  # fmt: skip
    return None


def _medication(el: ET.Element, path: str) -> _Entry | None:
    code = el.find(f"{_N}consumable/{_N}manufacturedProduct/{_N}manufacturedMaterial/{_N}code")
    if code is None:
        return None
    label = code.get("displayName") or _original_text(code)
    if not label:
        return None
    fields: dict[str, Any] = {}
    dose = el.find(f"{_N}doseQuantity")
    if dose is not None and _number(dose.get("value")) is not None:
        fields["dose"] = _number(dose.get("value"))
        fields["unit"] = dose.get("unit")
    route = el.find(f"{_N}routeCode")
    if route is not None and route.get("displayName"):
        fields["route"] = route.get("displayName", "").lower()
    for time in el.findall(f"{_N}effectiveTime"):
        period = time.find(f"{_N}period")
        if period is not None and period.get("value") and period.get("unit"):
            fields["frequency"] = f"Q{period.get('value')}{period.get('unit', '').upper()}"
    status = el.find(f"{_N}statusCode")
    if status is not None and status.get("code") in ("completed", "aborted"):
        fields["status"] = "stopped" if status.get("code") == "aborted" else "completed"
    negated = el.get("negationInd") == "true"
    if negated:
        fields["status"] = "not-taken"
    return _Entry("medication", label, path, _codes(code), fields, negated=negated)


def _results(entry: ET.Element, path: str) -> Iterator[_Entry]:
    for el, el_path in _walk(entry, path):
        if el.tag != f"{_N}observation":
            continue
        code = el.find(f"{_N}code")
        if code is None or not (code.get("displayName") or _original_text(code)):
            continue
        fields: dict[str, Any] = {}
        value = el.find(f"{_N}value")
        if value is not None:
            number = _number(value.get("value"))
            fields["value"] = number
            fields["value_text"] = value.get("value") or (value.text or "").strip() or None
            fields["unit"] = value.get("unit")
        interpretation = el.find(f"{_N}interpretationCode")
        if interpretation is not None and interpretation.get("code") in _INTERPRETATION:
            fields["flag"] = _INTERPRETATION[interpretation.get("code", "")]
        low = el.find(f"{_N}referenceRange/{_N}observationRange/{_N}value/{_N}low")
        high = el.find(f"{_N}referenceRange/{_N}observationRange/{_N}value/{_N}high")
        fields["reference_low"] = _number(low.get("value")) if low is not None else None
        fields["reference_high"] = _number(high.get("value")) if high is not None else None
        when = el.find(f"{_N}effectiveTime")
        stamp = when.get("value") if when is not None else None
        if stamp and len(stamp) >= 8 and stamp[:8].isdigit():
            fields["date"] = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"
        yield _Entry("lab", code.get("displayName") or _original_text(code), el_path, _codes(code), fields)


def _codes(el: ET.Element) -> list[Code]:
    codes = []
    for candidate in [el, *el.findall(f"{_N}translation")]:
        code, system = candidate.get("code"), candidate.get("codeSystem")
        if code and system:
            codes.append(Code(system=CODE_SYSTEMS.get(system, f"urn:oid:{system}"), code=code,
                              display=candidate.get("displayName")))
    return codes


def _original_text(el: ET.Element) -> str:
    original = el.find(f"{_N}originalText")
    return _text(original) if original is not None else ""


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# -- narrative and paths ------------------------------------------------------------------------


_BLOCKS = frozenset({"paragraph", "item", "caption", "list", "table", "thead", "tbody", "tfoot", "section"})
_HIDDEN = frozenset({"footnoteRef", "renderMultiMedia"})


def _narrative_lines(element: ET.Element) -> Iterator[str]:
    """Lines of a narrative block: paragraphs, list items, table rows (cells joined), captions."""
    inline: list[str] = [element.text or ""]

    def flush() -> Iterator[str]:
        line = " ".join("".join(inline).split())
        inline.clear()
        if line:
            yield line

    for child in element:
        name = _local(child.tag)
        if name in _BLOCKS:
            yield from flush()
            yield from _narrative_lines(child)
        elif name == "tr":
            yield from flush()
            cells = [" ".join(" ".join(_narrative_lines(cell)).split()) for cell in child]
            if any(cells):
                yield _CELL_SEPARATOR.join(cells)
        elif name == "br":
            yield from flush()
        elif name not in _HIDDEN:
            inline.append(_text(child))
        inline.append(child.tail or "")
    yield from flush()


def _text(element: ET.Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(parent: ET.Element, name: str, path: str) -> Iterator[tuple[ET.Element, str]]:
    matching = [child for child in parent if child.tag == f"{_N}{name}"]
    for index, child in enumerate(matching, start=1):
        yield child, f"{path}/{name}" + (f"[{index}]" if len(matching) > 1 else "")


def _walk(element: ET.Element, path: str) -> Iterator[tuple[ET.Element, str]]:
    """Every descendant in document order, with its path."""
    counts: dict[str, int] = {}
    for child in element:
        counts[child.tag] = counts.get(child.tag, 0) + 1
    seen: dict[str, int] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        seen[child.tag] = seen.get(child.tag, 0) + 1
        name = _local(child.tag)
        child_path = f"{path}/{name}" + (f"[{seen[child.tag]}]" if counts[child.tag] > 1 else "")
        yield child, child_path
        yield from _walk(child, child_path)


def _non_xml(body: ET.Element) -> Iterator[tuple[str | None, bytes]]:
    """A nonXMLBody's document. (No size check: base64 decodes to 3/4 of its length, so it is always
    smaller than the C-CDA file, which the upload limit bounds; the agent checks it again as a document.)"""
    content = body.find(f"{_N}text")
    if content is None:
        return
    raw = "".join(content.itertext())
    if content.get("representation") == "B64":
        yield content.get("mediaType"), decode_base64(raw)
    elif raw.strip():
        yield content.get("mediaType") or "text/plain", raw.encode("utf-8")


# -- the extractor ------------------------------------------------------------------------------


class CdaExtractor(Extractor):
    kind = DocumentKind.cda
    name = "defusedxml"
    isolated = True

    def __init__(self, settings: ExtractionSettings, nested: Nested):
        self._settings = settings
        self._nested = nested

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        document: CdaDocument = await run(parse_cda, source.data)
        total = len(document.sections) + len(document.attachments)
        structured = MedicalExtraction()
        counters: dict[str, int] = {}
        done = 0
        for section in document.sections:
            segment = out.assembler.add(section.text, kind=SegmentKind.section, method=Method.text_layer)
            out.sections.append(
                DocumentSection(
                    title=section.title, code=section.code, code_system=section.code_system,
                    category=section.category, start=segment.start, end=segment.end,
                    source_path=section.path,
                )  # fmt: skip
            )
            for item in section.items:
                kind = item.id.split("-", 1)[0]
                counters[kind] = counters.get(kind, 0) + 1
                shifted = item.model_copy(
                    update={"id": f"{kind}-{counters[kind]}", "start": item.start + segment.start,
                            "end": item.end + segment.start}
                )  # fmt: skip
                getattr(structured, _LISTS[kind]).append(shifted)
            done += 1
            yield Step(done, total, "section")
        for _, data in document.attachments:
            add_document(out, await self._nested(data, source.depth + 1, run))
            done += 1
            yield Step(done, total, "attachment")
        out.pages = max(out.pages, 1)
        if structured.items():
            out.structured = structured.model_copy(update={"text_length": len(out.assembler.text)})
        if not total:
            out.assembler.add("", kind=SegmentKind.body, method=Method.text_layer)
            out.warnings.append("PAGE_EMPTY:1")
            yield Step(1, 1, "part")


_LISTS = {"problem": "problems", "medication": "medications", "allergy": "allergies", "lab": "labs"}
