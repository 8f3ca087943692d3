from odoo import fields, models


class ResPartner(models.Model):
    _inherit = "res.partner"

    fiscal_iss_withholding = fields.Selection(
        [("account", "As the fiscal account says"), ("yes", "Withholds ISS"), ("no", "Does not withhold ISS")],
        "ISS withholding",
        default="account",
        help="NFS-e: whether this customer withholds the ISS at source (retenção na fonte). Only a company "
        "(CNPJ) withholds; a person (CPF) never does. The invoice must then carry an ISS withholding tax, so "
        "that Odoo's total is what the customer pays.",
    )
