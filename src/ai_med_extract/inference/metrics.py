"""Prometheus metrics of the model pool, in prometheus_client's default registry.

The collectors are created once per process and shared by every pool (tests build several pools);
labels carry model names only.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
_INFERENCE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 180, 300)


@dataclass(frozen=True, slots=True)
class PoolMetrics:
    load_time: Histogram
    inference_time: Histogram
    memory: Gauge
    tokens: Counter
    prompt_tokens: Counter
    fallbacks: Counter
    evictions: Counter


def _collector(factory, name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
    existing = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001 - reuse across pools
    if existing is not None:
        return existing
    return factory(name, *args, **kwargs)


def pool_metrics() -> PoolMetrics:
    return PoolMetrics(
        load_time=_collector(
            Histogram,
            "model_load_time_seconds",
            "Time to load a model",
            ["model_name"],
            buckets=_LOAD_BUCKETS,
        ),
        inference_time=_collector(
            Histogram,
            "model_inference_time_seconds",
            "Time of one generation or transcription",
            ["model_name"],
            buckets=_INFERENCE_BUCKETS,
        ),
        memory=_collector(
            Gauge, "model_memory_usage_bytes", "Measured memory of a loaded model", ["model_name"]
        ),
        tokens=_collector(Counter, "model_tokens_generated", "Tokens generated", ["model_name"]),
        prompt_tokens=_collector(Counter, "model_prompt_tokens", "Prompt tokens processed", ["model_name"]),
        fallbacks=_collector(
            Counter, "model_fallbacks", "Requests served by another model", ["requested", "used"]
        ),
        evictions=_collector(Counter, "model_evictions", "Models unloaded to make room", ["model_name"]),
    )
