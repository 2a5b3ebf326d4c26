"""POST /transcribe: short audio answered directly, long audio (or background=true) as a job."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from ai_med_extract.config import Settings
from tests.fixtures import documents as docs
from tests.support import PIPELINE_MAX_WER, assert_heard, parse_sse, running_app, wait_for_job

# Long enough (27 words) for a word error rate to mean something; espeak's voice is hard to hear.
DICTATION = (
    "The patient reports chest pain for two days with shortness of breath. "
    "There is no history of diabetes. The lungs are clear and the heart sounds are normal."
)


@pytest.mark.models
async def test_short_audio_is_transcribed_in_the_request(client: httpx.AsyncClient) -> None:
    wav = docs.speech_wav(DICTATION)

    response = await client.post("/transcribe", files={"file": ("note.wav", wav, "audio/wav")})

    assert response.status_code == 200, response.text
    body = response.json()
    assert_heard(DICTATION, body["text"], max_wer=PIPELINE_MAX_WER)
    assert body["metadata"]["kind"] == "audio"
    assert body["metadata"]["model"] == "whisper-tiny.en"
    for segment in body["segments"]:
        assert body["text"][segment["start"] : segment["end"]]
        assert segment["start_s"] <= segment["end_s"]


@pytest.mark.models
@pytest.mark.parametrize(
    ("overrides", "form"),
    [({}, {"background": "true"}), ({"extraction": {"transcribe_inline_max_s": 2}}, {})],
    ids=["background-flag", "longer-than-inline-limit"],
)
async def test_transcription_becomes_a_job_with_chunk_progress(
    settings_factory: Callable[..., Settings], overrides: dict, form: dict
) -> None:
    ogg = docs.convert_audio(docs.speech_wav(DICTATION), "ogg")

    async with running_app(settings_factory(**overrides)) as client:
        response = await client.post("/transcribe", files={"file": ("note.ogg", ogg, "audio/ogg")}, data=form)
        assert response.status_code == 202, response.text
        job = await wait_for_job(client, response.json()["job_id"], timeout=180)
        events = parse_sse((await client.get(f"/job/{job['job_id']}/events")).text)

    assert job["status"] == "completed", job
    [document] = job["result"]["documents"]
    assert_heard(DICTATION, document["text"], max_wer=PIPELINE_MAX_WER)
    assert "phi" not in document  # transcription only: no scrubbing stage ran
    messages = [e["data"]["message"] for e in events if e["event"] == "progress"]
    assert "document 1/1: chunk 1/1 (speech)" in messages


async def test_audio_over_the_limit_is_refused_before_any_job(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(extraction={"max_audio_seconds": 3})) as client:
        response = await client.post(
            "/transcribe", files={"file": ("long.wav", docs.tone_wav(5.0), "audio/wav")}
        )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "AUDIO_TOO_LONG"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (docs.text_pdf([["not audio"]]), 415, "NOT_AUDIO"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 64, 422, "CORRUPT_AUDIO"),
        (b"", 400, "EMPTY_FILE"),
    ],
    ids=["pdf", "corrupt-wav", "empty"],
)
async def test_transcribe_refuses_what_is_not_usable_audio(
    client: httpx.AsyncClient, data: bytes, status: int, code: str
) -> None:
    response = await client.post("/transcribe", files={"file": ("x.wav", data, "audio/wav")})

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
