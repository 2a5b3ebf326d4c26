"""Model-pool errors: the product's error classes with stable codes for model trouble.

Messages name models, backends, sizes and counts; never prompt or document text.
"""

from __future__ import annotations

from typing import Any

from ai_med_extract.errors import AppError, BadRequest, NotFound, ServiceUnavailable, Timeout, Unprocessable


class ModelNotFound(NotFound):
    code = "MODEL_NOT_FOUND"


class ModelsConfigInvalid(AppError):
    code = "MODELS_CONFIG_INVALID"


class ModelLoadFailed(ServiceUnavailable):
    """A model could not be loaded; the fallback chain moves on to the next model."""

    code = "MODEL_LOAD_FAILED"


class BackendUnavailable(ModelLoadFailed):
    code = "BACKEND_UNAVAILABLE"


class DownloadDisabled(ModelLoadFailed):
    code = "DOWNLOAD_DISABLED"


class DownloadFailed(ModelLoadFailed):
    code = "DOWNLOAD_FAILED"


class ModelTooLarge(ModelLoadFailed):
    code = "MODEL_TOO_LARGE"


class ModelBusy(ServiceUnavailable):
    code = "MODEL_BUSY"


class GenerationTimeout(Timeout):
    code = "GENERATION_TIMEOUT"


class GenerationFailed(AppError):
    code = "GENERATION_FAILED"


class InferenceCrashed(ServiceUnavailable):
    """The process hosting a model died during a call (a native crash, a kill); the next call restarts it."""

    code = "INFERENCE_CRASHED"


class ContextOverflow(Unprocessable):
    code = "CONTEXT_OVERFLOW"

    def __init__(self, *, model: str, prompt_tokens: int, max_tokens: int, context_window: int):
        super().__init__(
            f"prompt of {prompt_tokens} tokens plus {max_tokens} tokens to generate exceeds the "
            f"context window of {context_window} tokens of model {model}; shorten the input or lower max_tokens",
            details={
                "model": model,
                "prompt_tokens": prompt_tokens,
                "max_tokens": max_tokens,
                "context_window": context_window,
            },
        )


class UnsupportedRequest(BadRequest):
    code = "UNSUPPORTED_BY_MODEL"


def describe(exc: BaseException) -> dict[str, Any]:
    """PHI-free summary of an exception for logs: its code or its type, never its text."""
    if isinstance(exc, AppError):
        return {"code": exc.code, "error": exc.message}
    return {"code": "INTERNAL_ERROR", "error_type": type(exc).__name__}
