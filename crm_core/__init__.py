"""The CRM core: customer store, caller-ID resolution and the 360° view."""

from crm_core.errors import CrmError, CrmUnavailable, InvalidCustomer
from crm_core.phone import Normalised, normalise, to_e164
from crm_core.store import CrmStore, PhoneInput, UpsertResult
from crm_core.types import Candidate, CustomerDirectory, CustomerView, InteractionRecord, Resolution

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
