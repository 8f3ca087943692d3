from odoo import fields, models

WITHHOLDING_KINDS = [
    ("iss", "ISS withheld"),
    ("pis", "PIS withheld"),
    ("cofins", "COFINS withheld"),
    ("csll", "CSLL withheld"),
    ("ir", "IR withheld (IRRF)"),
    ("inss", "INSS withheld"),
]


class AccountTax(models.Model):
    _inherit = "account.tax"

    fiscal_nfse_withholding = fields.Selection(
        WITHHOLDING_KINDS,
        "NFS-e withholding",
        help="Brazil (NFS-e): this negative tax is the customer's withholding of this kind. The note declares "
        "the amounts Odoo computes for it, and its net value is Odoo's total.",
    )
