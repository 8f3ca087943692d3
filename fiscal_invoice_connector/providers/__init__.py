"""Provider clients: plain Python, no Odoo import.

Each service is one module exposing a subclass of :class:`base.FiscalProvider`. The Odoo
layer finds the class of an account's service through
``fiscal.provider.account._get_provider_class()`` (models/fiscal_provider_account_builtin.py
plugs in the four below; another addon plugs in its own the same way) and otherwise only
knows the classes of :mod:`.base`.
"""

from . import base, enotas, invoicexpress, invoicy, log_redaction, numbers, vendus
from .base import (
    AuthenticationError,
    FiscalDocumentData,
    FiscalLine,
    FiscalParty,
    FiscalPayment,
    FiscalProduct,
    FiscalService,
    ProviderConfig,
    ProviderError,
    RateLimitedError,
    RemoteDocument,
    TransientError,
    ValidationError,
)

log_redaction.install()

__all__ = [
    "AuthenticationError",
    "FiscalDocumentData",
    "FiscalLine",
    "FiscalParty",
    "FiscalPayment",
    "FiscalProduct",
    "FiscalService",
    "ProviderConfig",
    "ProviderError",
    "RateLimitedError",
    "RemoteDocument",
    "TransientError",
    "ValidationError",
    "base",
    "numbers",
]
