"""Every document type through POST /upload -> job -> SSE, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.fixtures import clinical_formats as cf
from tests.fixtures import documents as docs
from tests.support import PIPELINE_MAX_WER, assert_heard, assert_read, parse_sse, wait_for_job

SCAN = ["Patient has diabetes mellitus type 2", "Metformin 500 mg twice daily"]
# Long enough (27 words) for a word error rate to mean something; espeak's voice is hard to hear.
DICTATION = (
    "The patient reports chest pain for two days with shortness of breath. "
    "There is no history of diabetes. The lungs are clear and the heart sounds are normal."
)


async def upload(client: httpx.AsyncClient, name: str, data: bytes, **form: str) -> httpx.Response:
    # The declared type is deliberately generic: the content decides.
    return await client.post("/upload", files={"files": (name, data, "application/octet-stream")}, data=form)


async def run_upload(
    client: httpx.AsyncClient, name: str, data: bytes, **form: str
) -> tuple[dict[str, Any], list]:
    response = await upload(client, name, data, scrub="false", extract="false", medical="false", **form)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    job = await wait_for_job(client, job_id, timeout=180)
    events = parse_sse((await client.get(f"/job/{job_id}/events")).text)
    return job, events


_UNIT_MESSAGE = re.compile(r"^document \d+/\d+: ")


def extraction_progress(events: list[dict[str, Any]]) -> list[str]:
    """The agent's per-page or per-chunk messages (the pipeline adds its own one per stage)."""
    return [
        e["data"]["message"]
        for e in events
        if e["event"] == "progress"
        and e["data"]["stage"] == "extract_text"
        and _UNIT_MESSAGE.match(e["data"]["message"])
    ]


CASES = [
    pytest.param(
        "note.pdf",
        lambda: docs.text_pdf([["Blood pressure 128/82 mmHg"], ["Follow up in 2 weeks"]]),
        "Blood pressure 128/82 mmHg\n\nFollow up in 2 weeks",
        "pdf",
        ["document 1/1: page 1/2 (text_layer)", "document 1/1: page 2/2 (text_layer)"],
        id="text-pdf",
    ),
    pytest.param(
        "scan.pdf",
        lambda: docs.scanned_pdf([SCAN]),
        "\n".join(SCAN),
        "pdf",
        ["document 1/1: page 1/1 (ocr)"],
        id="scanned-pdf",
    ),
    pytest.param(
        "letter.docx",
        docs.clinic_docx,
        docs.CLINIC_DOCX_TEXT,
        "docx",
        ["document 1/1: part 1/1"],
        id="docx",
    ),
    pytest.param(
        "photo.png",
        lambda: docs.image_bytes(docs.page_image(SCAN)),
        "\n".join(SCAN),
        "image",
        ["document 1/1: page 1/1 (ocr)"],
        id="png",
    ),
    pytest.param(
        "fax.tiff",
        lambda: docs.multipage_tiff([["Page one of the fax"], ["Page two of the fax"]]),
        "Page one of the fax\n\nPage two of the fax",
        "image",
        ["document 1/1: page 1/2 (ocr)", "document 1/1: page 2/2 (ocr)"],
        id="multipage-tiff",
    ),
    pytest.param(
        "note.txt",
        lambda: "Température 38,5 °C, toux sèche.\n".encode("cp1252"),
        "Température 38,5 °C, toux sèche.\n",
        "text",
        ["document 1/1: page 1/1"],
        id="text-cp1252",
    ),
]


@pytest.mark.parametrize(("name", "make", "text", "kind", "progress"), CASES)
async def test_each_document_type_is_extracted_through_the_upload_job(
    client: httpx.AsyncClient, name: str, make: Any, text: str, kind: str, progress: list[str]
) -> None:
    job, events = await run_upload(client, name, make())

    assert job["status"] == "completed", job
    [document] = job["result"]["documents"]
    if any("(ocr)" in message for message in progress):
        assert_read(text, document["text"])
    else:
        assert document["text"] == text
    extraction = document["extraction"]
    assert extraction["metadata"]["kind"] == kind
    for segment in extraction["segments"]:
        assert 0 <= segment["start"] <= segment["end"] <= len(document["text"])
    assert extraction_progress(events) == progress
    percents = [e["data"]["percent"] for e in events if e["event"] == "progress"]
    assert percents == sorted(percents)
    assert events[-1]["event"] == "complete"


@pytest.mark.models
async def test_audio_upload_is_transcribed_with_progress_per_chunk(client: httpx.AsyncClient) -> None:
    job, events = await run_upload(
        client, "dictation.mp3", docs.convert_audio(docs.speech_wav(DICTATION), "mp3")
    )

    assert job["status"] == "completed", job
    [document] = job["result"]["documents"]
    assert_heard(DICTATION, document["text"], max_wer=PIPELINE_MAX_WER)
    assert document["extraction"]["methods"] == ["speech"]
    assert document["extraction"]["metadata"]["media_type"] == "audio/mpeg"
    assert extraction_progress(events) == ["document 1/1: chunk 1/1 (speech)"]


async def test_two_documents_in_one_upload_report_progress_for_each(client: httpx.AsyncClient) -> None:
    files = [
        ("files", ("a.pdf", docs.text_pdf([["First document text"]]), "application/pdf")),
        ("files", ("b.png", docs.image_bytes(docs.page_image(["Second document"])), "image/png")),
    ]
    response = await client.post("/upload", files=files, data={"scrub": "false", "extract": "false"})
    job = await wait_for_job(client, response.json()["job_id"])
    events = parse_sse((await client.get(f"/job/{job['job_id']}/events")).text)

    first, second = job["result"]["documents"]
    assert first["text"] == "First document text"  # the PDF's text layer: exact
    assert_read("Second document", second["text"])  # OCR: within a margin
    assert extraction_progress(events) == [
        "document 1/2: page 1/1 (text_layer)",
        "document 2/2: page 1/1 (ocr)",
    ]


