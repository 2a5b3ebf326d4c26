"""Operators: what replaces each detected span.

- redact: ``[NAME]``, ``[DATE]`` ...
- mask: ``*`` for every non-space character
- surrogate: realistic fake values from Faker, seeded by (patient or document key, label, value) so
  the same name becomes the same fake name everywhere in a patient's documents; dates move by one
  offset per patient (intervals between dates are kept), ages over 89 become "90+".
- reversible: opaque tokens ``[NAME-3f9a1c2e]``; ``ScrubResult.mapping`` maps token -> original and is
  stored encrypted by the caller (``db/phi.py``). The same value gets the same token in a document.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from ai_med_extract.agents.phi.types import Operator, PhiLabel, PhiSpan, ScrubResult
from ai_med_extract.kit.dates import shift_date_text, shift_year

__all__ = [
    "REVERSIBLE_TOKEN", "OperatorEngine", "date_offset_days", "reidentify", "reversible_token", "shift_date_text"
]



def _norm(value: str) -> str:
    return re.sub(r"\s+", " ", value.strip(" .,;:()'\"").lower())


def _seed(secret: bytes, *parts: str) -> int:
    digest = hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def _match_case(fake: str, original: str) -> str:
    letters = [c for c in original if c.isalpha()]
    if letters and all(c.isupper() for c in letters) and len(letters) > 1:
        return fake.upper()
    if letters and all(c.islower() for c in letters):
        return fake.lower()
    return fake


def date_offset_days(secret: bytes, patient_key: str) -> int:
    """Per-patient shift into the past, 30..395 days, stable for the patient."""
    return -(30 + _seed(secret, "date-shift", patient_key) % 366)


# A reversible token: the label and 8 random hex digits, ``[NAME-3f9a1c2e]``.
REVERSIBLE_TOKEN = re.compile(r"\[[A-Z_]+-[0-9a-f]{8}\]")


def reversible_token(label: PhiLabel) -> str:
    return f"[{label}-{secrets.token_hex(4)}]"


def reidentify(text: str, mapping: dict[str, str]) -> tuple[str, int]:
    """``text`` with every reversible token of ``mapping`` put back, and how many were replaced.
    Tokens the mapping does not hold are left as they are."""
    replaced = 0

    def put_back(m: re.Match[str]) -> str:
        nonlocal replaced
        original = mapping.get(m.group(0))
        if original is None:
            return m.group(0)
        replaced += 1
        return original

    return REVERSIBLE_TOKEN.sub(put_back, text), replaced

class OperatorEngine:
    """Applies one operator to a text's spans. ``secret`` keys the surrogate seeds and the date
    shift, so surrogates cannot be recomputed without it (pass the server secret in production)."""

    def __init__(
        self, secret: bytes | None = None, locale: str = "en_US", first_names: frozenset[str] = frozenset()
    ) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._first_names = first_names
        self._locale = locale
        self._faker = None

    def _fake(self):  # type: ignore[no-untyped-def]
        if self._faker is None:
            from faker import Faker

            self._faker = Faker(self._locale)
        return self._faker

    def apply(
        self, text: str, spans: list[PhiSpan], op: Operator, *, patient_key: str | None = None
    ) -> ScrubResult:
        key = patient_key if patient_key is not None else hashlib.sha256(text.encode()).hexdigest()
        mapping: dict[str, str] = {}
        tokens: dict[tuple[str, str], str] = {}
        parts: list[str] = []
        pos = 0
        for s in spans:
            original = text[s.start : s.end]
            parts.append(text[pos : s.start])
            if op is Operator.redact:
                parts.append(f"[{s.label}]")
            elif op is Operator.mask:
                parts.append("".join(c if c.isspace() else "*" for c in original))
            elif op is Operator.reversible:
                k = (str(s.label), original)
                token = tokens.get(k)
                if token is None:
                    token = reversible_token(s.label)
                    tokens[k] = token
                    mapping[token] = original
                parts.append(token)
            else:
                parts.append(self.surrogate(s.label, original, key))
            pos = s.end
        parts.append(text[pos:])
        return ScrubResult("".join(parts), spans, op, mapping)

    def surrogate(self, label: PhiLabel, original: str, key: str) -> str:
        fake = self._fake()
        fake.seed_instance(_seed(self._secret, key, str(label), _norm(original)))
        if label in (PhiLabel.DATE,):
            shifted = shift_date_text(original, date_offset_days(self._secret, key))
            return shifted if shifted is not None else "[DATE]"
        if label is PhiLabel.YEAR:
            digits = re.sub(r"\D", "", original)
            if len(digits) == 4:
                return original.replace(digits, str(shift_year(int(digits), date_offset_days(self._secret, key))))
            return "[YEAR]"
        if label is PhiLabel.AGE:
            return "90+"
        if label is PhiLabel.NAME:
            words = original.split()
            if len(words) >= 2:
                value = f"{fake.first_name()} {fake.last_name()}"
            elif len(original.rstrip(".")) == 1:
                value = fake.random_uppercase_letter()
            else:
                first = original.strip(".,").lower() in self._first_names
                value = fake.first_name() if first else fake.last_name()
            return _match_case(value, original)
        if label is PhiLabel.HOSPITAL:
            if len(original) <= 5 and original.isupper():
                return fake.lexify("??H").upper()
            return _match_case(f"{fake.last_name()} Memorial" if " " in original else fake.last_name(), original)
        if label is PhiLabel.LOCATION:
            return _match_case(fake.city(), original)
        if label is PhiLabel.ADDRESS:
            return fake.street_address()
        if label is PhiLabel.ZIP:
            return fake.postcode()
        if label in (PhiLabel.PHONE, PhiLabel.FAX):
            return re.sub(r"\d", lambda _m: str(fake.random_digit()), original)
        if label is PhiLabel.EMAIL:
            return fake.email()
        if label is PhiLabel.URL:
            return fake.url()
        if label is PhiLabel.IP_ADDRESS:
            return fake.ipv4_private()
        if label is PhiLabel.SSN:
            return fake.ssn()
        # numbers: same shape, other digits and letters
        return re.sub(r"[A-Za-z]", lambda _m: fake.random_uppercase_letter(), re.sub(r"\d", lambda _m: str(fake.random_digit()), original))
