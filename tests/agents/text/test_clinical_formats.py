"""The formats clinical systems export, through the real text agent (real parsers, real Tesseract)."""

from __future__ import annotations

import re

import jiwer
import pytest

from ai_med_extract.agents.text import TextExtractionAgent
from ai_med_extract.agents.text.detect import detect
from ai_med_extract.agents.text.result import DocumentKind
from ai_med_extract.errors import AppError
from tests.fixtures import clinical_formats as cf
from tests.fixtures import documents as docs


def word_error_rate(reference: str, hypothesis: str) -> float:
    def words(text: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())

    return float(jiwer.wer(words(reference), words(hypothesis)))


# -- C-CDA ---------------------------------------------------------------------------------------


async def test_ccda_sections_keep_their_loinc_codes_and_text(agent: TextExtractionAgent) -> None:
    result = await agent.extract(cf.ccda())

    assert result.metadata.kind is DocumentKind.cda
    codes = [(s.code, s.title) for s in result.sections]
    assert codes == [
        ("11450-4", "Problem List"),
        ("10160-0", "Medications"),
        ("48765-2", "Allergies"),
        ("30954-2", "Results"),
        ("18776-5", "Plan of Treatment"),
    ]
    plan = result.sections[-1]
    assert result.text[plan.start : plan.end] == "Plan of Treatment\nRecheck fasting glucose in three months."
    assert f"{cf.MEDICATION[1]} | one tablet by mouth daily" in result.text
    assert all(s.source_path.startswith("/ClinicalDocument/component/structuredBody/component") for s in result.sections)


async def test_ccda_entries_become_medical_records_grounded_in_the_text(agent: TextExtractionAgent) -> None:
    result = await agent.extract(cf.ccda())
    structured = result.structured
    assert structured is not None

    [problem] = structured.problems
    [medication] = structured.medications
    [allergy] = structured.allergies
    [lab] = structured.labs
    for item in structured.items():
        assert result.text[item.start : item.end] == item.text
        assert item.detector == "cda"
        assert item.source_path is not None and item.source_path.startswith("/ClinicalDocument/")
    assert problem.name == cf.PROBLEM[1].lower() and problem.section == "problem_list"
    assert [(c.system, c.code) for c in problem.codes] == [("http://snomed.info/sct", cf.PROBLEM[0])]
    assert problem.source_path.endswith("/section/entry/act/entryRelationship/observation")
    assert [(c.system, c.code) for c in medication.codes] == [
        ("http://www.nlm.nih.gov/research/umls/rxnorm", cf.MEDICATION[0])
    ]
    assert (medication.route, medication.frequency, medication.dose) == ("oral", "Q24H", 1.0)
    assert allergy.substance == cf.ALLERGY[1].lower() and allergy.reactions == ["hives"]
    assert (lab.value, lab.unit, lab.flag, lab.date) == (182.0, "mg/dL", "high", "2024-03-05")
    assert (lab.reference_low, lab.reference_high) == (70.0, 99.0)
    assert [(c.system, c.code) for c in lab.codes] == [("http://loinc.org", cf.RESULT[0])]


async def test_ccda_entry_missing_from_the_narrative_gets_a_line_of_its_own(agent: TextExtractionAgent) -> None:
    result = await agent.extract(cf.ccda(problem_in_narrative=False))

    [problem] = result.structured.problems  # type: ignore[union-attr]
    section = result.sections[0]
    assert result.text[problem.start : problem.end] == cf.PROBLEM[1]
    assert section.start <= problem.start < problem.end <= section.end


