from odoo import fields, models


class ProductCategory(models.Model):
    _name = "product.category"
    _inherit = ["product.category", "fiscal.nfse.reform.mixin"]

    fiscal_service_description = fields.Char("NFS-e service description")
    fiscal_service_code = fields.Char("Municipal service code", help="NFS-e: código de serviço do município.")
    fiscal_service_lc116 = fields.Char("LC 116 item", help="NFS-e: item da lista de serviço (LC 116/2003).")
    fiscal_service_cnae = fields.Char("CNAE")
    fiscal_iss_rate = fields.Float("ISS rate (%)", digits=(5, 2))
