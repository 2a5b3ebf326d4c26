"""Settings: env prefix, nesting, .env files, and production's refusal of insecure values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ai_med_extract.config import Settings

STRONG = "s" * 40
FERNET = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdC0="


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.database.url.startswith("sqlite+aiosqlite:///")
    assert settings.security.auth_enabled is True
    assert settings.security.rate_limit.per_ip_per_minute == 100
    assert settings.security.rate_limit.per_key_per_hour == 1000
    assert settings.security.rate_limit.burst == 20


def test_nested_values_come_from_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AME_DATABASE__URL", "postgresql+asyncpg://u@db/x")
    monkeypatch.setenv("AME_JOBS__CONCURRENCY", "7")
    settings = Settings(_env_file=None)
    assert settings.database.url == "postgresql+asyncpg://u@db/x"
    assert settings.jobs.concurrency == 7


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AME_UPLOAD__MAX_FILES=3\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().upload.max_files == 3


def test_bounds_are_enforced() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, jobs={"concurrency": 0})


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"security": {"auth_enabled": False, "secret_key": STRONG}, "storage": {"encryption_key": FERNET}}, "AUTH_ENABLED"),
        ({"storage": {"encryption_key": FERNET}}, "SECRET_KEY"),
        ({"security": {"secret_key": "short"}, "storage": {"encryption_key": FERNET}}, "SECRET_KEY"),
        ({"security": {"secret_key": STRONG}}, "ENCRYPTION_KEY"),
        ({"security": {"secret_key": STRONG, "cors_origins": ["*"]}, "storage": {"encryption_key": FERNET}}, "CORS"),
    ],
)
def test_production_refuses_insecure_settings(overrides: dict, complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, environment="production", **overrides)
    assert complaint in str(caught.value)


def test_production_accepts_secure_settings() -> None:
    settings = Settings(
        _env_file=None,
        environment="production",
        security={"secret_key": STRONG},
        storage={"encryption_key": FERNET},
    )
    assert settings.environment == "production"
