"""Resource profiles (``settings.models.profile``) and device detection."""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, replace

import psutil

from ai_med_extract.config import ModelSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    max_models: int
    max_memory_mb: int
    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    torch_dtype: str  # "float16" | "float32"
    device_map: str | None
    device: str  # "cuda" | "mps" | "cpu"


def detect_device(preferred: str = "cuda") -> str:
    """The best available torch device: cuda, then mps, then cpu (never imports torch needlessly)."""
    if preferred == "cpu" or importlib.util.find_spec("torch") is None:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def build_profile(settings: ModelSettings) -> Profile:
    """The profile named in the settings, with its overrides and the devices actually present."""
    if settings.profile == "t4":
        # The architecture document's T4 Medium profile: 16 GB GPU, 2 models, fp16.
        profile = Profile(
            name="t4",
            max_models=2,
            max_memory_mb=14_000,
            n_ctx=8192,
            n_threads=4,
            n_gpu_layers=35,
            torch_dtype="float16",
            device_map="auto",
            device=detect_device("cuda"),
        )
        if profile.device == "cpu":
            logger.warning("t4 profile chosen but no GPU found; models run on the CPU")
            profile = replace(profile, n_gpu_layers=0, torch_dtype="float32", device_map=None)
    else:
        total_mb = psutil.virtual_memory().total // (1024 * 1024)
        profile = Profile(
            name="cpu",
            max_models=2,
            max_memory_mb=max(512, int(total_mb * 0.5)),
            n_ctx=4096,
            n_threads=_cores(),
            n_gpu_layers=0,
            torch_dtype="float32",
            device_map=None,
            device="cpu",
        )
    if settings.max_models is not None:
        profile = replace(profile, max_models=settings.max_models)
    if settings.max_memory_mb is not None:
        profile = replace(profile, max_memory_mb=settings.max_memory_mb)
    if settings.n_threads is not None:
        profile = replace(profile, n_threads=settings.n_threads)
    return profile
