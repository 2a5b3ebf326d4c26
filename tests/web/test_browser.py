"""The page in a real browser: headless Debian Chromium walks through uploads to results.

Each flow saves screenshots under tests/artifacts/ (one per result tab) for people to look at; the
assertions are what make the test fail when the flow breaks.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import pytest

from tests.fixtures.documents import speech_wav, text_pdf
from tests.support import PAGE_MAX_WER, assert_heard
from tests.web.conftest import create_api_key

pytestmark = pytest.mark.browser

RESULT_TIMEOUT_MS = 240_000
CLINIC_NOTE = [
    "Clinic note 03/14/2024",
    "Patient: John Smith   MRN: 4829173   Phone: (555) 201-7788",
    "History: type 2 diabetes mellitus and hypertension.",
    "The patient denies chest pain. No shortness of breath.",
    "Medications: metformin 500 mg PO BID; lisinopril 10 mg daily.",
    "Allergies: penicillin (rash).",
    "Vitals: BP 142/88, HR 76.",
    "Plan: HbA1c in three months. Follow up with Dr. Alice Brown.",
]
DICTATION = (
    "Follow up visit. The patient has a cough for three days. "
    "No fever. Start amoxicillin five hundred milligrams three times daily."
)


def drop_files(page: Any, files: list[tuple[str, str, bytes]]) -> None:
    """Drag files onto the drop zone the way a file manager does (DataTransfer + drag events)."""
    payload = [[name, mime, base64.b64encode(data).decode()] for name, mime, data in files]
    page.evaluate(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, mime, b64] of files) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type: mime }));
            }
            const zone = document.getElementById("drop-zone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
            }
        }""",
        payload,
    )


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']")


