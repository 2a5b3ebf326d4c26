"""Resource profiles, the pool's health summary and the `models` CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ai_med_extract.cli import app
from ai_med_extract.config import ModelSettings
from ai_med_extract.inference.profiles import build_profile, detect_device
from tests.inference.conftest import gguf_entry


def test_t4_profile_has_the_architecture_limits_and_falls_back_to_cpu_without_a_gpu(caplog):
    with caplog.at_level(logging.WARNING):
        profile = build_profile(ModelSettings(profile="t4"))

    assert (profile.name, profile.max_models, profile.max_memory_mb, profile.n_ctx) == ("t4", 2, 14_000, 8192)
    if detect_device() == "cuda":
        assert (profile.n_gpu_layers, profile.torch_dtype, profile.device_map) == (35, "float16", "auto")
    else:
        assert (profile.device, profile.n_gpu_layers, profile.torch_dtype) == ("cpu", 0, "float32")
        assert "no GPU found" in caplog.text


def test_cpu_profile_and_settings_overrides():
    default = build_profile(ModelSettings())
    tuned = build_profile(ModelSettings(max_models=1, max_memory_mb=900, n_threads=3))

    assert (default.name, default.device, default.n_gpu_layers, default.torch_dtype) == (
        "cpu",
        "cpu",
        0,
        "float32",
    )
    assert (tuned.max_models, tuned.max_memory_mb, tuned.n_threads) == (1, 900, 3)


async def test_health_reports_loaded_models_and_limits_without_loading_anything(make_pool, tiny_gguf: Path):
    pool = make_pool({"patient_summary_models": [gguf_entry("tiny", tiny_gguf)]}, max_memory_mb=500)
    idle = pool.health()
    await pool.load("tiny")
    busy = pool.health()

    assert idle["ok"] and idle["loaded"] == [] and idle["backends"]["gguf"] is True
    assert [m["name"] for m in busy["loaded"]] == ["tiny"] and busy["max_memory_mb"] == 500
    await pool.close()
    assert pool.health()["status"] == "closed"


@pytest.fixture
def catalogue_env(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "models_config.json"
    config.write_text(
        json.dumps(
            {
                "patient_summary_models": [
                    gguf_entry("tiny", tiny_gguf),
                    {
                        "name": "hub-only",
                        "type": "gguf",
                        "repo_id": "example-org/absent",
                        "filename": "m.gguf",
                    },
                ]
            }
        )
    )
    monkeypatch.setenv("AME_MODELS__CONFIG_PATH", str(config))
    monkeypatch.setenv("AME_MODELS__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AME_MODELS__N_THREADS", "1")
    return config


def test_cli_lists_and_describes_models(catalogue_env: Path):
    runner = CliRunner()

    listed = runner.invoke(app, ["models", "list"])
    described = runner.invoke(app, ["models", "info", "tiny"])

    assert (
        listed.exit_code == 0
        and "tiny *" in listed.output
        and "hub:example-org/absent/m.gguf" in listed.output
    )
    assert described.exit_code == 0 and json.loads(described.output)["type"] == "gguf"


def test_cli_load_reports_memory_and_a_sample(catalogue_env: Path):
    result = CliRunner().invoke(
        app, ["models", "load", "tiny", "--prompt", "the patient", "--max-tokens", "4"]
    )

    body = json.loads(result.output)
    assert result.exit_code == 0 and body["loaded"] is True and body["sample"]["completion_tokens"] >= 1


def test_cli_load_of_an_offline_hub_model_fails_with_the_code(catalogue_env: Path):
    result = CliRunner().invoke(app, ["models", "load", "hub-only"])

    assert result.exit_code == 1 and "DOWNLOAD_DISABLED" in result.output
