from odoo import fields, models


class ResCompany(models.Model):
    _inherit = "res.company"

    fiscal_default_account_id = fields.Many2one(
        "fiscal.provider.account",
        "Default fiscal account",
        domain="[('company_id', '=', id)]",
        help="Account used for this company's orders and invoices unless one is chosen on the document.",
    )
