"""GGUF models with llama-cpp-python: chat templates, grammar / JSON-schema output, streaming."""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from ai_med_extract.inference.backends.base import Completion, GenerationCancelled, LoadContext, TextBackend
from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.errors import ModelLoadFailed, UnsupportedRequest
from ai_med_extract.inference.types import GenerationRequest

logger = logging.getLogger(__name__)


class GGUFBackend(TextBackend):
    """One llama.cpp model and context. A llama.cpp context is not safe for concurrent use, so every
    call into it (tokenising included) holds ``_use``, and ``unload`` waits for the call in progress:
    a token count asked while a chunk is generating, or a shutdown while a call that timed out is
    still decoding, used to touch the context from two threads at once."""

    kind = ModelType.gguf
    requires = ("llama_cpp",)
    supports_json_schema = True

    def __init__(self, ctx: LoadContext):
        super().__init__(ctx)
        self._use = threading.RLock()

    def load(self) -> None:
        import llama_cpp
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        assert self.ctx.source is not None
        profile = self.ctx.profile
        gpu_layers = self.entry.n_gpu_layers if self.entry.n_gpu_layers is not None else profile.n_gpu_layers
        if gpu_layers and not llama_cpp.llama_supports_gpu_offload():
            logger.info(
                "llama.cpp built without GPU offload; running on the CPU", extra={"model": self.entry.name}
            )
            gpu_layers = 0
        options: dict[str, Any] = {
            "n_ctx": self.entry.n_ctx or profile.n_ctx,
            "n_threads": profile.n_threads,
            "n_gpu_layers": gpu_layers,
            "verbose": False,
            **self.entry.options,
        }
        try:
            self.llm = Llama(model_path=str(self.ctx.source.path), **options)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadFailed(
                f"model {self.entry.name!r}: llama.cpp could not load the GGUF file ({type(exc).__name__})",
                details={"model": self.entry.name},
            ) from exc
        self.device = "cuda" if gpu_layers else "cpu"
        template = self.entry.chat_template or self.llm.metadata.get("tokenizer.chat_template")
        self.formatter = None
        if template:
            self.formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=self._token_text(self.llm.token_eos()),
                bos_token=self._token_text(self.llm.token_bos()),
                stop_token_ids=[self.llm.token_eos()],
            )
        self._grammars: dict[str, Any] = {}
        self._aborting = False
        self._abort_callback: Any = llama_cpp.ggml_abort_callback(lambda _data: self._aborting)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def interrupt(self) -> None:
        """Generation stops at the next token through the cancel flag. llama.cpp's abort callback is
        not used: installing it from another thread while a batch is computing crashed the process
        (an abort inside sampling) in one test run, so a prompt evaluation already under way finishes
        its batches before the timeout takes effect."""
        return None

    def _clear_interrupt(self) -> None:
        import llama_cpp

        if self._aborting:
            null_callback = llama_cpp.ggml_abort_callback()
            llama_cpp.llama_set_abort_callback(self.llm._ctx.ctx, null_callback, None)  # noqa: SLF001
            self._aborting = False

    def unload(self) -> None:
        with self._use:
            llm = getattr(self, "llm", None)
            if llm is not None:
                llm.close()
                del self.llm
            self.formatter = None
        gc.collect()

    def memory_bytes(self) -> int | None:
        import llama_cpp

        try:
            return int(llama_cpp.llama_model_size(self.llm._model.model))  # noqa: SLF001
        except AttributeError:
            return None

    def info(self) -> dict[str, object]:
        return {
            "device": self.device,
            "n_ctx": self.llm.n_ctx(),
            "chat_template": self.formatter is not None,
            "architecture": self.llm.metadata.get("general.architecture"),
        }

    def count_tokens(self, text: str) -> int:
        with self._use:
            return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def context_window(self) -> int:
        return int(self.llm.n_ctx())

    def _prompt(self, req: GenerationRequest) -> tuple[list[int], list[str]]:
        stop = list(req.stop)
        if req.messages:
            if self.formatter is None:
                raise UnsupportedRequest(
                    f"model {self.entry.name!r} has no chat template: set chat_template in the model catalogue "
                    "or send a raw prompt",
                    details={"model": self.entry.name},
                )
            chat: list[Any] = [{"role": m.role, "content": m.content} for m in req.messages]
            rendered = self.formatter(messages=chat)
            text, add_bos = rendered.prompt, not rendered.added_special
            if rendered.stop:
                stop += [rendered.stop] if isinstance(rendered.stop, str) else list(rendered.stop)
        else:
            text, add_bos = req.prompt or "", True
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True), stop

    def prompt_tokens(self, req: GenerationRequest) -> int:
        with self._use:
            return len(self._prompt(req)[0])

    def _grammar(self, req: GenerationRequest) -> Any:
        from llama_cpp import LlamaGrammar

        if req.grammar is not None:
            key = "gbnf:" + req.grammar
            if key not in self._grammars:
                self._grammars[key] = LlamaGrammar.from_string(req.grammar, verbose=False)
            return self._grammars[key]
        if req.json_schema is not None:
            schema = json.dumps(req.json_schema, sort_keys=True)
            key = "schema:" + schema
            if key not in self._grammars:
                self._grammars[key] = LlamaGrammar.from_json_schema(schema, verbose=False)
            return self._grammars[key]
        return None

    def _arguments(
        self, req: GenerationRequest, cancel: threading.Event, counter: list[int]
    ) -> dict[str, Any]:
        from llama_cpp import StoppingCriteriaList

        self._clear_interrupt()  # one left over from a request that finished as it was interrupted
        tokens, stop = self._prompt(req)

        def check(_ids: Any, _logits: Any) -> bool:
            counter[0] += 1
            return cancel.is_set()

        return {
            "prompt": tokens,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "stop": stop,
            "seed": req.seed,
            "grammar": self._grammar(req),
            "stopping_criteria": StoppingCriteriaList([check]),
        }

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> Completion:
        with self._use:
            return self._generate(req, cancel)

    def _generate(self, req: GenerationRequest, cancel: threading.Event) -> Completion:
        counter = [0]
        args = self._arguments(req, cancel, counter)
        try:
            out: Any = self.llm.create_completion(**args, stream=False)
        except RuntimeError:
            if cancel.is_set():  # llama_decode aborted by interrupt()
                raise GenerationCancelled from None
            raise
        finally:
            self._clear_interrupt()
        if cancel.is_set():
            raise GenerationCancelled
        choice = out["choices"][0]
        usage = out["usage"]
        return Completion(
            choice["text"],
            usage["prompt_tokens"],
            usage["completion_tokens"],
            choice["finish_reason"] or "stop",
        )

    def stream(self, req: GenerationRequest, cancel: threading.Event) -> Iterator[str]:
        with self._use:
            yield from self._stream(req, cancel)

    def _stream(self, req: GenerationRequest, cancel: threading.Event) -> Iterator[str]:
        counter = [0]
        args = self._arguments(req, cancel, counter)
        finish: str = "stop"
        pieces: list[str] = []
        chunks: Any = self.llm.create_completion(**args, stream=True)
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice["text"]:
                    pieces.append(choice["text"])
                    yield choice["text"]
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        except RuntimeError:
            if cancel.is_set():  # llama_decode aborted by interrupt()
                raise GenerationCancelled from None
            raise
        finally:
            self._clear_interrupt()
        if cancel.is_set():
            raise GenerationCancelled
        # the stopping check runs once per sampled token and once more after the last one
        self.last = Completion("".join(pieces), len(args["prompt"]), max(0, counter[0] - 1), finish)
