from __future__ import annotations

import numpy as np
import pytest

from ai_med_extract.agents.text import Method, SegmentKind, TextExtractionAgent
from ai_med_extract.agents.text.audio import SAMPLE_RATE, chunk_bounds, decode_audio
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import AppError
from ai_med_extract.inference.pool import ModelPool
from tests.fixtures import documents as docs
from tests.support import SPEECH_MAX_WER
from tests.support import word_error_rate as wer

DICTATION = (
    "The patient reports chest pain for two days with shortness of breath. "
    "There is no history of diabetes. The lungs are clear and the heart sounds are normal."
)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "ogg", "m4a"])
def test_audio_of_each_format_decodes_to_16khz_mono_float32(fmt: str) -> None:
    wav = docs.tone_wav(2.0)
    data = wav if fmt == "wav" else docs.convert_audio(wav, fmt)

    samples = decode_audio(data, "audio/mp4" if fmt == "m4a" else "audio/x", max_seconds=300, timeout_s=60)

    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / SAMPLE_RATE - 2.0) < 0.1
    assert 0.1 < float(np.abs(samples).max()) <= 1.0  # ffmpeg's sine source peaks at 1/8


def test_audio_longer_than_the_limit_is_refused_without_decoding_all_of_it() -> None:
    with pytest.raises(AppError) as caught:
        decode_audio(docs.tone_wav(12.0), "audio/x-wav", max_seconds=10.0, timeout_s=60)

    assert (caught.value.status_code, caught.value.code) == (422, "AUDIO_TOO_LONG")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 64, id="bad-wav-header"),
        pytest.param(b"fLaC" + b"\x00" * 200, id="flac-header-only"),
        pytest.param(b"ID3\x03\x00\x00\x00\x00\x00\x00", id="mp3-tag-only"),
    ],
)
def test_corrupt_audio_is_refused_with_a_stable_code(data: bytes) -> None:
    with pytest.raises(AppError) as caught:
        decode_audio(data, "audio/x", max_seconds=300, timeout_s=60)

    assert (caught.value.status_code, caught.value.code) == (422, "CORRUPT_AUDIO")


def test_chunks_cover_the_audio_and_cut_in_the_quietest_place() -> None:
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(75 * SAMPLE_RATE) * 0.3).astype(np.float32)
    samples[int(27.0 * SAMPLE_RATE) : int(27.3 * SAMPLE_RATE)] = 0.0  # a pause between words

    bounds = chunk_bounds(samples, 30.0)

    assert bounds[0][0] == 0 and bounds[-1][1] == samples.size
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(end - start <= 30 * SAMPLE_RATE for start, end in bounds)
    assert 27.0 <= bounds[0][1] / SAMPLE_RATE <= 27.3


def test_short_audio_is_one_chunk() -> None:
    assert chunk_bounds(np.zeros(5 * SAMPLE_RATE, dtype=np.float32), 30.0) == [(0, 5 * SAMPLE_RATE)]


async def test_audio_without_a_speech_model_is_refused_as_unavailable(agent: TextExtractionAgent) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(docs.tone_wav(1.0))

    assert (caught.value.status_code, caught.value.code) == (503, "SPEECH_UNAVAILABLE")


async def test_audio_over_the_limit_is_refused_by_the_agent(speech_pool: ModelPool) -> None:
    agent = TextExtractionAgent(
        ExtractionSettings(max_audio_seconds=5), max_bytes=10**7, transcriber=speech_pool
    )

    with pytest.raises(AppError) as caught:
        await agent.extract(docs.tone_wav(8.0))

    assert (caught.value.status_code, caught.value.code, caught.value.details) == (
        422,
        "AUDIO_TOO_LONG",
        {"max_seconds": 5.0},
    )


@pytest.mark.models
@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a", "flac", "ogg"])
async def test_speech_is_transcribed_with_segment_times(speech_agent: TextExtractionAgent, fmt: str) -> None:
    wav = docs.speech_wav(DICTATION)
    data = wav if fmt == "wav" else docs.convert_audio(wav, fmt)

    result = await speech_agent.extract(data)

    assert wer(DICTATION, result.text) <= SPEECH_MAX_WER
    assert result.methods == [Method.speech]
    assert all(s.kind is SegmentKind.speech for s in result.segments)
    assert [result.segment_text(s) for s in result.segments] == result.text.split("\n")
    assert result.metadata.model == "whisper-tiny.en"
    assert result.metadata.duration_s is not None and result.metadata.duration_s > 5
    times = [(s.start_s, s.end_s) for s in result.segments]
    assert all(a is not None and b is not None and a <= b for a, b in times)


@pytest.mark.models
async def test_long_speech_is_transcribed_in_chunks_with_file_relative_times(
    speech_agent: TextExtractionAgent,
) -> None:
    long_text = " ".join([DICTATION] * 4)  # about 45 seconds of speech
    steps = []

    async def on_step(step):  # type: ignore[no-untyped-def]
        steps.append(step)

    result = await speech_agent.extract(docs.speech_wav(long_text), on_step=on_step)

    assert result.metadata.pages == len(steps) >= 2
    assert [s.done for s in steps] == list(range(1, len(steps) + 1))
    assert wer(long_text, result.text) <= 0.3
    starts = [s.start_s for s in result.segments]
    assert starts == sorted(starts)
    assert result.segments[-1].end_s is not None and result.segments[-1].end_s > 30
    assert {s.page for s in result.segments} == set(range(1, len(steps) + 1))
