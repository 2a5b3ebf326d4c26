"""The text-based fallback: an extractive summary that needs no model and always works.

It answers chat requests by picking the most informative sentences of the last user message (word
frequency scoring, original order kept) and JSON-schema requests with the smallest instance that
validates. Its "tokens" are words: this backend has no other tokenizer.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ai_med_extract.inference.backends.base import Completion, TextBackend
from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.types import GenerationRequest

_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_STOPWORDS = frozenset(
    "a an and are as at be been but by for from had has have he her his in is it its of on or she that the "
    "their there they this to was were which with will would not no".split()
)
FALLBACK_CONTEXT_WINDOW = 1_000_000


def minimal_instance(schema: dict[str, Any]) -> Any:
    """The smallest value that validates against a (simple) JSON schema."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_instance(props.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        count = schema.get("minItems", 0)
        return [minimal_instance(schema.get("items", {})) for _ in range(count)]
    if kind == "string":
        return "" if not schema.get("minLength") else "-" * schema["minLength"]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def extractive_summary(text: str, max_words: int) -> str:
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()]
    if not sentences:
        return ""
    words = [w.lower().strip(".,;:()[]") for w in _WORD.findall(text)]
    freq = Counter(w for w in words if w and w not in _STOPWORDS)

    def score(sentence: str) -> float:
        tokens = [w.lower().strip(".,;:()[]") for w in _WORD.findall(sentence)]
        return sum(freq[w] for w in tokens if w in freq) / max(1, len(tokens)) ** 0.5

    ranked = sorted(range(len(sentences)), key=lambda i: -score(sentences[i]))
    chosen: list[int] = []
    used = 0
    for i in ranked:
        n = len(_WORD.findall(sentences[i]))
        if chosen and used + n > max_words:
            continue
        chosen.append(i)
        used += n
        if used >= max_words:
            break
    summary = " ".join(sentences[i] for i in sorted(chosen))
    return " ".join(_WORD.findall(summary)[:max_words])


class FallbackBackend(TextBackend):
    kind = ModelType.fallback
    supports_json_schema = True

    def load(self) -> None:
        self.device = "cpu"

    def unload(self) -> None:
        return None

    def memory_bytes(self) -> int | None:
        return 0

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text))

    def _source_text(self, req: GenerationRequest) -> str:
        if req.messages:
            users = [m.content for m in req.messages if m.role == "user"]
            return users[-1] if users else req.messages[-1].content
        return req.prompt or ""

    def prompt_tokens(self, req: GenerationRequest) -> int:
        if req.messages:
            return sum(self.count_tokens(m.content) for m in req.messages)
        return self.count_tokens(req.prompt or "")

    def context_window(self) -> int:
        return FALLBACK_CONTEXT_WINDOW

    def stream(self, req: GenerationRequest, cancel: threading.Event) -> Iterator[str]:
        if req.json_schema is not None:
            text = json.dumps(minimal_instance(req.json_schema))
        else:
            text = extractive_summary(self._source_text(req), req.max_tokens)
        pieces = re.findall(r"\s*\S+", text)
        self.last = Completion(text, self.prompt_tokens(req), len(pieces), "stop")
        yield from pieces

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> Completion:
        text = "".join(self.stream(req, cancel))
        return Completion(text, self.last.prompt_tokens, self.last.completion_tokens, "stop")
