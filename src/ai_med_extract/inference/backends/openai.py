"""OpenAI-compatible inference servers over HTTP (vLLM, Ollama, llama.cpp server, TGI, ...).

Large deployments run their models on GPU servers of their own; the pool treats such a server as one
more model. Token counts come from, in order: a local tokenizer named in the catalogue (``tokenizer``:
a GGUF file or a Transformers folder), the server's tokenize endpoint (llama.cpp, llama-cpp-python,
vLLM), or nowhere, in which case the pool skips the context pre-check and relies on the server.
Schema-constrained output is sent as ``response_format`` (``options.response_format``:
``json_schema``, the OpenAI form and default, or ``json_object`` with a ``schema``, the
llama-cpp-python form); GBNF grammars as ``grammar`` (llama.cpp).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ai_med_extract.inference.backends.base import Completion, GenerationCancelled, TextBackend
from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.errors import GenerationFailed, ModelLoadFailed, UnsupportedRequest
from ai_med_extract.inference.types import GenerationRequest

logger = logging.getLogger(__name__)

UNKNOWN = -1


class OpenAIBackend(TextBackend):
    kind = ModelType.openai
    requires = ("httpx",)
    supports_json_schema = True

    def load(self) -> None:
        import httpx

        base = (self.entry.base_url or "").rstrip("/")
        headers = {"Accept": "application/json"}
        if self.entry.api_key_env:
            key = os.environ.get(self.entry.api_key_env)
            if not key:
                raise ModelLoadFailed(
                    f"model {self.entry.name!r}: environment variable {self.entry.api_key_env} is not set",
                    details={"model": self.entry.name},
                )
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(base_url=base, headers=headers, timeout=self.entry.request_timeout_s)
        self.root = base[: -len("/v1")] if base.endswith("/v1") else base
        try:
            response = self.client.get("/models")
            response.raise_for_status()
            served = [m.get("id") for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError) as exc:
            self.client.close()
            raise ModelLoadFailed(
                f"model {self.entry.name!r}: the inference server does not answer ({type(exc).__name__})",
                details={"model": self.entry.name},
                code="MODEL_SERVER_UNREACHABLE",
            ) from exc
        self.remote_model = self.entry.remote_model or (served[0] if served else "default")
        self.device = "remote"
        self._count: Callable[[str], int] | None = self._local_tokenizer() or self._server_tokenizer()

    def _local_tokenizer(self) -> Callable[[str], int] | None:
        if not self.entry.tokenizer:
            return None
        path = Path(self.entry.tokenizer).expanduser()
        if path.suffix == ".gguf":
            from llama_cpp import Llama

            vocab = Llama(str(path), vocab_only=True, verbose=False)
            return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def _server_tokenizer(self) -> Callable[[str], int] | None:
        """The first tokenize endpoint the server answers (each speaks a dialect of its own)."""
        import httpx

        probes: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
            (
                f"{self.root}/extras/tokenize",
                lambda t: {"input": t, "model": self.remote_model},
            ),  # llama-cpp-python
            (f"{self.root}/tokenize", lambda t: {"content": t, "add_special": False}),  # llama.cpp server
            (
                f"{self.root}/tokenize",
                lambda t: {"model": self.remote_model, "prompt": t, "add_special_tokens": False},
            ),
        ]
        for url, body in probes:
            try:
                response = self.client.post(url, json=body("probe"))
                if response.status_code == 200 and isinstance(response.json().get("tokens"), list):

                    def count(text: str, url: str = url, body: Any = body) -> int:
                        reply = self.client.post(url, json=body(text))
                        reply.raise_for_status()
                        return len(reply.json()["tokens"])

                    return count
            except (httpx.HTTPError, ValueError):
                continue
        logger.warning("inference server has no tokenize endpoint", extra={"model": self.entry.name})
        return None

    def unload(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    def memory_bytes(self) -> int | None:
        return 0  # the weights live on the server

    def info(self) -> dict[str, object]:
        return {"device": "remote", "remote_model": self.remote_model, "tokenizer": self._count is not None}

    def count_tokens(self, text: str) -> int:
        if self._count is None:
            raise UnsupportedRequest(
                f"model {self.entry.name!r}: the server cannot count tokens; set tokenizer in the model catalogue",
                details={"model": self.entry.name},
            )
        return self._count(text)

    def prompt_tokens(self, req: GenerationRequest) -> int:
        if self._count is None:
            return UNKNOWN
        if req.messages:  # the server applies its own chat template: count the contents
            return sum(self._count(m.content) for m in req.messages)
        return self._count(req.prompt or "")

    def context_window(self) -> int:
        return self.entry.n_ctx or self.ctx.profile.n_ctx

    def _body(self, req: GenerationRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.remote_model,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "stream": stream,
        }
        if req.stop:
            body["stop"] = list(req.stop)
        if req.seed is not None:
            body["seed"] = req.seed
        if req.json_schema is not None:
            if self.entry.options.get("response_format", "json_schema") == "json_object":
                body["response_format"] = {"type": "json_object", "schema": req.json_schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": req.json_schema, "strict": True},
                }
        if req.grammar is not None:
            body["grammar"] = req.grammar
        if req.messages:
            body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
            return "/chat/completions", body
        body["prompt"] = req.prompt or ""
        return "/completions", body

    @staticmethod
    def _text(choice: dict[str, Any]) -> str:
        if "message" in choice:
            return choice["message"].get("content") or ""
        if "delta" in choice:
            return choice["delta"].get("content") or ""
        return choice.get("text") or ""

    def _failed(self, status: int) -> GenerationFailed:
        return GenerationFailed(
            f"model {self.entry.name!r}: the inference server answered HTTP {status}",
            details={"model": self.entry.name, "status": status},
            code="MODEL_SERVER_ERROR",
        )

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> Completion:
        import httpx

        path, body = self._body(req, stream=False)
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise self._failed(0) from exc
        if response.status_code != 200:
            raise self._failed(response.status_code)
        data = response.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        text = self._text(choice)
        return Completion(
            text,
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            choice.get("finish_reason") or "stop",
        )

    def stream(self, req: GenerationRequest, cancel: threading.Event) -> Iterator[str]:
        import httpx

        path, body = self._body(req, stream=True)
        pieces: list[str] = []
        chunks = 0
        finish = "stop"
        usage: dict[str, Any] = {}
        try:
            with self.client.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    raise self._failed(response.status_code)
                for line in response.iter_lines():
                    if cancel.is_set():
                        raise GenerationCancelled
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    data = json.loads(payload)
                    usage = data.get("usage") or usage
                    if not data.get("choices"):
                        continue
                    choice = data["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    piece = self._text(choice)
                    if piece:
                        chunks += 1
                        pieces.append(piece)
                        yield piece
        except httpx.HTTPError as exc:
            raise self._failed(0) from exc
        self.last = Completion(
            "".join(pieces),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", chunks)),
            finish,
        )
