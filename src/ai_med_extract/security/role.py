"""What an API key may do: the roles, from least to most trusted."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    reader = "reader"
    clinician = "clinician"
    admin = "admin"

    @property
    def rank(self) -> int:
        return {"reader": 0, "clinician": 1, "admin": 2}[self.value]
