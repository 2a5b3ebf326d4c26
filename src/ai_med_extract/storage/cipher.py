"""Encryption of everything at rest that may carry patient data (files, results, event payloads).

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) gives authenticated encryption with a
timestamp; ``MultiFernet`` lets operators rotate keys: the first key encrypts, all keys decrypt.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ai_med_extract.errors import AppError


class DecryptionError(AppError):
    status_code = 500
    code = "STORAGE_DECRYPTION_FAILED"


class Cipher:
    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_secret(cls, secret: str) -> Cipher:
        """A comma-separated list of Fernet keys (newest first)."""
        return cls([part.strip().encode() for part in secret.split(",") if part.strip()])

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise DecryptionError("stored data could not be decrypted with the configured keys") from exc

    def encrypt_json(self, value: Any) -> bytes:
        return self.encrypt(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())

    def decrypt_json(self, token: bytes) -> Any:
        return json.loads(self.decrypt(token))
