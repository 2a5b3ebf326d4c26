"""GGUF through llama-cpp-python's real loader: a tiny random model and the shipped SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llama_cpp import Llama

from ai_med_extract.inference.errors import ContextOverflow, GenerationTimeout
from ai_med_extract.inference.types import ChatMessage, GenerationRequest
from tests.inference.conftest import SMOLLM2_ENTRY, gguf_entry
from tests.support import normalized

NOTE = (
    "54 year old man admitted with central chest pain. Troponin raised. Diagnosed with NSTEMI. "
    "Started on aspirin 75 mg daily and ticagrelor 90 mg twice daily. Discharged home after 3 days."
)


async def test_tiny_random_gguf_generates_streams_and_counts_with_its_own_tokenizer(
    make_pool, tiny_gguf: Path
):
    pool = make_pool({"patient_summary_models": [gguf_entry("tiny", tiny_gguf)]})
    req = GenerationRequest(
        messages=(ChatMessage("user", "the patient is well"),), max_tokens=12, temperature=0
    )

    result = await pool.generate(req)
    streamed = [piece async for piece in pool.stream(req)]

    assert result.model == "tiny" and result.backend == "gguf" and result.fallbacks == ()
    assert result.completion_tokens == 12 and result.finish_reason == "length"
    assert "".join(streamed) == result.text  # greedy: the stream gives the same tokens
    # the count is the model's own tokenizer's (loaded independently here), not a characters guess
    vocab = Llama(str(tiny_gguf), vocab_only=True, verbose=False)
    text = "the patient is well"
    assert await pool.count_tokens(text, "tiny") == len(vocab.tokenize(text.encode(), add_bos=False))
    assert pool.context_window("tiny") == 256


async def test_context_overflow_is_reported_with_the_real_token_counts(make_pool, tiny_gguf: Path):
    pool = make_pool({"patient_summary_models": [gguf_entry("tiny", tiny_gguf)]})
    req = GenerationRequest(prompt="the patient is well " * 80, max_tokens=16, model="tiny")

    with pytest.raises(ContextOverflow) as caught:
        await pool.generate(req)

    details = caught.value.details
    assert caught.value.code == "CONTEXT_OVERFLOW" and caught.value.status_code == 422
    assert details["context_window"] == 256 and details["max_tokens"] == 16
    assert details["prompt_tokens"] == 1 + await pool.count_tokens("the patient is well " * 80, "tiny")
    assert "patient" not in caught.value.message  # the message never echoes the input


@pytest.mark.models
async def test_shipped_smollm2_summarises_a_note(make_pool):
    pool = make_pool({"patient_summary_models": [SMOLLM2_ENTRY]})
    req = GenerationRequest(
        messages=(
            ChatMessage("system", "You summarise clinical notes in one sentence."),
            ChatMessage("user", f"Summarise this note:\n{NOTE}"),
        ),
        max_tokens=40,
        temperature=0,
    )

    result = await pool.generate(req)

    assert result.backend == "gguf" and result.model == "smollm2"
    assert result.prompt_tokens > await pool.count_tokens(NOTE, "smollm2")  # note plus template and system
    assert 0 < result.completion_tokens <= 40
    # Greedy decoding differs between CPUs: ask only that the sentence speaks of the note.
    note_terms = {w for w in normalized(NOTE).split() if len(w) > 4}
    assert note_terms & set(normalized(result.text).split()), result.text


@pytest.mark.models
async def test_shipped_smollm2_output_is_constrained_to_the_json_schema(make_pool):
    pool = make_pool({"patient_summary_models": [SMOLLM2_ENTRY]})
    schema = {
        "type": "object",
        "properties": {
            "medications": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4},
            "age": {"type": "integer"},
        },
        "required": ["medications", "age"],
    }
    req = GenerationRequest(
        messages=(ChatMessage("user", f"Extract the medications and the age as JSON.\n{NOTE}"),),
        max_tokens=80,
        temperature=0,
        json_schema=schema,
    )

    result = await pool.generate(req)
    data = json.loads(result.text)  # the grammar bounds every string and list: it always closes

    assert set(data) == {"medications", "age"}
    assert isinstance(data["age"], int) and all(isinstance(m, str) for m in data["medications"])


@pytest.mark.models
async def test_a_timeout_during_a_long_prompt_evaluation_fails_cleanly(make_pool):
    # Prompt evaluation runs in batches inside llama.cpp and never reaches the per-token cancel check:
    # the timeout is reported once it ends, and the model stays usable.
    pool = make_pool({"patient_summary_models": [{**SMOLLM2_ENTRY, "options": {"n_batch": 128}}]})
    await pool.load("smollm2")
    long_prompt = NOTE * 12  # about 620 tokens: several batches of 128

    with pytest.raises(GenerationTimeout):
        await pool.generate(GenerationRequest(prompt=long_prompt, max_tokens=8, timeout_s=0.05))

    after = await pool.generate(GenerationRequest(prompt="The heart", max_tokens=4, temperature=0))
    assert after.completion_tokens >= 1  # the context is usable again
