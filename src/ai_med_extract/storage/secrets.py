"""Secrets the service needs: from settings, or (outside production) generated once on disk."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

from ai_med_extract.config import Environment, Settings


@dataclass(frozen=True)
class ServiceSecrets:
    secret_key: bytes  # the master secret: every purpose's key is derived from it (security/keyring.py)
    encryption_key: str  # Fernet key list for data at rest


def _generated(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def load_secrets(settings: Settings) -> ServiceSecrets:
    sec = settings.security.secret_key
    enc = settings.storage.encryption_key
    if settings.environment is Environment.production and (sec is None or enc is None):
        raise ValueError("production requires AME_SECURITY__SECRET_KEY and AME_STORAGE__ENCRYPTION_KEY")
    secret_key = (
        sec.get_secret_value()
        if sec is not None
        else _generated(settings.secrets_dir / "secret_key", lambda: secrets.token_urlsafe(48))
    )
    encryption_key = (
        enc.get_secret_value()
        if enc is not None
        else _generated(settings.secrets_dir / "encryption_key", lambda: Fernet.generate_key().decode())
    )
    return ServiceSecrets(secret_key=secret_key.encode(), encryption_key=encryption_key)
