from odoo import fields, models


class ResPartner(models.Model):
    _inherit = "res.partner"

    # Brazilian NFS-e addresses need these as separate fields (l10n_br has its own; this
    # module does not depend on it).
    fiscal_street_number = fields.Char("Street number")
    fiscal_district = fields.Char("District (bairro)")
    fiscal_city_code = fields.Char("City code (IBGE)")
    fiscal_municipal_registration = fields.Char("Municipal registration")