async def test_ccda_with_a_pdf_body_reads_the_pdf(agent: TextExtractionAgent) -> None:
    result = await agent.extract(cf.ccda_with_pdf_body(docs.text_pdf([["Referral for cardiology review"]])))

    assert result.text == "Referral for cardiology review"
    assert result.metadata.kind is DocumentKind.cda


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (cf.hostile_ccda(cf.ENTITY_EXPANSION), "XML_UNSAFE"),
        (cf.hostile_ccda(cf.EXTERNAL_ENTITY), "XML_UNSAFE"),
        (cf.ccda()[:-40], "CORRUPT_XML"),
    ],
    ids=["entity-expansion", "external-entity", "truncated"],
)
async def test_hostile_ccda_is_refused_with_a_stable_code(agent: TextExtractionAgent, data: bytes, code: str) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(data)

    assert (caught.value.status_code, caught.value.code) == (422, code)
    assert "hostname" not in caught.value.message


# -- FHIR ----------------------------------------------------------------------------------------


async def test_fhir_document_reference_with_a_pdf_takes_the_pdf_path(agent: TextExtractionAgent) -> None:
    pdf = docs.text_pdf([["Echo shows normal function"], ["Ejection fraction 60 percent"]])
    result = await agent.extract(cf.fhir_json(cf.document_reference(pdf, "application/pdf")))

    assert result.metadata.kind is DocumentKind.fhir
    assert result.text == "Echo shows normal function\n\nEjection fraction 60 percent"
    assert [s.page for s in result.segments] == [1, 2]


async def test_fhir_bundle_of_document_references_reads_each_attachment_in_order(
    agent: TextExtractionAgent,
) -> None:
    scan = docs.image_bytes(docs.page_image(["Faxed lab report glucose normal"]))
    data = cf.fhir_json(
        cf.bundle(
            {"resourceType": "Patient", "id": "p1"},
            cf.document_reference("First note in the bundle".encode("utf-16"), "text/plain"),
            cf.document_reference(scan, "image/png"),
            cf.binary(docs.text_pdf([["Third part as a binary"]]), "application/pdf"),
        )
    )
    result = await agent.extract(data)

    first, second, third = (result.segment_text(s) for s in result.segments)
    assert first == "First note in the bundle"
    assert word_error_rate("Faxed lab report glucose normal", second) <= 0.2
    assert third == "Third part as a binary"
    assert result.metadata.ocr_pages == [2]


async def test_fhir_json_without_attachments_is_read_as_text_as_before(agent: TextExtractionAgent) -> None:
    data = cf.fhir_json(cf.bundle({"resourceType": "Observation", "status": "final"}))
    result = await agent.extract(data)

    assert result.text == data.decode()
    assert "FHIR_NO_ATTACHMENT" in result.warnings


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (cf.fhir_json({"resourceType": "Binary", "contentType": "application/pdf", "data": "%%not base64%%"}),
         "ATTACHMENT_INVALID"),
        (cf.nested_binaries(6, b"deep note"), "CONTAINER_TOO_DEEP"),
    ],
    ids=["bad-base64", "too-deep"],
)  # fmt: skip
async def test_hostile_fhir_attachments_are_refused_with_a_stable_code(data: bytes, code: str) -> None:
    from ai_med_extract.config import ExtractionSettings

    small = TextExtractionAgent(ExtractionSettings(), max_bytes=4_000_000)
    with pytest.raises(AppError) as caught:
        await small.extract(data)

    assert (caught.value.status_code, caught.value.code) == (422, code)


# -- word processors, RTF, HEIC, wide text -------------------------------------------------------


async def test_odt_paragraphs_and_table_rows_in_order(agent: TextExtractionAgent) -> None:
    data = cf.odt(["Clinic letter", "Seen today for review."], [["Test", "Result"], ["HbA1c", "6.1 %"]])
    result = await agent.extract(data)

    assert result.metadata.kind is DocumentKind.odt
    assert result.text == "Clinic letter\nSeen today for review.\nTest | Result\nHbA1c | 6.1 %"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (cf.odt_with_member("content.xml", b"<office:document-content>not closed"), "CORRUPT_ODT"),
        (cf.odt_with_member("Pictures/pad.bin", b"\x00" * (20 * 1024 * 1024)), "ZIP_BOMB"),
    ],
    ids=["corrupt", "zip-bomb"],
)
async def test_hostile_odt_is_refused_with_a_stable_code(agent: TextExtractionAgent, data: bytes, code: str) -> None:
    assert detect(data).kind is DocumentKind.odt
    with pytest.raises(AppError) as caught:
        await agent.extract(data)

    assert (caught.value.status_code, caught.value.code) == (422, code)


