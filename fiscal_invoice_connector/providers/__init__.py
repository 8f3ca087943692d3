"""Provider clients: plain Python, no Odoo import.

Each service is one module exposing a subclass of :class:`base.FiscalProvider`.
The Odoo layer only talks to :func:`get_provider_class` and the classes in
:mod:`.base`; it never knows which service it is talking to.
"""

from . import base, enotas, invoicexpress, invoicy, vendus
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

PROVIDERS = {
    cls.code: cls
    for cls in (
        invoicexpress.InvoiceXpressProvider,
        vendus.VendusProvider,
        enotas.EnotasProvider,
        invoicy.InvoicyProvider,
    )
}


def get_provider_class(code):
    try:
        return PROVIDERS[code]
    except KeyError:
        raise ValueError(f"Unknown fiscal provider {code!r}") from None


__all__ = [
    "AuthenticationError",
    "FiscalDocumentData",
    "FiscalLine",
    "FiscalParty",
    "FiscalPayment",
    "FiscalProduct",
    "FiscalService",
    "PROVIDERS",
    "ProviderConfig",
    "ProviderError",
    "RateLimitedError",
    "RemoteDocument",
    "TransientError",
    "ValidationError",
    "base",
    "get_provider_class",
]
