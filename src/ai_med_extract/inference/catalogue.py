"""The model catalogue: ``models_config.json``, validated at start-up.

Shape (the architecture document's, extended with optional fields)::

    {
      "default_model": "smollm2-135m-instruct",
      "patient_summary_models": [
        {"name": ..., "type": "gguf", "is_active": true, "description": ..., "use_case": ...,
         "repo_id": ..., "filename": ..., "package": ..., "path": ..., "fallback": ...}
      ],
      "speech_models": [{"name": "whisper-tiny.en", "type": "faster-whisper", ...}],
      "runtime_behavior": {"allow_runtime_downloads": false, "cache_runtime_downloads": true,
                           "fallback_to_cached": true, "fallback_model": null, "text_fallback": true}
    }

A model's weights come from the first source given: ``path`` (a file or folder, relative paths are
relative to the config file), ``package`` (an installed Python package that ships the weights,
``filename`` naming the file inside it), or ``repo_id`` (+ ``filename``) on the Hugging Face hub.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ai_med_extract.inference.errors import ModelNotFound, ModelsConfigInvalid

FALLBACK_MODEL = "text-fallback"


class ModelType(StrEnum):
    gguf = "gguf"
    transformers = "transformers"
    openvino = "openvino"
    openai = "openai"
    fallback = "fallback"
    faster_whisper = "faster-whisper"
    openai_whisper = "openai-whisper"

    @property
    def is_speech(self) -> bool:
        return self in (ModelType.faster_whisper, ModelType.openai_whisper)


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    type: ModelType
    is_active: bool = True
    cached: bool | None = Field(None, description="Informational (architecture document); not used")
    description: str = ""
    use_case: str = ""
    repo_id: str | None = Field(None, description="Hugging Face hub repository")
    filename: str | None = Field(None, description="File inside the repository or package")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit)")
    hub_endpoint: str | None = Field(
        None,
        description="Hugging Face hub or on-premises mirror URL (default: HF_ENDPOINT or huggingface.co)",
    )
    package: str | None = Field(None, description="Installed Python package that ships the weights")
    path: str | None = Field(None, description="Local file or folder")
    fallback: str | None = Field(None, description="Model tried when this one cannot be used")
    n_ctx: int | None = Field(None, ge=16, description="Context window (default: the profile's)")
    n_gpu_layers: int | None = Field(None, ge=-1, description="GGUF layers offloaded (default: profile)")
    chat_template: str | None = Field(None, description="Jinja chat template when the model has none")
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://host:8080/v1")
    remote_model: str | None = Field(None, description="openai: model name the server knows")
    api_key_env: str | None = Field(None, description="openai: environment variable holding the key")
    request_timeout_s: float = Field(60.0, gt=0, description="openai: HTTP timeout per request")
    tokenizer: str | None = Field(
        None, description="openai: local tokenizer (GGUF file or Transformers folder) for token counts"
    )
    device: str | None = Field(None, description="Force a device: cpu, cuda, mps, GPU (OpenVINO)")
    compute_type: str | None = Field(None, description="faster-whisper: int8, float16 ...")
    language: str | None = Field(None, description="Speech: language code (None: detect)")
    checkpoint: str | None = Field(
        None,
        description="openai-whisper: official checkpoint name (tiny.en, base ...), fetched by openai-whisper "
        "into the model cache when runtime downloads are allowed",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Extra backend keyword arguments")

    @model_validator(mode="after")
    def _has_a_source(self) -> Self:
        needs_weights = self.type not in (ModelType.fallback, ModelType.openai) and not (
            self.type is ModelType.openai_whisper and self.checkpoint
        )
        if needs_weights and not (self.path or self.package or self.repo_id):
            raise ValueError(f"model {self.name!r} ({self.type.value}) needs one of path, package or repo_id")
        if self.package and not self.filename and self.type is ModelType.gguf:
            raise ValueError(f"model {self.name!r}: package sources need filename")
        if self.type is ModelType.openai and not self.base_url:
            raise ValueError(f"model {self.name!r}: openai models need base_url")
        return self


class RuntimeBehavior(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_runtime_downloads: bool = Field(False, description="Download missing weights from the hub")
    cache_runtime_downloads: bool = Field(
        True, description="Keep downloads in the model cache (false: temporary folder, removed on close)"
    )
    fallback_to_cached: bool = Field(True, description="When a download fails, use a cached copy")
    fallback_model: str | None = Field(None, description="Tried when the requested model fails")
    text_fallback: bool = Field(True, description="Last resort: the text-based fallback backend")


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_model: str | None = None
    default_speech_model: str | None = None
    patient_summary_models: list[ModelEntry] = Field(default_factory=list)
    speech_models: list[ModelEntry] = Field(default_factory=list)
    runtime_behavior: RuntimeBehavior = Field(default_factory=RuntimeBehavior)
    base_dir: Path = Field(Path("."), exclude=True, description="Folder relative paths start from")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [e.name for e in self.entries()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate model names: {duplicates}")
        known = set(names) | {FALLBACK_MODEL}
        for entry in self.patient_summary_models:
            if entry.type.is_speech:
                raise ValueError(f"{entry.name!r} is a speech model: list it under speech_models")
        for entry in self.speech_models:
            if not entry.type.is_speech:
                raise ValueError(f"{entry.name!r} is not a speech model")
        for entry in self.entries():
            if entry.fallback and entry.fallback not in known:
                raise ValueError(f"{entry.name!r} falls back to unknown model {entry.fallback!r}")
        for key in ("default_model", "default_speech_model"):
            value = getattr(self, key)
            if value and value not in known:
                raise ValueError(f"{key} {value!r} is not in the catalogue")
        fallback = self.runtime_behavior.fallback_model
        if fallback and fallback not in known:
            raise ValueError(f"runtime_behavior.fallback_model {fallback!r} is not in the catalogue")
        return self

    def entries(self) -> list[ModelEntry]:
        return [*self.patient_summary_models, *self.speech_models]

    def get(self, name: str) -> ModelEntry:
        if name == FALLBACK_MODEL:
            return ModelEntry(name=FALLBACK_MODEL, type=ModelType.fallback, description="Text-based fallback")
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise ModelNotFound(f"model {name!r} is not in the model catalogue", details={"model": name})

    def default_text_model(self) -> str:
        if self.default_model:
            return self.default_model
        for entry in self.patient_summary_models:
            if entry.is_active:
                return entry.name
        return FALLBACK_MODEL

    def default_speech(self) -> str | None:
        if self.default_speech_model:
            return self.default_speech_model
        for entry in self.speech_models:
            if entry.is_active:
                return entry.name
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base_dir: Path = Path(".")) -> Catalogue:
        try:
            return cls.model_validate({**data, "base_dir": base_dir})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
            )
            raise ModelsConfigInvalid(f"model catalogue is invalid: {problems}") from None

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelsConfigInvalid(
                f"model catalogue not found at {path} (set AME_MODELS__CONFIG_PATH)"
            ) from None
        except json.JSONDecodeError as exc:
            raise ModelsConfigInvalid(
                f"model catalogue {path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(data, dict):
            raise ModelsConfigInvalid(f"model catalogue {path} must be a JSON object")
        return cls.from_dict(data, base_dir=path.resolve().parent)
