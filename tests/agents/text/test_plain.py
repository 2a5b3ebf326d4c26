from __future__ import annotations

import pytest

from ai_med_extract.agents.text import Method, TextExtractionAgent
from ai_med_extract.errors import AppError

LETTER = (
    "Référence : consultation de cardiologie.\n"
    "Le patient présente une douleur thoracique depuis deux jours, aggravée à l'effort.\n"
    "Traitement proposé : aspirine 75 mg par jour, bêtabloquant, contrôle du bilan lipidique.\n"
    "Prochaine visite prévue dans trois semaines à l'hôpital général.\n"
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"])
async def test_plain_text_encoding_is_detected(agent: TextExtractionAgent, encoding: str) -> None:
    result = await agent.extract(LETTER.encode(encoding))

    assert result.text == LETTER
    assert result.methods == [Method.text_layer]
    assert result.metadata.kind == "text"
    assert result.metadata.encoding is not None


async def test_windows_line_endings_become_newlines_and_offsets_stay_exact(
    agent: TextExtractionAgent,
) -> None:
    result = await agent.extract(b"BP 120/80\r\nHR 72\r\n")

    assert result.text == "BP 120/80\nHR 72\n"
    assert (result.segments[0].start, result.segments[0].end) == (0, len(result.text))


async def test_zero_byte_file_is_refused(agent: TextExtractionAgent) -> None:
    with pytest.raises(AppError) as caught:
        await agent.extract(b"")

    assert (caught.value.status_code, caught.value.code) == (422, "EMPTY_FILE")


async def test_binary_garbage_is_unsupported(agent: TextExtractionAgent) -> None:
    data = bytes(range(256)) * 40

    with pytest.raises(AppError) as caught:
        await agent.extract(data)

    assert (caught.value.status_code, caught.value.code) == (415, "UNSUPPORTED_FORMAT")
