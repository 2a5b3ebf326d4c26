"""The openai backend against a real OpenAI-compatible server (llama-cpp-python's) started here."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llama_cpp import Llama

from ai_med_extract.inference.types import ChatMessage, Fallback, GenerationRequest

pytestmark = pytest.mark.models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(smollm2_path: Path) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving the shipped SmolLM2 on a free port; yields the /v1 URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smollm2_path),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            "--verbose",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the llama-cpp-python server exited"
            assert time.monotonic() < deadline, "the llama-cpp-python server did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def remote(url: str, **extra) -> dict:
    return {
        "name": "remote",
        "type": "openai",
        "base_url": url,
        "n_ctx": 2048,
        "options": {"response_format": "json_object"},
        **extra,
    }


async def test_openai_backend_generates_streams_and_counts_through_the_server(
    make_pool, llama_server: str, smollm2_path: Path
):
    pool = make_pool({"patient_summary_models": [remote(llama_server)]})
    req = GenerationRequest(
        messages=(ChatMessage("user", "Name one symptom of pneumonia."),),
        max_tokens=16,
        temperature=0,
        model="remote",
    )

    result = await pool.generate(req)
    streamed = "".join([piece async for piece in pool.stream(req)])
    counted = await pool.count_tokens("Troponin was raised.", "remote")

    vocab = Llama(str(smollm2_path), vocab_only=True, verbose=False)
    assert result.backend == "openai" and result.model == "remote" and result.fallbacks == ()
    assert result.completion_tokens > 0 and result.text.strip()
    assert streamed == result.text  # greedy on the same server: the stream gives the same text
    assert counted == len(vocab.tokenize(b"Troponin was raised.", add_bos=False))
    assert pool.describe_model("remote")["remote_model"] == "smollm2"


async def test_openai_backend_passes_the_json_schema_to_the_server(make_pool, llama_server: str):
    pool = make_pool({"patient_summary_models": [remote(llama_server)]})
    schema = {
        "type": "object",
        "properties": {"symptom": {"type": "string", "maxLength": 30}},
        "required": ["symptom"],
    }

    result = await pool.generate(
        GenerationRequest(
            messages=(ChatMessage("user", "Give one symptom of pneumonia as JSON."),),
            max_tokens=40,
            temperature=0,
            json_schema=schema,
            model="remote",
        )
    )

    assert set(json.loads(result.text)) == {"symptom"}


async def test_an_unreachable_server_falls_back_and_says_why(make_pool, tiny_gguf: Path):
    from tests.inference.conftest import gguf_entry

    pool = make_pool(
        {
            "patient_summary_models": [
                remote(f"http://127.0.0.1:{free_port()}/v1", fallback="tiny"),
                gguf_entry("tiny", tiny_gguf),
            ]
        }
    )

    result = await pool.generate(GenerationRequest(prompt="the patient", max_tokens=4, model="remote"))

    assert result.model == "tiny"
    assert result.fallbacks == (Fallback("remote", "tiny", "MODEL_SERVER_UNREACHABLE"),)
