"""Who may see which resource, and which view of it.

Every job, document, medical record and PHI mapping is owned by the API key that created it and by
that key's tenant (organisation, optional). The rules, per role:

    admin      every resource of its tenant (all of them when the admin key has no tenant), identified;
               a read of another key's resource is marked ``cross_owner`` in its audit row
    clinician  its own resources, identified; other keys' resources of its tenant, de-identified view,
               read only
    reader     resources of its tenant, de-identified view, read only

A resource outside these rules does not exist for the caller (404, never 403: the id is not
confirmed). Writes (delete, correct, use as the source of new work) need ownership or admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ai_med_extract.errors import AppError
from ai_med_extract.security.keys import Principal
from ai_med_extract.security.role import Role


class View(StrEnum):
    identified = "identified"
    deidentified = "deidentified"


class Action(StrEnum):
    read = "read"
    write = "write"


@dataclass(frozen=True, slots=True)
class Owner:
    user_id: str | None
    tenant: str | None = None

    @classmethod
    def of(cls, row: Any) -> Owner:
        """The owner recorded on a row with ``created_by`` and ``tenant`` columns."""
        return cls(getattr(row, "created_by", None), getattr(row, "tenant", None))


@dataclass(frozen=True, slots=True)
class Access:
    view: View
    owner: Owner
    cross_owner: bool

    @property
    def identified(self) -> bool:
        return self.view is View.identified

    def audit_data(self) -> dict[str, Any]:
        """What the audit row adds about whose data was touched (key ids only, never content)."""
        if not self.cross_owner:
            return {}
        return {"cross_owner": True, "owner": self.owner.user_id, "view": self.view.value}


def decide(principal: Principal, owner: Owner, action: Action = Action.read) -> Access | None:
    """The caller's access to a resource, or None when the resource must look absent."""
    own = owner.user_id is not None and owner.user_id == principal.user_id
    same_tenant = principal.tenant == owner.tenant
    if principal.role is Role.admin:
        if principal.tenant is not None and not same_tenant:
            return None
        return Access(View.identified, owner, cross_owner=not own)
    if principal.role is not Role.reader and own and same_tenant:
        return Access(View.identified, owner, cross_owner=False)
    if action is Action.read and same_tenant:
        return Access(View.deidentified, owner, cross_owner=False)
    return None


def authorize(principal: Principal, owner: Owner, not_found: AppError, action: Action = Action.read) -> Access:
    """``decide``, raising ``not_found`` (the resource's own 404) when the caller may not see it."""
    found = decide(principal, owner, action)
    if found is None:
        raise not_found
    return found
