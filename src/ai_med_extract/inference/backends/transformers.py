"""Causal language models with Hugging Face Transformers on torch (CUDA float16, MPS or CPU)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

from ai_med_extract.inference.backends.base import Completion, GenerationCancelled, TextBackend
from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.errors import ModelLoadFailed, UnsupportedRequest
from ai_med_extract.inference.profiles import detect_device
from ai_med_extract.inference.types import GenerationRequest

logger = logging.getLogger(__name__)


class TransformersBackend(TextBackend):
    kind = ModelType.transformers
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")

    # -- loading (the OpenVINO backend overrides _load_model) ----------------------------------

    def load(self) -> None:
        from transformers import AutoTokenizer

        assert self.ctx.source is not None
        path = str(self.ctx.source.path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadFailed(
                f"model {self.entry.name!r}: no usable tokenizer in its folder ({type(exc).__name__})",
                details={"model": self.entry.name},
            ) from exc
        if self.entry.chat_template and not getattr(self.tokenizer, "chat_template", None):
            self.tokenizer.chat_template = self.entry.chat_template
        self.model = self._load_model(path)
        config = self.model.config
        self._window = int(
            self.entry.n_ctx or getattr(config, "max_position_embeddings", 0) or self.ctx.profile.n_ctx
        )

    def _load_model(self, path: str) -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        device = self.entry.device or detect_device("cpu" if self.ctx.profile.device == "cpu" else "cuda")
        dtype = (
            torch.float16 if device == "cuda" and self.ctx.profile.torch_dtype == "float16" else torch.float32
        )
        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, **self.entry.options}
        use_map = device == "cuda" and self.ctx.profile.device_map is not None
        if use_map:
            kwargs["device_map"] = self.ctx.profile.device_map
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadFailed(
                f"model {self.entry.name!r}: Transformers could not load it ({type(exc).__name__})",
                details={"model": self.entry.name},
            ) from exc
        if not use_map:
            model = model.to(device)  # type: ignore[arg-type]
        model.eval()
        self.device = device
        self._torch_device = model.device
        return model

    def unload(self) -> None:
        for attribute in ("model", "tokenizer"):
            if hasattr(self, attribute):
                delattr(self, attribute)
        gc.collect()

    def memory_bytes(self) -> int | None:
        parameters = getattr(self.model, "parameters", None)
        if parameters is None:
            return None
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def info(self) -> dict[str, object]:
        return {
            "device": self.device,
            "dtype": str(getattr(self.model, "dtype", "")),
            "architecture": type(self.model).__name__,
        }

    # -- tokens ------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def context_window(self) -> int:
        return self._window

    def _input_ids(self, req: GenerationRequest) -> list[int]:
        if req.messages:
            if not getattr(self.tokenizer, "chat_template", None):
                raise UnsupportedRequest(
                    f"model {self.entry.name!r} has no chat template: set chat_template in the model catalogue "
                    "or send a raw prompt",
                    details={"model": self.entry.name},
                )
            rendered = self.tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in req.messages],
                add_generation_prompt=True,
                tokenize=False,
            )
            return list(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(req.prompt or "")["input_ids"])

    def prompt_tokens(self, req: GenerationRequest) -> int:
        return len(self._input_ids(req))

    # -- generation --------------------------------------------------------------------------

    def _generate_kwargs(self, req: GenerationRequest, cancel: threading.Event) -> dict[str, Any]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if req.json_schema is not None or req.grammar is not None:
            raise UnsupportedRequest(
                f"model {self.entry.name!r} ({self.kind.value}) cannot constrain output to a schema; "
                "use a gguf or openai model",
                details={"model": self.entry.name},
            )

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device
                )

        ids = torch.tensor([self._input_ids(req)], dtype=torch.long, device=self._input_device())
        sampling = req.temperature > 0
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": req.max_tokens,
            "do_sample": sampling,
            "stopping_criteria": StoppingCriteriaList([Cancelled()]),
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        }
        if sampling:
            kwargs.update(temperature=req.temperature, top_p=req.top_p)
            if req.seed is not None:
                torch.manual_seed(req.seed)
        if req.stop:
            kwargs.update(stop_strings=list(req.stop), tokenizer=self.tokenizer)
        return kwargs

    def _input_device(self) -> Any:
        return getattr(self, "_torch_device", "cpu")

    def _finish(self, new_ids: list[int], max_tokens: int) -> str:
        eos = self.tokenizer.eos_token_id
        return "stop" if (new_ids and new_ids[-1] == eos) or len(new_ids) < max_tokens else "length"

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> Completion:
        import torch

        kwargs = self._generate_kwargs(req, cancel)
        prompt_len = kwargs["input_ids"].shape[1]
        with torch.inference_mode():
            output = self.model.generate(**kwargs)
        if cancel.is_set():
            raise GenerationCancelled
        new_ids = output[0][prompt_len:].tolist()
        text = str(self.tokenizer.decode(new_ids, skip_special_tokens=True))
        return Completion(text, prompt_len, len(new_ids), self._finish(new_ids, req.max_tokens))

    def stream(self, req: GenerationRequest, cancel: threading.Event) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        kwargs = self._generate_kwargs(req, cancel)
        prompt_len = kwargs["input_ids"].shape[1]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    outcome["output"] = self.model.generate(**kwargs, streamer=streamer)
            except BaseException as exc:  # re-raised in the consuming thread
                outcome["error"] = exc
                streamer.end()

        worker = threading.Thread(target=run, name="model-generate", daemon=True)
        worker.start()
        pieces: list[str] = []
        drained = False
        try:
            for piece in streamer:
                if piece:
                    pieces.append(piece)
                    yield piece
            drained = True
        finally:
            if not drained:  # the consumer stopped early: stop generating too
                cancel.set()
            worker.join()
        if "error" in outcome:
            raise outcome["error"]
        if cancel.is_set():
            raise GenerationCancelled
        new_ids = outcome["output"][0][prompt_len:].tolist()
        self.last = Completion(
            "".join(pieces), prompt_len, len(new_ids), self._finish(new_ids, req.max_tokens)
        )
