"""JSON log lines carry an ISO 8601 UTC timestamp."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from ai_med_extract.config import LogSettings
from ai_med_extract.observability.logs import configure_logging


@pytest.mark.parametrize("json_format", [True, False])
def test_log_timestamps_are_iso_8601_in_utc(capsys: pytest.CaptureFixture[str], json_format: bool) -> None:
    configure_logging(LogSettings(level="INFO", json_format=json_format))
    before = datetime.now(UTC).replace(microsecond=0)

    logging.getLogger("ai_med_extract.test").info("something happened")

    line = capsys.readouterr().err.strip().splitlines()[-1]
    stamp = json.loads(line)["timestamp"] if json_format else line.split(" ", 1)[0]
    assert stamp.endswith("Z") and "T" in stamp
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    assert (parsed - before).total_seconds() >= 0
