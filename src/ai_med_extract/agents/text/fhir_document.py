"""FHIR JSON that carries documents: a ``Binary``, a ``DocumentReference`` (its ``content[].attachment``)
or a ``Bundle`` holding them. Each embedded attachment (``data``, base64) is decoded and extracted as
a document of its own type (a PDF inside takes the PDF path, a scan the OCR path), in order; their
texts follow one another as in any multi-part document. An attachment given only by ``url`` is not
fetched (warning ``ATTACHMENT_NOT_EMBEDDED:<n>``). FHIR JSON without any attachment (a Bundle of
Observations, say) is read as plain text, as it was before, with the warning ``FHIR_NO_ATTACHMENT``.

Errors (stable codes, all 422): ``ATTACHMENT_INVALID`` (not base64), ``TOO_MANY_ATTACHMENTS``, ``CONTAINER_TOO_DEEP``
(documents nested in documents beyond ``container_max_depth``, or Bundles nested too deep).
No size check of its own: base64 decodes to 3/4 of its length, so the attachments together are always
smaller than the resource, which the upload limit already bounds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from ai_med_extract.agents.text.base import (
    ExtractionOutput,
    Extractor,
    Nested,
    Runner,
    Source,
    Step,
    add_document,
    decode_base64,
)
from ai_med_extract.agents.text.plain import decode_text
from ai_med_extract.agents.text.result import DocumentKind, Method, SegmentKind
from ai_med_extract.config import ExtractionSettings
from ai_med_extract.errors import Unprocessable

MAX_ATTACHMENTS = 200


@dataclass(frozen=True, slots=True)
class Attachment:
    content_type: str | None
    data: bytes | None  # None: given by url only


def too_deep(limit: int) -> Unprocessable:
    return Unprocessable(
        "documents are nested inside documents too deeply", code="CONTAINER_TOO_DEEP",
        details={"max_depth": limit},
    )  # fmt: skip


def read_attachments(data: bytes, *, max_depth: int) -> list[Attachment] | None:
    """Blocking: the attachments in document order, or None when the JSON carries none (or is not JSON)."""
    try:
        resource = json.loads(data)
    except (ValueError, RecursionError, UnicodeError):
        return None
    found: list[Attachment] = []
    for content_type, encoded in _attachments(resource, depth=0, max_depth=max_depth):
        if len(found) >= MAX_ATTACHMENTS:
            raise Unprocessable(
                "the resource holds more attachments than allowed", code="TOO_MANY_ATTACHMENTS",
                details={"max_attachments": MAX_ATTACHMENTS},
            )  # fmt: skip
        found.append(Attachment(content_type, None if encoded is None else decode_base64(encoded)))
    return found or None


def _attachments(resource: Any, *, depth: int, max_depth: int) -> Iterator[tuple[str | None, str | None]]:
    if not isinstance(resource, dict):
        return
    kind = resource.get("resourceType")
    if kind == "Binary":
        if isinstance(resource.get("data"), str):
            yield _type(resource), resource["data"]
    elif kind == "DocumentReference":
        for content in resource.get("content") or []:
            attachment = content.get("attachment") if isinstance(content, dict) else None
            if not isinstance(attachment, dict):
                continue
            if isinstance(attachment.get("data"), str):
                yield _type(attachment), attachment["data"]
            elif attachment.get("url"):
                yield _type(attachment), None
    elif kind == "Bundle":
        if depth >= max_depth:
            raise too_deep(max_depth)
        for entry in resource.get("entry") or []:
            if isinstance(entry, dict):
                yield from _attachments(entry.get("resource"), depth=depth + 1, max_depth=max_depth)


def _type(holder: dict[str, Any]) -> str | None:
    value = holder.get("contentType")
    return value if isinstance(value, str) else None


class FhirDocumentExtractor(Extractor):
    kind = DocumentKind.fhir
    name = "fhir-attachments"
    isolated = True

    def __init__(self, settings: ExtractionSettings, nested: Nested):
        self._settings = settings
        self._nested = nested

    async def extract(self, source: Source, out: ExtractionOutput, run: Runner) -> AsyncIterator[Step]:
        attachments = await run(
            read_attachments, source.data, max_depth=self._settings.container_max_depth
        )
        if attachments is None:
            text, encoding = await run(decode_text, source.data)
            out.encoding = encoding
            out.pages = 1
            out.assembler.add(text, kind=SegmentKind.page, method=Method.text_layer, page=1)
            out.warnings.append("FHIR_NO_ATTACHMENT")
            yield Step(1, 1, "part")
            return
        for number, attachment in enumerate(attachments, start=1):
            if attachment.data is None:
                out.warnings.append(f"ATTACHMENT_NOT_EMBEDDED:{number}")
            else:
                add_document(out, await self._nested(attachment.data, source.depth + 1, run))
            yield Step(number, len(attachments), "attachment")