async def test_rtf_text_with_code_page_escapes(agent: TextExtractionAgent) -> None:
    result = await agent.extract(cf.rtf(["Fièvre 38,5 °C depuis hier.", "Paracetamol 1 g."]))

    assert result.metadata.kind is DocumentKind.rtf
    assert result.text == "Fièvre 38,5 °C depuis hier.\nParacetamol 1 g."


async def test_heic_photo_of_paper_is_read_by_ocr(agent: TextExtractionAgent) -> None:
    lines = ["Prescription lisinopril 10 mg daily"]
    result = await agent.extract(cf.heic(docs.page_image(lines)))

    assert result.metadata.media_type == "image/heic"
    assert word_error_rate(lines[0], result.text) <= 0.2


@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le", "utf-32-le", "utf-32-be", "utf-16", "utf-32"])
async def test_wide_text_is_read_with_or_without_byte_order_mark(
    agent: TextExtractionAgent, encoding: str
) -> None:
    text = "Blood pressure 128/82, température 37,2 °C.\nNo chest pain.\n"
    result = await agent.extract(text.encode(encoding))

    assert result.text == text
    assert detect(text.encode(encoding)).kind is DocumentKind.text


async def test_binary_with_zero_bytes_is_still_unsupported() -> None:
    with pytest.raises(AppError) as caught:
        detect(bytes(range(256)) * 8)

    assert (caught.value.status_code, caught.value.code) == (415, "UNSUPPORTED_FORMAT")


@pytest.mark.skipif(cf.soffice() is None, reason="LibreOffice (apt-packages-test.txt) writes the .doc fixture")
async def test_word_97_document_is_converted_by_antiword(agent: TextExtractionAgent) -> None:
    data = cf.word97(["Discharge letter", "Warfarin 5 mg daily, INR in one week."])
    result = await agent.extract(data)

    assert result.metadata.kind is DocumentKind.doc
    assert "Discharge letter" in result.text
    assert "Warfarin 5 mg daily, INR in one week." in result.text


async def test_ole_file_that_is_not_word_is_unsupported() -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + "Workbook".encode("utf-16-le") + b"\x00" * 600
    with pytest.raises(AppError) as caught:
        detect(data)

    assert caught.value.code == "UNSUPPORTED_FORMAT"


async def test_corrupt_word_97_document_fails_with_a_stable_code(agent: TextExtractionAgent) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x01" * 504 + "WordDocument".encode("utf-16-le") + b"\x02" * 600
    with pytest.raises(AppError) as caught:
        await agent.extract(data)

    assert (caught.value.status_code, caught.value.code) == (422, "CORRUPT_DOC")


# -- DOCX text boxes, footnotes, comments --------------------------------------------------------


async def test_docx_text_boxes_footnotes_and_comments_in_reading_order(agent: TextExtractionAgent) -> None:
    data = cf.docx_with_boxes(
        "Referral letter",
        ["Reason: palpitations for a month", "Holter monitor requested"],
        "Nested box: urgent review",
        "Footnote: ECG attached",
        "Comment: confirm the appointment",
    )
    result = await agent.extract(data)

    body, notes = (result.segment_text(s) for s in result.segments)
    assert body == (
        "Referral letter\nAnchor\nReason: palpitations for a month\nHolter monitor requested\n"
        "Nested box: urgent review"
    )
    assert notes == "Footnote: ECG attached\nComment: confirm the appointment"
    assert [s.kind.value for s in result.segments] == ["body", "note"]


async def test_docx_words_in_tracked_insertions_fields_and_inline_controls_are_read(
    agent: TextExtractionAgent,
) -> None:
    result = await agent.extract(cf.docx_with_inline_wrappers())

    assert result.text == "Started apixaban 5 mg twice daily"
