from odoo import api, fields, models

from ..providers import brazil
from .fiscal_nfse_reform_mixin import REFORM_HELP


class FiscalProviderAccount(models.Model):
    _inherit = "fiscal.provider.account"

    tax_regime = fields.Selection(
        list(brazil.REGIMES.items()),
        "Tax regime",
        help="NFS-e: the issuing company's regime. Lucro Presumido and Lucro Real notes need the tax-reform "
        "fields (national service code, NBS, IBS/CBS classification) from January 2026.",
        tracking=True,
    )
    nfse_multiple_codes = fields.Selection(
        [("refuse", "Refuse, listing the groups to invoice apart"), ("split", "Split: one NFS-e per service code")],
        "Sales of several service codes",
        default="refuse",
        required=True,
        help="One NFS-e declares one service. A sale whose services have several national service codes is "
        "refused, naming the products of each code (invoice them apart), or split into one NFS-e per code, "
        "each with its own number and PDF.",
    )
    service_national_code = fields.Char("National service code", help=REFORM_HELP["fiscal_national_code"])
    service_nbs_code = fields.Char("NBS code", help=REFORM_HELP["fiscal_nbs_code"])
    service_reform_class = fields.Char("IBS/CBS classification", help=REFORM_HELP["fiscal_reform_class"])
    service_operation_indicator = fields.Char(
        "IBS/CBS operation indicator", help=REFORM_HELP["fiscal_operation_indicator"]
    )

    def _nfse_requires_reform(self):
        self.ensure_one()
        return self.provider in ("enotas", "invoicy") and self.tax_regime in brazil.REFORM_REGIMES

    cancellation_rules = fields.Html(
        "What cancelling allows",
        compute="_compute_cancellation_rules",
        help="NFS-e: what this provider (and the municipalities behind it) allow when a note is cancelled.",
    )

    @api.depends("provider")
    def _compute_cancellation_rules(self):
        for account in self:
            cls = account._get_provider_class() if account.provider else None
            rules = cls.cancellation_rules if cls else ()
            account.cancellation_rules = (
                "<ul>" + "".join(f"<li>{rule}</li>" for rule in rules) + "</ul>" if rules else False
            )
