from odoo import fields, models


class ProductTemplate(models.Model):
    _inherit = "product.template"

    fiscal_service_description = fields.Char(
        "NFS-e service description", help="Empty: the category's, then the fiscal account's."
    )
    fiscal_service_code = fields.Char("Municipal service code")
    fiscal_service_lc116 = fields.Char("LC 116 item")
    fiscal_service_cnae = fields.Char("CNAE")
    fiscal_iss_rate = fields.Float("ISS rate (%)", digits=(5, 2))
