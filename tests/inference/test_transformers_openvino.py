"""Transformers and OpenVINO through their real loaders on a tiny random Llama saved from a config."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_med_extract.inference.errors import UnsupportedRequest
from ai_med_extract.inference.types import ChatMessage, GenerationRequest


def ask(model: str) -> GenerationRequest:
    return GenerationRequest(
        messages=(ChatMessage("user", "the patient is well"),), max_tokens=12, temperature=0, model=model
    )


def hf_entry(name: str, kind: str, path: Path) -> dict:
    return {"name": name, "type": kind, "path": str(path)}


async def test_transformers_model_generates_streams_and_counts_with_its_tokenizer(
    make_pool, tiny_transformers: Path
):
    from transformers import AutoTokenizer

    pool = make_pool({"patient_summary_models": [hf_entry("hf", "transformers", tiny_transformers)]})

    result = await pool.generate(ask("hf"))
    streamed = [piece async for piece in pool.stream(ask("hf"))]

    tokenizer = AutoTokenizer.from_pretrained(tiny_transformers)
    assert (
        result.backend == "transformers"
        and result.completion_tokens == 12
        and result.finish_reason == "length"
    )
    assert "".join(streamed) == result.text
    assert await pool.count_tokens("chest pain with raised troponin", "hf") == len(
        tokenizer("chest pain with raised troponin", add_special_tokens=False)["input_ids"]
    )
    assert pool.context_window("hf") == 512
    assert pool.describe_model("hf")["memory_mb"] > 0


async def test_openvino_export_gives_the_same_greedy_tokens_as_transformers(
    make_pool, tiny_transformers: Path, tmp_path: Path
):
    pool = make_pool(
        {
            "patient_summary_models": [
                hf_entry("hf", "transformers", tiny_transformers),
                hf_entry("ov", "openvino", tiny_transformers),
            ]
        }
    )
    torch_result = await pool.generate(ask("hf"))
    ov_result = await pool.generate(ask("ov"))

    assert ov_result.backend == "openvino" and ov_result.fallbacks == ()
    assert (
        ov_result.text == torch_result.text
        and ov_result.completion_tokens == torch_result.completion_tokens == 12
    )
    exported = list((tmp_path / "models" / "openvino").glob("ov-*/openvino_model.xml"))
    assert len(exported) == 1  # exported once into the model cache, reused on the next load


async def test_schema_constrained_output_is_refused_clearly_by_transformers(
    make_pool, tiny_transformers: Path
):
    pool = make_pool({"patient_summary_models": [hf_entry("hf", "transformers", tiny_transformers)]})

    with pytest.raises(UnsupportedRequest) as caught:
        await pool.generate(
            GenerationRequest(prompt="x", model="hf", max_tokens=8, json_schema={"type": "object"})
        )

    assert caught.value.status_code == 400 and "gguf" in caught.value.message
