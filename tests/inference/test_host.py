"""llama.cpp hosted in a child process: a crash there (a real signal) fails one call with
INFERENCE_CRASHED, and the next call starts a fresh host and works."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from ai_med_extract.config import ModelSettings
from ai_med_extract.inference.backends.base import LoadContext
from ai_med_extract.inference.backends.gguf import GGUFBackend
from ai_med_extract.inference.catalogue import ModelEntry
from ai_med_extract.inference.errors import InferenceCrashed
from ai_med_extract.inference.host import STREAM_WINDOW, HostedBackend
from ai_med_extract.inference.profiles import build_profile
from ai_med_extract.inference.sources import ResolvedSource
from ai_med_extract.inference.types import ChatMessage, GenerationRequest
from tests.inference.conftest import gguf_entry

# A grammar that admits exactly 200 tokens "a": the generation cannot end early on an end-of-text token.
LONG = 200
LONG_GRAMMAR = "root ::= " + " ".join(['"a"'] * LONG)


def _request(max_tokens: int = LONG, grammar: str | None = LONG_GRAMMAR) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", "the patient is well"),), max_tokens=max_tokens,
                             temperature=0, grammar=grammar)


@pytest.fixture
def hosted(tiny_gguf: Path, tmp_path: Path) -> HostedBackend:
    entry = ModelEntry.model_validate(gguf_entry("tiny", tiny_gguf, n_ctx=512))
    ctx = LoadContext(entry=entry, source=ResolvedSource(tiny_gguf, "path"),
                      profile=build_profile(ModelSettings(n_threads=1)), cache_dir=tmp_path)
    backend = HostedBackend(GGUFBackend, ctx)
    backend.load()
    yield backend
    backend.unload()


def test_a_segfault_in_the_host_mid_stream_raises_inference_crashed_and_the_next_call_restarts_it(
    hosted: HostedBackend,
) -> None:
    first_pid = hosted.pid
    assert first_pid is not None and first_pid != os.getpid()
    stream = hosted.stream(_request(), threading.Event())
    received = [next(stream)]  # the host now runs at most STREAM_WINDOW tokens ahead and waits: mid-generation
    os.kill(first_pid, signal.SIGSEGV)

    with pytest.raises(InferenceCrashed) as caught:
        received.extend(stream)

    assert len(received) <= STREAM_WINDOW + 1 < LONG
    error = caught.value
    assert error.code == "INFERENCE_CRASHED" and error.status_code == 503
    assert error.details["signal"] == "SIGSEGV" and error.details["model"] == "tiny"
    assert hosted.pid is None

    after = hosted.generate(_request(max_tokens=8, grammar=None), threading.Event())
    assert after.completion_tokens == 8
    assert hosted.pid not in (None, first_pid) and hosted.restarts == 1


def test_a_cancel_stops_the_host_between_tokens_and_leaves_it_usable(hosted: HostedBackend) -> None:
    from ai_med_extract.inference.backends.base import GenerationCancelled

    cancel = threading.Event()
    pieces = []
    with pytest.raises(GenerationCancelled):
        for piece in hosted.stream(_request(), cancel):
            pieces.append(piece)
            cancel.set()
    assert 1 <= len(pieces) < LONG
    pid = hosted.pid
    assert hosted.count_tokens("the patient is well") > 0 and hosted.pid == pid  # same host, still in step


async def test_a_killed_host_fails_that_generation_with_inference_crashed_and_the_pool_goes_on(
    make_pool, tiny_gguf: Path
) -> None:
    pool = make_pool({"patient_summary_models": [gguf_entry("tiny", tiny_gguf, n_ctx=512)],
                      "runtime_behavior": {"text_fallback": False}})
    await pool.load("tiny")
    info = pool.describe_model("tiny")
    assert info["isolated"] is True
    pid = info["host_pid"]

    with pytest.raises(InferenceCrashed) as caught:
        async for _ in pool.stream(_request()):
            os.kill(pid, signal.SIGKILL)  # at the first token: the other 199 are still to come
    assert caught.value.code == "INFERENCE_CRASHED" and caught.value.details["signal"] == "SIGKILL"

    result = await pool.generate(_request(max_tokens=8, grammar=None))
    assert result.completion_tokens == 8 and result.model == "tiny"
    assert pool.describe_model("tiny")["host_pid"] not in (None, pid)
