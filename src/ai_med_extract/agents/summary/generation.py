"""Model-written narrative and assessment: chunk by date and size, summarise chunks in parallel,
combine within the model's context window, stream the final passes.

The model is anything with the :class:`TextModel` methods (the inference ``ModelPool`` is one). Token
budgets use the model's own tokenizer through ``count_tokens``; nothing guesses characters per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, TypeVar, runtime_checkable

from ai_med_extract.inference.types import ChatMessage, GenerationRequest, GenerationResult

from .facts import Fact, FactKind, PatientRecord
from .output import Section, Statement
from .template import visits

T = TypeVar("T")
TokenSink = Callable[[str, str], Awaitable[None]]  # (section, text piece)

SYSTEM = (
    "You are a careful clinical documentation assistant. Use only facts stated in the records you are "
    "given. Never add a diagnosis, drug, number or date that the records do not contain. Cite the record "
    "ids you rely on in square brackets, for example [F12]."
)
CHUNK_PROMPT = (
    "Summarise the patient records below in 2 to 5 sentences, oldest first. Mention only diagnoses, "
    "medicines, values and dates that appear in the records, and cite record ids.\n\n"
    "Records ({start} to {end}):\n{lines}\n\nSummary:"
)
COMBINE_PROMPT = (
    "Combine these partial summaries of one patient's record into one chronological narrative of 3 to 8 "
    "sentences, oldest first. Keep dates, values and record ids exactly as written.\n\n"
    "Partial summaries:\n{parts}\n\nNarrative:"
)
ASSESSMENT_PROMPT = (
    "Write a short clinical assessment of this patient in 2 to 4 sentences: the active problems, how they "
    "are trending, and the guideline gaps listed. Use only these facts and cite record ids.\n\n"
    "Facts:\n{lines}\n\nAssessment:"
)
RECORD_PROMPT = "Patient record, one item per line, with record ids:\n{lines}\n\n{task}"
NARRATIVE_TASK = (
    "Write a chronological narrative of this patient's care in 3 to 8 sentences, oldest first, using only "
    "the record above. Keep dates and values exactly as written and cite record ids in square brackets."
)
RECORD_ASSESSMENT_TASK = (
    "Write a short clinical assessment of this patient in 2 to 4 sentences: the active problems, how they are "
    "trending, and the guideline gaps listed. Use only the record above and cite record ids."
)
REPETITION_CHECK_EVERY = 8  # streamed pieces between checks for a degenerate loop
PROMPT_OVERHEAD_TOKENS = 64  # chat template tokens around the messages, on top of counted text


@runtime_checkable
class TextModel(Protocol):
    async def generate(self, req: GenerationRequest) -> GenerationResult: ...

    def stream(self, req: GenerationRequest) -> AsyncGenerator[str, None]: ...

    async def count_tokens(self, text: str, model: str | None = None) -> int: ...

    def context_window(self, model: str | None = None) -> int: ...


@dataclass
class Chunk:
    start: date | None
    end: date | None
    lines: list[str]
    facts: list[str]
    tokens: int

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Usage:
    model: str | None = None
    backend: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    calls: int = 0

    def add(self, result: GenerationResult) -> None:
        self.calls += 1
        self.model = result.model
        self.backend = result.backend
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        for fb in result.fallbacks:
            entry = {"requested": fb.requested, "used": fb.used, "reason": fb.reason}
            if entry not in self.fallbacks:
                self.fallbacks.append(entry)


def visit_blocks(record: PatientRecord) -> list[tuple[date | None, list[Fact]]]:
    """Facts grouped per visit in date order; each block is the encounter line then its facts."""
    blocks = []
    for day, enc, facts in visits(record):
        blocks.append((day, ([enc] if enc else []) + facts))
    allergies = [f for f in record.facts if f.kind.value == "allergy"]
    if allergies:
        blocks.insert(0, (None, allergies))
    return blocks


_NEW_KINDS = (FactKind.condition, FactKind.medication, FactKind.procedure)
_VERB = {FactKind.condition: "diagnosed", FactKind.medication: "prescribed", FactKind.procedure: "procedure"}


def _label_key(f: Fact) -> str:
    return re.sub(r"\s*\((disorder|finding|procedure|situation)\)\s*$", "", f.label.strip(), flags=re.I).lower()


def milestones(record: PatientRecord) -> list[Statement]:
    """The visits where something first appears (a diagnosis, a drug, a procedure), each with only
    what is new; visits that only repeat what earlier lines and the fact lists say are left out.
    A drug or diagnosis read from a note counts only when no structured fact names it."""
    structured = [(f.kind, _label_key(f)) for f in record.facts
                  if f.kind in _NEW_KINDS and f.status != "mentioned" and f.source.span is None]

    def named(kind: FactKind, key: str) -> bool:  # "metformin" is named by "metformin 500 mg oral tablet"
        return any(k is kind and re.search(rf"\b{re.escape(key)}\b", label) for k, label in structured)

    seen: set[tuple[FactKind, str]] = set()
    out = []
    for day, enc, facts in visits(record):
        new: list[Fact] = []
        for f in facts:
            key = (f.kind, _label_key(f))
            if f.kind not in _NEW_KINDS or key in seen:
                continue
            if (f.status == "mentioned" or f.source.span is not None) and named(*key):
                continue
            seen.add(key)
            new.append(f)
        if not new:
            continue
        items = []
        for f in new:
            verb = "mentioned" if f.status == "mentioned" else _VERB[f.kind]
            item = f"{verb} {_label_key(f) if f.kind is not FactKind.medication else f.label}"
            if f.kind is FactKind.condition and f.end_date:
                item += f" (resolved {f.end_date.isoformat()})"
            items.append(item)
        head = re.sub(r"\s*\((procedure|finding)\)\s*$", "", enc.label, flags=re.I) if enc else "Record"
        when = day.isoformat() if day else "undated"
        out.append(Statement(text=f"{when}: {head}: " + "; ".join(items) + ".",
                             citations=([enc.id] if enc else []) + [f.id for f in new]))
    return out


def compact_digest(record: PatientRecord, sections: dict[str, Section]) -> tuple[list[Statement], list[Statement]]:
    """What the model writes the narrative from: the facts the template already states (record span,
    active problems, medications, allergies, recent vitals and labs, unmet guideline checks) and the
    visits that add something new (:func:`milestones`), instead of every visit of the record."""
    core: list[Statement] = []
    for key, label in (("overview", ""), ("active_problems", "Active problem: "), ("medications", "Medication: "),
                       ("allergies", "Allergy: "), ("vitals_labs", "")):
        for st in sections[key].statements if key in sections else []:
            if key == "overview" and not st.text.startswith("The record covers"):
                continue  # name, MRN: not needed to tell the story
            core.append(Statement(text=label + st.text, citations=st.citations))
    for st in sections["assessment"].statements if "assessment" in sections else []:
        if st.text.startswith("Guideline gap"):
            core.append(st)
    return core, milestones(record)


def trim_repetition(text: str, *, min_len: int = 24) -> str:
    """Cut a degenerate loop: from the third time a run of ``min_len``+ characters repeats, drop the rest.
    Small models decoding greedily sometimes repeat one phrase until the token limit."""
    for size in (min_len * 4, min_len * 2, min_len):
        i = 0
        while i + size <= len(text):
            piece = text[i : i + size]
            second = text.find(piece, i + size)
            if second != -1 and text.find(piece, second + size) != -1:
                return text[:second].rstrip()
            i += max(1, size // 2)
    return text


async def _all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await ``calls`` concurrently; the first failure cancels the others and waits for them to stop
    (``asyncio.gather`` would leave them running on the model after the summary has given up)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(c)) for c in calls]
    except ExceptionGroup as failed:  # the first error, with its stable code, is the one to report
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]


async def _as_coroutine(call: Awaitable[T]) -> T:
    return await call


def _cited(st: Statement) -> str:
    return f"{st.text} [{', '.join(st.citations[:4])}]" if st.citations else st.text


def _fmt(d: date | None) -> str:
    return d.isoformat() if d else "undated"


class Generator:
    def __init__(self, model: TextModel, *, model_name: str | None, parallel: int, timeout_s: float | None = None):
        self.model = model
        self.model_name = model_name
        self.parallel = max(1, parallel)
        self.timeout_s = timeout_s
        self.usage = Usage()
        self.chunks = 0
        self.rounds = 0
        self.window = 0
        self.record_text: str | None = None  # the digest both final prompts start with (prompt cache)
        self.stopped_early = 0
        self.timeline_lines = (0, 0)  # timeline lines in the narrative prompt, of those offered

    def _request(self, prompt: str, max_tokens: int) -> GenerationRequest:
        return GenerationRequest(
            messages=(ChatMessage("system", SYSTEM), ChatMessage("user", prompt)),
            model=self.model_name,
            max_tokens=max_tokens,
            temperature=0.0,
            timeout_s=self.timeout_s,
            seed=0,
        )

    def out_tokens(self, wanted: int, cap: int | None) -> int:
        """Tokens to generate: as asked, but at most a quarter of the (capped) window."""
        window = self.model.context_window(self.model_name)
        if cap:
            window = min(window, cap)
        return max(16, min(wanted, window // 4))

    async def budget(self, max_tokens: int, template: str, cap: int | None) -> int:
        """Tokens left for record text in one prompt."""
        window = self.model.context_window(self.model_name)
        if cap:
            window = min(window, cap)
        self.window = window
        fixed = await self.model.count_tokens(SYSTEM + template.format(start="", end="", lines="", parts=""),
                                              self.model_name)
        return window - fixed - max_tokens - PROMPT_OVERHEAD_TOKENS

    async def plan(self, record: PatientRecord, budget: int) -> list[Chunk]:
        """Chunks of whole visits in date order, each within ``budget`` tokens (a visit too big for one
        chunk is split by lines)."""
        if budget < 32:
            raise ValueError("context window too small for any record text")
        blocks = visit_blocks(record)
        sem = asyncio.Semaphore(8)

        async def count(text: str) -> int:
            async with sem:
                return await self.model.count_tokens(text, self.model_name)

        texts = [[f.line() for f in facts] for _, facts in blocks]
        sizes = await _all(count("\n".join(lines) + "\n") for lines in texts)
        chunks: list[Chunk] = []
        current: Chunk | None = None
        for (day, facts), lines, size in zip(blocks, texts, sizes, strict=True):
            if size > budget:
                if current:
                    chunks.append(current)
                    current = None
                line_sizes = await _all(count(line + "\n") for line in lines)
                piece = Chunk(day, day, [], [], 0)
                for fact, line, n in zip(facts, lines, line_sizes, strict=True):
                    if piece.lines and piece.tokens + n > budget:
                        chunks.append(piece)
                        piece = Chunk(day, day, [], [], 0)
                    if n > budget:
                        line = line[: max(40, len(line) * budget // (n + 1))]
                        n = budget
                    piece.lines.append(line)
                    piece.facts.append(fact.id)
                    piece.tokens += n
                if piece.lines:
                    chunks.append(piece)
                continue
            if current is not None and current.tokens + size > budget:
                chunks.append(current)
                current = None
            if current is None:
                current = Chunk(day, day, [], [], 0)
            current.lines.extend(lines)
            current.facts.extend(f.id for f in facts)
            current.tokens += size
            current.start = current.start or day
            current.end = day or current.end
        if current is not None:
            chunks.append(current)
        return chunks

    async def _call(self, prompt: str, max_tokens: int, section: str, sink: TokenSink | None) -> str:
        return trim_repetition(await self._raw_call(prompt, max_tokens, section, sink))

    async def _raw_call(self, prompt: str, max_tokens: int, section: str, sink: TokenSink | None) -> str:
        """Stream one call; stop it as soon as the text starts repeating itself (nothing new is said)."""
        req = self._request(prompt, max_tokens)
        pieces: list[str] = []
        async with contextlib.aclosing(self.model.stream(req)) as stream:
            async for piece in stream:
                pieces.append(piece)
                if sink is not None:
                    await sink(section, piece)
                if len(pieces) % REPETITION_CHECK_EVERY == 0:
                    text = "".join(pieces)
                    if trim_repetition(text) != text:
                        self.stopped_early += 1
                        break
        self.usage.calls += 1
        self.usage.completion_tokens += len(pieces)  # llama.cpp streams one piece per token
        return "".join(pieces)

    async def narrative(
        self, record: PatientRecord, *, max_tokens: int, chunk_max_tokens: int, cap: int | None,
        sink: TokenSink | None, progress: Callable[[int, int], Awaitable[None]] | None = None,
        digest: Sequence[Statement] = (),
        timeline: Sequence[Statement] = (),
    ) -> str:
        """The model's narrative. With a ``digest`` (the facts the template states) that fits the
        window, one call over it plus as many ``timeline`` lines (visits that add something new) as
        fit; otherwise the record's visits in chunks, summarised in parallel, combined."""
        max_tokens = self.out_tokens(max_tokens, cap)
        chunk_max_tokens = self.out_tokens(chunk_max_tokens, cap)
        if digest:
            room = await self.budget(max_tokens, RECORD_PROMPT.replace("{task}", NARRATIVE_TASK), cap)
            text = await self._fill(digest, timeline, room)
            if text is not None:
                self.chunks = 1
                self.record_text = text  # the assessment's prompt starts with it: llama.cpp reuses the prefix
                prompt = RECORD_PROMPT.format(lines=text, task=NARRATIVE_TASK)
                return await self._call(prompt, max_tokens, "narrative", sink)
        budget = await self.budget(max(max_tokens, chunk_max_tokens), CHUNK_PROMPT, cap)
        chunks = await self.plan(record, budget)
        self.chunks = len(chunks)
        if not chunks:
            return ""
        if len(chunks) == 1:
            c = chunks[0]
            prompt = CHUNK_PROMPT.format(start=_fmt(c.start), end=_fmt(c.end), lines=c.text())
            return await self._call(prompt, max_tokens, "narrative", sink)
        sem = asyncio.Semaphore(self.parallel)
        done = 0

        async def one(c: Chunk) -> str:
            nonlocal done
            async with sem:
                prompt = CHUNK_PROMPT.format(start=_fmt(c.start), end=_fmt(c.end), lines=c.text())
                text = await self._call(prompt, chunk_max_tokens, "chunk", None)
            done += 1
            if progress is not None:
                await progress(done, len(chunks))
            return f"({_fmt(c.start)} to {_fmt(c.end)}) {text.strip()}"

        parts = list(await _all(one(c) for c in chunks))
        return await self._combine(parts, max_tokens=max_tokens, cap=cap, sink=sink)

    async def _fill(self, digest: Sequence[Statement], timeline: Sequence[Statement], room: int) -> str | None:
        """The digest lines, then the timeline lines (in order) that still fit ``room`` tokens; None
        when the digest alone does not fit."""
        core = "\n".join(_cited(st) for st in digest)
        used = await self.model.count_tokens(core + "\n", self.model_name) + 16  # 16: the timeline heading
        if used > room:
            return None
        lines = [_cited(st) for st in timeline]
        sem = asyncio.Semaphore(8)

        async def count(line: str) -> int:
            async with sem:
                return await self.model.count_tokens(line + "\n", self.model_name)

        kept = []
        for line, n in zip(lines, await _all(count(x) for x in lines), strict=True):
            if used + n <= room:
                kept.append(line)
                used += n
        self.timeline_lines = (len(kept), len(lines))
        return core + ("\nTimeline of new diagnoses, medicines and procedures:\n" + "\n".join(kept) if kept else "")

    async def _fit(self, text: str, budget: int) -> str:
        """``text`` cut (at the end) until it fits ``budget`` tokens."""
        n = await self.model.count_tokens(text, self.model_name)
        while n > budget and len(text) > 40:
            text = text[: max(40, int(len(text) * budget / (n + 1) * 0.95))]
            n = await self.model.count_tokens(text, self.model_name)
        return text

    async def _combine(self, parts: list[str], *, max_tokens: int, cap: int | None, sink: TokenSink | None) -> str:
        budget = await self.budget(max_tokens, COMBINE_PROMPT, cap)
        merge_sem = asyncio.Semaphore(self.parallel)
        while True:
            self.rounds += 1
            sizes = await _all(self.model.count_tokens(p + "\n", self.model_name) for p in parts)
            if sum(sizes) <= budget or len(parts) == 1:
                text = await self._fit("\n".join(parts), budget)
                return await self._call(COMBINE_PROMPT.format(parts=text), max_tokens, "narrative", sink)
            groups: list[list[str]] = [[]]
            used = 0
            for part, n in zip(parts, sizes, strict=True):
                if groups[-1] and used + n > budget:
                    groups.append([])
                    used = 0
                groups[-1].append(part)
                used += n
            if len(groups) == len(parts):  # each part fills a prompt: pair them up, each cut to half
                halves = await _all(self._fit(p, budget // 2 - 1) for p in parts)
                groups = [list(halves[i : i + 2]) for i in range(0, len(halves), 2)]
            parts = list(await _all(self._merge(g, max_tokens, budget, merge_sem) for g in groups))

    async def _merge(self, group: list[str], max_tokens: int, budget: int, sem: asyncio.Semaphore) -> str:
        async with sem:
            text = await self._fit("\n".join(group), budget)
            return await self._call(COMBINE_PROMPT.format(parts=text), max_tokens, "chunk", None)

    async def assessment(self, facts: Sequence[Statement], *, max_tokens: int, cap: int | None,
                         sink: TokenSink | None) -> str:
        max_tokens = self.out_tokens(max_tokens, cap)
        if self.record_text is not None:
            # the same record text as the narrative's prompt: llama.cpp reuses its evaluated prefix
            prompt = RECORD_PROMPT.format(lines=self.record_text, task=RECORD_ASSESSMENT_TASK)
            room = await self.budget(max_tokens, RECORD_PROMPT.replace("{task}", RECORD_ASSESSMENT_TASK), cap)
            if await self.model.count_tokens(self.record_text, self.model_name) <= room:
                return await self._call(prompt, max_tokens, "assessment", sink)
        lines = [_cited(s) for s in facts]
        budget = await self.budget(max_tokens, ASSESSMENT_PROMPT, cap)
        text = await self._fit("\n".join(lines), budget)
        return await self._call(ASSESSMENT_PROMPT.format(lines=text), max_tokens, "assessment", sink)

    def info(self) -> dict[str, Any]:
        return {
            "model": self.usage.model or self.model_name,
            "backend": self.usage.backend,
            "chunks": self.chunks,
            "combine_rounds": self.rounds,
            "context_window": self.window or None,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "fallbacks": self.usage.fallbacks,
            "calls": self.usage.calls,
            "stopped_early": self.stopped_early,
        }
