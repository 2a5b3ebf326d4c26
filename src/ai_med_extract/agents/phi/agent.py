"""The PHI agent as the app and the pipeline use it: a lazily built scrubber.

The spaCy model and the dictionaries load on first use (a few seconds), in the worker thread that
first needs them, never at import time or on the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import TYPE_CHECKING

from ai_med_extract.agents.phi.operators import reidentify
from ai_med_extract.agents.phi.recognizers import RecognizerConfig
from ai_med_extract.agents.phi.scrubber import PhiScrubber, ScrubOptions
from ai_med_extract.agents.phi.types import Operator, ScrubResult

if TYPE_CHECKING:
    from ai_med_extract.config import PhiSettings


class PhiAgent:
    def __init__(
        self,
        secret: bytes,
        *,
        key_id: str | None = None,
        ner: bool = True,
        options: ScrubOptions | None = None,
        recognizers: RecognizerConfig | None = None,
    ) -> None:
        self._secret = secret
        self.key_id = key_id  # the PHI key's id (security/keyring.py), stored beside patient references
        self._ner = ner
        self._options = options
        self._recognizers = recognizers
        self._scrubber: PhiScrubber | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, secret: bytes, settings: PhiSettings, *, key_id: str | None = None) -> PhiAgent:
        rec = settings.recognizers
        config = RecognizerConfig(
            disabled=frozenset(rec.disabled), weights=dict(rec.weights), extra=tuple(rec.extra), min_score=rec.min_score
        )
        return cls(secret, key_id=key_id, ner=settings.ner, recognizers=config)

    @property
    def scrubber(self) -> PhiScrubber:
        with self._lock:
            if self._scrubber is None:
                self._scrubber = PhiScrubber.default(
                    ner=self._ner, options=self._options, secret=self._secret, recognizers=self._recognizers
                )
            return self._scrubber

    def scrub(
        self, text: str, *, operator: Operator | str = Operator.redact, patient_key: str | None = None
    ) -> ScrubResult:
        return self.scrubber.scrub(text, operator=operator, patient_key=patient_key)

    @staticmethod
    def reidentify(text: str, mapping: dict[str, str]) -> tuple[str, int]:
        """Reversible mode: the tokens of a stored mapping put back in ``text``, and how many (no
        scrubber needed: the mapping holds the originals)."""
        return reidentify(text, mapping)

    def patient_ref(self, patient_key: str | None) -> str | None:
        """An HMAC of the patient key: lets mappings be found per patient without storing the key."""
        if patient_key is None:
            return None
        return hmac.new(self._secret, patient_key.encode(), hashlib.sha256).hexdigest()
