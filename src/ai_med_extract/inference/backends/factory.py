"""Backend classes by model type; each module (and its heavy library) is imported only when chosen."""

from __future__ import annotations

import importlib

from ai_med_extract.inference.backends.base import Backend
from ai_med_extract.inference.catalogue import ModelType

_MODULES: dict[ModelType, tuple[str, str]] = {
    ModelType.gguf: ("gguf", "GGUFBackend"),
    ModelType.transformers: ("transformers", "TransformersBackend"),
    ModelType.openvino: ("openvino", "OpenVINOBackend"),
    ModelType.openai: ("openai", "OpenAIBackend"),
    ModelType.fallback: ("fallback", "FallbackBackend"),
    ModelType.faster_whisper: ("faster_whisper", "FasterWhisperBackend"),
    ModelType.openai_whisper: ("openai_whisper", "OpenAIWhisperBackend"),
}


def backend_class(kind: ModelType) -> type[Backend]:
    module_name, class_name = _MODULES[kind]
    module = importlib.import_module(f"ai_med_extract.inference.backends.{module_name}")
    cls: type[Backend] = getattr(module, class_name)
    return cls


def available_backends() -> dict[str, bool]:
    """Which backends can run here (their libraries are installed), without importing them."""
    out: dict[str, bool] = {}
    for kind in ModelType:
        try:
            out[kind.value] = backend_class(kind).is_available()
        except ImportError:
            out[kind.value] = False
    return out
