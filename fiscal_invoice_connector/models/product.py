from odoo import fields, models


class ProductCategory(models.Model):
    _inherit = "product.category"

    fiscal_service_description = fields.Char("NFS-e service description")
    fiscal_service_code = fields.Char("Municipal service code", help="NFS-e: código de serviço do município.")
    fiscal_service_lc116 = fields.Char("LC 116 item", help="NFS-e: item da lista de serviço (LC 116/2003).")
    fiscal_service_cnae = fields.Char("CNAE")
    fiscal_iss_rate = fields.Float("ISS rate (%)", digits=(5, 2))


class ProductTemplate(models.Model):
    _inherit = "product.template"

    fiscal_service_description = fields.Char(
        "NFS-e service description", help="Empty: the category's, then the fiscal account's."
    )
    fiscal_service_code = fields.Char("Municipal service code")
    fiscal_service_lc116 = fields.Char("LC 116 item")
    fiscal_service_cnae = fields.Char("CNAE")
    fiscal_iss_rate = fields.Float("ISS rate (%)", digits=(5, 2))


class ResPartner(models.Model):
    _inherit = "res.partner"

    # Brazilian NFS-e addresses need these as separate fields (l10n_br has its own; this
    # module does not depend on it).
    fiscal_street_number = fields.Char("Street number")
    fiscal_district = fields.Char("District (bairro)")
    fiscal_city_code = fields.Char("City code (IBGE)")
    fiscal_municipal_registration = fields.Char("Municipal registration")