def process_and_wait(page: Any) -> None:
    page.get_by_role("button", name="Process").click()
    page.wait_for_selector("#progress-panel:not([hidden])")
    page.wait_for_selector("#results-panel:not([hidden])", timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#error-box").is_hidden(), page.locator("#error-box").inner_text()


def open_tab(page: Any, name: str) -> Any:
    """Move to a tab with the keyboard (arrow keys on the tab list), as a keyboard user would."""
    tab = page.get_by_role("tab", name=name)
    page.locator("[role='tab'][aria-selected='true']").focus()
    for _ in range(6):
        if tab.get_attribute("aria-selected") == "true":
            break
        page.keyboard.press("ArrowRight")
    assert tab.get_attribute("aria-selected") == "true"
    panel = page.locator(f"#{tab.get_attribute('aria-controls')}")
    assert panel.is_visible()
    return panel


def wait_for_summary(page: Any) -> str:
    page.wait_for_function(
        "() => /^(Done|The summary could not)/.test(document.getElementById('summary-status').textContent)",
        timeout=RESULT_TIMEOUT_MS,
    )
    status = page.locator("#summary-status").inner_text()
    assert status.startswith("Done"), status
    return page.locator("#summary-output").inner_text()


def walk_results(page: Any, shot: Any, prefix: str, *, expect_text: str) -> dict[str, str]:
    """Visit every result tab, check it has content, screenshot it; return the visible texts."""
    seen: dict[str, str] = {}
    assert page.locator("#progress-log li").count() >= 2, "progress events from the job stream were shown"
    assert page.locator("#progress-bar").get_attribute("value") == "100"
    text = page.locator("#text-output").inner_text()
    assert expect_text in text.lower()
    seen["text"] = text
    shot(page, f"{prefix}-1-text")

    panel = open_tab(page, "De-identified")
    seen["phi"] = panel.locator("#phi-output").inner_text()
    shot(page, f"{prefix}-2-deidentified")

    panel = open_tab(page, "Medical data")
    seen["medical"] = panel.locator("table").inner_text()
    assert panel.locator("tbody tr").count() >= 1
    shot(page, f"{prefix}-3-medical")

    panel = open_tab(page, "FHIR bundle")
    build = page.get_by_role("button", name=re.compile("build the bundle"))
    if build.is_visible():  # the document came without one: save it as a medical record
        build.click()
        page.wait_for_selector("#fhir-download:not([hidden])", timeout=60_000)
    fhir = panel.locator("#fhir-output").inner_text()
    assert '"resourceType": "Bundle"' in fhir
    seen["fhir"] = fhir

    panel = open_tab(page, "Patient summary")
    seen["summary"] = wait_for_summary(page)
    assert seen["summary"].strip()
    shot(page, f"{prefix}-5-summary")
    page.get_by_role("tab", name="FHIR bundle").click()
    shot(page, f"{prefix}-4-fhir")
    return seen


# The summary in the PDF flow comes from the server's default model (a small GGUF), kept short.
SHORT_SUMMARIES = {"chunk_max_tokens": 16, "narrative_max_tokens": 24, "assessment_max_tokens": 16}


def test_pdf_dropped_on_the_page_goes_through_to_every_result_tab(live_server: Any, page: Any, shot: Any) -> None:
    with live_server(summary=SHORT_SUMMARIES) as server:
        open_page(page, server.url)
        assert page.locator("#auth-panel").is_hidden(), "no key entry when auth is off"
        drop_files(page, [("clinic-note.pdf", "application/pdf", text_pdf([CLINIC_NOTE]))])
        assert "clinic-note.pdf" in page.locator("#file-list").inner_text()
        models = page.get_by_label("Summary model").locator("option").all_inner_texts()
        assert any("(default)" in m for m in models), models
        shot(page, "pdf-0-chosen")
        process_and_wait(page)
        seen = walk_results(page, shot, "pdf", expect_text="metformin")
        # The server's default model wrote the summary: its text came in as streamed token events.
        streamed = int(page.locator("#summary-output").get_attribute("data-streamed-events") or 0)
        assert streamed > 0

    assert "John Smith" not in seen["phi"] and "4829173" not in seen["phi"]
    labels = set(page.locator("#phi-output mark").evaluate_all("marks => marks.map(m => m.dataset.label)"))
    assert {"NAME", "MRN"} <= labels, labels
    rows = page.locator("#medical-table tbody tr")
    texts = [rows.nth(i).inner_text().lower() for i in range(rows.count())]
    assert any("metformin" in t for t in texts), texts
    negated = [t for t in texts if "negated" in t]
    assert any("chest pain" in t for t in negated), texts
    assert not any("metformin" in t for t in negated)
    assert page.console_errors == [], page.console_errors


def test_audio_recording_is_transcribed_and_shown_in_the_results(live_server: Any, page: Any, shot: Any) -> None:
    audio = speech_wav(DICTATION)
    with live_server() as server:
        open_page(page, server.url)
        # The keyboard path: the file input is a focusable control inside the drop zone.
        page.get_by_label(re.compile("choose files", re.I)).set_input_files(
            files=[{"name": "dictation.wav", "mimeType": "audio/wav", "buffer": audio}]
        )
        page.get_by_label("Summary model").select_option("template")
        process_and_wait(page)
        seen = walk_results(page, shot, "audio", expect_text="")
    assert_heard(DICTATION, seen["text"], max_wer=PAGE_MAX_WER)
    assert "Audio:" in page.locator("#text-meta").inner_text()
    rows = page.locator("#medical-table tbody tr")
    texts = [rows.nth(i).inner_text().lower() for i in range(rows.count())]
    assert texts, "the transcript's findings are listed"
    # What the table says follows what was heard (the words themselves vary with the CPU).
    heard = seen["text"].lower()
    if "cough" in heard:
        assert any("cough" in t and "negated" not in t for t in texts), texts
    if "no fever" in heard:
        assert any("fever" in t and "negated" in t for t in texts), texts
    assert page.console_errors == [], page.console_errors


def test_rejected_files_get_a_clear_error(live_server: Any, page: Any, shot: Any) -> None:
    with live_server() as server:
        open_page(page, server.url)
        drop_files(page, [("setup.exe", "application/octet-stream", b"MZ\x90\x00binary")])
        error = page.get_by_role("alert")
        assert error.is_visible()
        assert "setup.exe" in error.inner_text() and "cannot be read" in error.inner_text()
        assert page.get_by_role("button", name="Process").is_disabled()
        shot(page, "rejected-1-client")

        # Named like a PDF, but not one: the server refuses it and the page says why.
        drop_files(page, [("scan.pdf", "application/pdf", b"\x00\x01\x02 not a pdf \xff\xfe\x00" * 20)])
        assert page.locator("#error-box").is_hidden()
        page.get_by_role("button", name="Process").click()
        page.wait_for_selector("#error-box:not([hidden])", timeout=60_000)
        message = page.locator("#error-box").inner_text()
        assert "cannot be read" in message, message
        assert re.search(r"\((UNSUPPORTED_FORMAT|UNSUPPORTED_MEDIA_TYPE)\)", message), message
        assert page.locator("#results-panel").is_hidden()
        shot(page, "rejected-2-server")


def test_with_auth_on_the_page_asks_for_a_key_and_works_once_given_one(
    live_server: Any, page: Any, shot: Any
) -> None:
    with live_server(security={"auth_enabled": True}) as server:
        token = create_api_key(server.app.state.settings, "clinician")
        open_page(page, server.url)
        assert page.locator("#auth-panel").is_visible()
        drop_files(page, [
            ("clinic-note.pdf", "application/pdf", text_pdf([CLINIC_NOTE])),
            ("nursing-note.txt", "text/plain", b"Nursing note: patient resting, denies nausea.\n"),
        ])  # fmt: skip
        page.get_by_role("button", name="Process").click()
        assert "requires an API key" in page.get_by_role("alert").inner_text()
        assert page.locator("#api-key").evaluate("el => el === document.activeElement")

        page.get_by_label("API key", exact=True).fill("ame_wrong-key")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.getElementById('auth-status').textContent.includes('not accepted')")
        assert page.locator("#api-key").get_attribute("aria-invalid") == "true"
        shot(page, "auth-1-wrong-key")

        page.get_by_label("API key", exact=True).fill(token)
        page.get_by_role("button", name="Use key").click()
        page.wait_for_function("() => document.getElementById('auth-status').textContent.includes('Key accepted')")
        assert "clinician" in page.locator("#auth-status").inner_text()
        page.get_by_label("Summary model").select_option("template")
        shot(page, "auth-2-key-accepted")
        process_and_wait(page)
        assert "metformin" in page.locator("#text-output").inner_text().lower()
        picker = page.get_by_label("Document", exact=True)
        assert picker.locator("option").count() == 2
        picker.select_option(index=1)
        assert "denies nausea" in page.locator("#text-output").inner_text()
        open_tab(page, "Medical data")
        assert "negated" in page.locator("#medical-table").inner_text()
        picker.select_option(index=0)
        open_tab(page, "Patient summary")
        assert wait_for_summary(page).strip()
        shot(page, "auth-3-results")
    assert token not in page.content(), "the key is never written into the page"


def test_identifier_highlights_line_up_with_the_scrubbed_text_for_every_operator(
    live_server: Any, page: Any
) -> None:
    """The page maps spans (offsets in the original text) onto the scrubbed text it shows."""
    original = "Seen by John Smith on 03/04/2024, MRN 123456."
    spans = [
        {"start": 8, "end": 18, "label": "NAME"},
        {"start": 22, "end": 32, "label": "DATE"},
        {"start": 38, "end": 44, "label": "MRN"},
    ]
    cases = {
        "redact": "Seen by [NAME] on [DATE], MRN [MRN].",
        "mask": "Seen by **** ***** on **********, MRN ******.",
        "surrogate": "Seen by Mark Jones on 01/02/2024, MRN 998877.",
    }
    with live_server() as server:
        open_page(page, server.url)
        for operator, scrubbed in cases.items():
            segments = page.evaluate(
                "([o, s, spans]) => window.ameTesting.phiSegments(o, s, spans)", [original, scrubbed, spans]
            )
            assert segments is not None, operator
            assert "".join(seg["text"] for seg in segments) == scrubbed
            marked = [(seg["label"], seg["text"]) for seg in segments if seg.get("label")]
            expected = {"redact": ["[NAME]", "[DATE]", "[MRN]"], "mask": ["**** *****", "**********", "******"],
                        "surrogate": ["Mark Jones", "01/02/2024", "998877"]}[operator]
            assert marked == list(zip(["NAME", "DATE", "MRN"], expected, strict=True)), operator
        adjacent = page.evaluate(
            "([o, s, spans]) => window.ameTesting.phiSegments(o, s, spans)",
            ["JohnSmith x", "[NAME][NAME] x", [{"start": 0, "end": 4, "label": "NAME"},
                                                 {"start": 4, "end": 9, "label": "NAME"}]],
        )
        assert [seg["text"] for seg in adjacent] == ["[NAME]", "[NAME]", " x"]


# -- grounding: every finding and every summary citation opens its source ----------------------------
GROUNDED_NOTE = "\n".join([
    "Clinic note 03/14/2024",
    "Patient: John Smith   MRN: 4829173",
    "History: type 2 diabetes mellitus and hypertension.",
    "Medications: metformin 500 mg PO BID; lisinopril 10 mg daily.",
    "Allergies: penicillin (rash).",
    "Vitals: BP 142/88, HR 76.",
    "",
])


def upload_text(page: Any, name: str, text: str) -> None:
    page.get_by_label(re.compile("choose files", re.I)).set_input_files(
        files=[{"name": name, "mimeType": "text/plain", "buffer": text.encode()}]
    )
    page.get_by_label("Summary model").select_option("template")
    process_and_wait(page)


def finding_rows(page: Any) -> dict[str, Any]:
    """Medical table rows by the finding's name (the button in the row header)."""
    rows = page.locator("#medical-table tbody tr")
    return {rows.nth(i).locator("th").inner_text(): rows.nth(i) for i in range(rows.count())}


def highlighted(page: Any) -> str:
    mark = page.locator("#source-text mark.grounding")
    assert mark.count() == 1
    # scrolled to: the mark lies inside the visible part of the document text and of the window
    inside = mark.evaluate(
        """(m) => {
            const r = m.getBoundingClientRect(), box = m.closest("pre").getBoundingClientRect();
            return r.top >= box.top - 1 && r.bottom <= box.bottom + 1 && r.top >= 0 && r.bottom <= innerHeight;
        }"""
    )
    assert inside, "the highlighted span was scrolled into view"
    return str(mark.inner_text())


def test_a_finding_opens_its_span_highlighted_in_the_document(live_server: Any, page: Any, shot: Any) -> None:
    with live_server(phi={"ner": False}) as server:
        open_page(page, server.url)
        upload_text(page, "clinic-note.txt", GROUNDED_NOTE + "Plan: recheck.\n" * 60)  # long: the span must scroll
        open_tab(page, "Medical data")
        rows = finding_rows(page)
        assert {"metformin", "lisinopril", "hypertension"} <= set(rows), list(rows)
        for name, row in rows.items():  # every finding, in table order
            written = row.locator("td").nth(1).inner_text()  # "As written"
            row.locator("th button").click()
            assert highlighted(page) == written, name
            assert page.locator("#source-mark").evaluate("m => m === document.activeElement")
            assert "de-identified text" in page.locator("#source-meta").inner_text()
        last = list(rows.values())[-1].locator("th button")
        rows["metformin"].locator("th button").click()
        shot(page, "source-1-finding")
        # The text the span sits in is the one this caller was given, identifiers scrubbed.
        source = page.locator("#source-text").inner_text()
        assert source == page.locator("#phi-output").inner_text() and "John Smith" not in source
        last.click()
        page.get_by_role("button", name="Close").click()
        assert page.locator("#source-panel").is_hidden()
        assert last.evaluate("b => b === document.activeElement"), "focus goes back to the finding"
    assert page.console_errors == [], page.console_errors


def test_a_summary_citation_opens_the_fhir_resource_and_the_span_it_rests_on(
    live_server: Any, page: Any, shot: Any
) -> None:
    with live_server(phi={"ner": False}) as server:
        open_page(page, server.url)
        upload_text(page, "clinic-note.txt", GROUNDED_NOTE)
        open_tab(page, "Medical data")
        written = {name: row.locator("td").nth(1).inner_text() for name, row in finding_rows(page).items()}
        open_tab(page, "Patient summary")
        wait_for_summary(page)
        citations = page.locator("#summary-output button.cite")
        assert citations.count() >= 3, page.locator("#summary-output").inner_text()
        checked = []
        for i in range(citations.count()):
            button = citations.nth(i)
            fact = button.inner_text()
            assert re.fullmatch(r"F\d+", fact)
            button.click()
            title = page.locator("#source-title").inner_text()
            assert title.startswith(f"{fact}: ")
            resource = page.locator("#source-resource")
            assert resource.is_visible(), title  # the facts of an upload come from its FHIR bundle
            assert '"resourceType"' in resource.inner_text()
            label = re.sub(r" \(\d{4}-\d\d-\d\d\)$", "", title.split(": ", 1)[1])
            if label in written:  # a condition, drug or allergy named as the finding is
                assert highlighted(page) == written[label], title
                checked.append(label)
        assert {"metformin", "hypertension"} & set(checked), checked
        shot(page, "source-2-citation")
    assert page.console_errors == [], page.console_errors


HOSTILE = "\n".join([
    "History: hypertension. <img src=x onerror=\"document.body.dataset.pwned='img'\">",
    "Medications: metformin 500 mg daily <script>document.body.dataset.pwned='script'</script>.",
    "Note: <b onmouseover=\"document.body.dataset.pwned='b'\">bold</b> <iframe src=\"javascript:1\"></iframe>",
    "",
])


def test_a_hostile_document_is_shown_as_text_and_runs_nothing(live_server: Any, page: Any) -> None:
    with live_server(phi={"ner": False}) as server:
        open_page(page, server.url)
        upload_text(page, "hostile.txt", HOSTILE)
        assert "<img src=x onerror=" in page.locator("#text-output").inner_text()
        open_tab(page, "Medical data")
        page.get_by_role("button", name="metformin", exact=True).click()
        assert "<script>" in page.locator("#source-text").inner_text()
        open_tab(page, "Patient summary")
        wait_for_summary(page)
        citations = page.locator("#summary-output button.cite")
        for i in range(citations.count()):
            citations.nth(i).click()
        page.locator("#source-text").hover()
        injected = page.locator("main img, main script, main iframe, main b, #source-text *:not(mark)")
        assert injected.count() == 0
        assert page.evaluate("() => document.body.dataset.pwned") is None
    assert page.console_errors == [], page.console_errors


def test_a_reader_opens_earlier_results_and_sees_findings_in_the_de_identified_text(
    live_server: Any, page: Any, shot: Any
) -> None:
    import httpx

    with live_server(security={"auth_enabled": True}, phi={"ner": False}) as server:
        clinician = create_api_key(server.app.state.settings, "clinician")
        reader = create_api_key(server.app.state.settings, "reader")
        with httpx.Client(base_url=server.url, headers={"X-API-Key": clinician}, timeout=60) as api:
            created = api.post("/upload", files={"files": ("note.txt", GROUNDED_NOTE.encode(), "text/plain")})
            assert created.status_code == 202, created.text
            job_id = created.json()["job_id"]
            for _ in range(1200):
                status = api.get(f"/job/{job_id}").json()["status"]
                if status in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.1)
            assert status == "completed", status
        open_page(page, server.url)
        page.get_by_label("API key", exact=True).fill(reader)
        page.get_by_role("button", name="Use key").click()
        page.wait_for_function("() => document.getElementById('auth-status').textContent.includes('Key accepted')")
        page.get_by_label("Upload job id").fill(job_id)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#results-panel:not([hidden])")
        assert page.locator("#error-box").is_hidden(), page.locator("#error-box").inner_text()
        assert "withheld" in page.locator("#text-output").inner_text()
        open_tab(page, "Medical data")
        row = finding_rows(page)["metformin"]
        written = row.locator("td").nth(1).inner_text()
        row.get_by_role("button", name="metformin", exact=True).click()
        assert highlighted(page) == written
        source = page.locator("#source-text").inner_text()
        assert "John Smith" not in source and "4829173" not in source
        shot(page, "source-3-reader")
    assert reader not in page.content() and "John Smith" not in page.content()
    assert page.console_errors == [], page.console_errors
