"""The four services this addon ships, plugged in exactly as another addon plugs one in: the
provider selection extended with ``selection_add`` and the client classes added to
``_get_provider_classes`` (as account_peppol extends account_edi_proxy_client's
``proxy_type`` and ``_get_proxy_urls``). See docs/architecture.md, "Adding a service"."""

from odoo import api, fields, models

from ..providers.enotas import EnotasProvider
from ..providers.invoicexpress import InvoiceXpressProvider
from ..providers.invoicy import InvoicyProvider
from ..providers.vendus import VendusProvider

BUILTIN_PROVIDERS = (InvoiceXpressProvider, VendusProvider, EnotasProvider, InvoicyProvider)


class FiscalProviderAccount(models.Model):
    _inherit = "fiscal.provider.account"

    provider = fields.Selection(
        selection_add=[(cls.code, cls.label) for cls in BUILTIN_PROVIDERS],
        ondelete={cls.code: "cascade" for cls in BUILTIN_PROVIDERS},
        default=InvoiceXpressProvider.code,
    )

    @api.model
    def _get_provider_classes(self):
        return super()._get_provider_classes() | {cls.code: cls for cls in BUILTIN_PROVIDERS}
