"""Fixtures for the text extraction tests: real Tesseract, real ffmpeg, the real model pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ai_med_extract.agents.text import TextExtractionAgent
from ai_med_extract.config import ExtractionSettings, Settings
from ai_med_extract.inference.pool import ModelPool

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def settings() -> ExtractionSettings:
    return ExtractionSettings()


@pytest.fixture
def agent(settings: ExtractionSettings) -> TextExtractionAgent:
    return TextExtractionAgent(settings, max_bytes=20 * 1024 * 1024)


@pytest.fixture
async def speech_pool() -> AsyncIterator[ModelPool]:
    """The product's model pool with its default catalogue (Whisper tiny.en from its package)."""
    settings = Settings(models={"config_path": REPO / "models_config.json"})
    pool = ModelPool.from_settings(settings)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def speech_agent(settings: ExtractionSettings, speech_pool: ModelPool) -> TextExtractionAgent:
    return TextExtractionAgent(settings, max_bytes=20 * 1024 * 1024, transcriber=speech_pool)
