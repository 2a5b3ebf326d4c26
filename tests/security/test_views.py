"""The de-identified view of an upload result: what stays indexes only what stays."""

from __future__ import annotations

from ai_med_extract.security.views import WITHHELD, deidentified_result

ORIGINAL = "Seen by John Smith for hypertension."
SCRUBBED = "Seen by [NAME] for hypertension."


def _medical(text: str, source: str) -> dict:
    start = text.index("hypertension")
    item = {"id": "problem-1", "text": "hypertension", "start": start, "end": start + 12, "name": "hypertension"}
    return {"source": source, "counts": {"problems": 1}, "problems": [item], "fhir": {"resourceType": "Bundle"}}


def _document(**fields: object) -> dict:
    return {"document_id": "d1", "media_type": "text/plain", "text": ORIGINAL, **fields}


def test_findings_read_from_the_scrubbed_text_stay_and_index_it() -> None:
    doc = _document(phi={"text": SCRUBBED}, medical=_medical(SCRUBBED, "phi.text"))
    [shown] = deidentified_result("upload", {}, {"documents": [doc]})["documents"]  # type: ignore[index]
    assert "text" not in shown
    [item] = shown["medical"]["problems"]
    assert shown["phi"]["text"][item["start"] : item["end"]] == item["text"]


def test_findings_read_from_the_identified_text_are_withheld_but_counted() -> None:
    doc = _document(medical=_medical(ORIGINAL, "text"))
    [shown] = deidentified_result("upload", {}, {"documents": [doc]})["documents"]  # type: ignore[index]
    assert shown["medical"] == {"withheld": WITHHELD, "source": "text", "counts": {"problems": 1}}
    assert "John" not in repr(shown)


def test_structured_entries_of_the_identified_text_are_left_out_of_the_extraction() -> None:
    structured = {"problems": [{"text": "John Smith's disease", "start": 8, "end": 28}]}
    doc = _document(phi={"text": SCRUBBED}, medical=_medical(SCRUBBED, "phi.text"),
                    extraction={"segments": [{"start": 0, "end": 36}], "structured": structured})
    [shown] = deidentified_result("upload", {}, {"documents": [doc]})["documents"]  # type: ignore[index]
    assert shown["extraction"] == {"segments": [{"start": 0, "end": 36}]}
    assert doc["extraction"]["structured"] is structured  # the stored result is not changed
