"""The CRM core: customer store, caller-ID resolution and the 360° view.

Exports are loaded lazily, so that importing the light ``crm_core.types`` or
``crm_core.phone`` (as the AGI script and the tracker do) does not pull in SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crm_core.errors import CrmError, CrmUnavailable, InvalidCustomer
    from crm_core.phone import Normalised, normalise, to_e164
    from crm_core.store import CrmStore, PhoneInput, UpsertResult
    from crm_core.types import (
        Candidate,
        CustomerDirectory,
        CustomerView,
        InteractionRecord,
        Resolution,
    )

_EXPORTS = {
    "CrmError": "crm_core.errors",
    "CrmUnavailable": "crm_core.errors",
    "InvalidCustomer": "crm_core.errors",
    "Normalised": "crm_core.phone",
    "normalise": "crm_core.phone",
    "to_e164": "crm_core.phone",
    "CrmStore": "crm_core.store",
    "PhoneInput": "crm_core.store",
    "UpsertResult": "crm_core.store",
    "Candidate": "crm_core.types",
    "CustomerDirectory": "crm_core.types",
    "CustomerView": "crm_core.types",
    "InteractionRecord": "crm_core.types",
    "Resolution": "crm_core.types",
}
__all__ = [
    "Candidate",
    "CrmError",
    "CrmStore",
    "CrmUnavailable",
    "CustomerDirectory",
    "CustomerView",
    "InteractionRecord",
    "InvalidCustomer",
    "Normalised",
    "PhoneInput",
    "Resolution",
    "UpsertResult",
    "normalise",
    "to_e164",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crm_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