async def test_encrypted_pdf_is_read_with_the_upload_password(client: httpx.AsyncClient) -> None:
    job, _ = await run_upload(
        client, "locked.pdf", docs.encrypted_pdf([["Locked note text"]], "pw-123"), password="pw-123"
    )

    assert job["status"] == "completed", job
    assert job["result"]["documents"][0]["text"] == "Locked note text"


async def test_encrypted_pdf_without_password_fails_the_job_with_a_stable_code(
    client: httpx.AsyncClient,
) -> None:
    job, events = await run_upload(client, "locked.pdf", docs.encrypted_pdf([["Locked note text"]], "pw-123"))

    assert job["status"] == "failed"
    assert events[-1]["event"] == "error"
    assert events[-1]["data"]["code"] == "PDF_ENCRYPTED"


@pytest.mark.parametrize(
    ("name", "make", "status", "code"),
    [
        ("page.pdf", lambda: docs.HTML_AS_PDF, 415, "HTML_NOT_SUPPORTED"),
        ("tool.exe", lambda: b"MZ\x90\x00" + bytes(range(256)) * 4, 415, "UNSUPPORTED_FORMAT"),
        ("empty.pdf", lambda: b"", 422, "EMPTY_FILE"),
    ],
)
async def test_upload_refuses_unreadable_content_at_once(
    client: httpx.AsyncClient, name: str, make: Any, status: int, code: str
) -> None:
    response = await upload(client, name, make())

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("name", "make", "code"),
    [
        (
            "bomb.docx",
            lambda: docs.docx_with_member("word/pad.bin", b"\x00" * (20 * 1024 * 1024)),
            "ZIP_BOMB",
        ),
        ("bomb.png", lambda: docs.png_claiming_size(80_000, 80_000), "IMAGE_TOO_LARGE"),
        ("broken.pdf", lambda: docs.text_pdf([["x"]])[:250], "CORRUPT_PDF"),
    ],
)
async def test_hostile_documents_fail_their_job_and_the_worker_goes_on(
    client: httpx.AsyncClient, name: str, make: Any, code: str
) -> None:
    job, events = await run_upload(client, name, make())

    assert job["status"] == "failed"
    assert events[-1]["data"]["code"] == code
    follow_up, _ = await run_upload(client, "ok.txt", b"Still processing uploads\n")
    assert follow_up["status"] == "completed"


FORMATS = [
    pytest.param("ccd.xml", cf.ccda, "Plan of Treatment\nRecheck fasting glucose in three months.", "cda", id="ccda"),
    pytest.param(
        "docref.json",
        lambda: cf.fhir_json(cf.document_reference(docs.text_pdf([["Attached discharge note"]]), "application/pdf")),
        "Attached discharge note",
        "fhir",
        id="fhir-document-reference",
    ),
    pytest.param("letter.odt", lambda: cf.odt(["Clinic letter", "Seen today."]), "Clinic letter\nSeen today.", "odt",
                 id="odt"),
    pytest.param("note.rtf", lambda: cf.rtf(["Seen today.", "Plan unchanged."]), "Seen today.\nPlan unchanged.", "rtf",
                 id="rtf"),
    pytest.param("note.txt", lambda: "Seen today, afebrile.\n".encode("utf-16-be"), "Seen today, afebrile.\n", "text",
                 id="utf16-be-without-bom"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "expected", "kind"), FORMATS)
async def test_formats_clinical_systems_export_are_extracted_through_the_upload_job(
    client: httpx.AsyncClient, name: str, make: Any, expected: str, kind: str
) -> None:
    job, events = await run_upload(client, name, make())

    assert job["status"] == "completed", job
    [document] = job["result"]["documents"]
    assert expected in document["text"]
    assert document["extraction"]["metadata"]["kind"] == kind
    assert events[-1]["event"] == "complete"


async def test_ccda_entries_reach_the_medical_record_with_their_xml_provenance(client: httpx.AsyncClient) -> None:
    response = await upload(client, "ccd.xml", cf.ccda())
    job = await wait_for_job(client, response.json()["job_id"], timeout=300)

    assert job["status"] == "completed", job
    [document] = job["result"]["documents"]
    source = document["phi"]["text"]
    coded = [item for item in document["medical"]["problems"] if item["detector"] == "cda"]
    assert [item["name"] for item in coded] == [cf.PROBLEM[1].lower()]
    [problem] = coded
    assert source[problem["start"] : problem["end"]] == problem["text"]
    assert problem["source_path"].startswith("/ClinicalDocument/component/structuredBody/component")
    assert {"system": "http://snomed.info/sct", "code": cf.PROBLEM[0]} in [
        {"system": c["system"], "code": c["code"]} for c in problem["codes"]
    ]
    assert [s["status"] for s in document["stages"]] == ["succeeded"] * 3
    conditions = [
        e["resource"] for e in document["medical"]["fhir"]["entry"] if e["resource"]["resourceType"] == "Condition"
    ]
    assert any(cf.PROBLEM[0] in str(c.get("code")) for c in conditions)


async def test_hostile_ccda_fails_its_job_with_xml_unsafe_and_the_worker_goes_on(client: httpx.AsyncClient) -> None:
    job, events = await run_upload(client, "bomb.xml", cf.hostile_ccda(cf.ENTITY_EXPANSION))

    assert job["status"] == "failed"
    assert events[-1]["data"]["code"] == "XML_UNSAFE"
    follow_up, _ = await run_upload(client, "ok.txt", b"Still processing uploads\n")
    assert follow_up["status"] == "completed"
