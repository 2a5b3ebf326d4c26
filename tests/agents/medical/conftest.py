from __future__ import annotations

import pytest

from ai_med_extract.agents.medical.extractor import MedicalExtractor


@pytest.fixture(scope="session")
def extractor() -> MedicalExtractor:
    """One extractor for the session: building the lexicons and medspaCy pipeline takes seconds."""
    agent = MedicalExtractor()
    agent.warm_up()
    return agent
