"""Encrypted file store under the configured storage directory.

Keys are relative POSIX paths chosen by the application (``jobs/<job id>/<document id>``), never
user-supplied file names. Writes go to a temporary file first and are renamed into place, so a crash
never leaves a half-written file under a real key.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from ai_med_extract.storage.cipher import Cipher

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*$")


class FileStore:
    def __init__(self, root: Path, cipher: Cipher):
        self.root = root
        self.cipher = cipher
        (root / "objects").mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError("invalid storage key")
        return self.root / "objects" / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.cipher.encrypt(data))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self.cipher.decrypt(self._path(key).read_bytes())

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        """Remove a key or a whole folder of keys (a job's documents)."""
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def check(self) -> None:
        """Readiness: the store can write, read back and delete."""
        probe = "health/probe"
        self.put(probe, b"ok")
        if self.get(probe) != b"ok":
            raise RuntimeError("storage round trip failed")
        self.delete_prefix(probe)
