from odoo import fields, models

# SAF-T (PT) VAT exemption reasons (../shared/provider-apis.md §2.4).
EXEMPTION_CODES = [
    ("M01", "M01 - Artigo 16.º, n.º 6 do CIVA"),
    ("M02", "M02 - Artigo 6.º do Decreto-Lei n.º 198/90"),
    ("M04", "M04 - Isento artigo 13.º do CIVA"),
    ("M05", "M05 - Isento artigo 14.º do CIVA"),
    ("M06", "M06 - Isento artigo 15.º do CIVA"),
    ("M07", "M07 - Isento artigo 9.º do CIVA"),
    ("M09", "M09 - IVA - não confere direito a dedução"),
    ("M10", "M10 - IVA - regime de isenção (artigo 53.º)"),
    ("M11", "M11 - Regime particular do tabaco"),
    ("M12", "M12 - Regime da margem de lucro - Agências de viagens"),
    ("M13", "M13 - Regime da margem de lucro - Bens em segunda mão"),
    ("M14", "M14 - Regime da margem de lucro - Objetos de arte"),
    ("M15", "M15 - Regime da margem de lucro - Objetos de coleção e antiguidades"),
    ("M16", "M16 - Isento artigo 14.º do RITI"),
    ("M19", "M19 - Outras isenções temporárias"),
    ("M20", "M20 - IVA - regime forfetário"),
    ("M21", "M21 - IVA - não confere direito a dedução (artigo 72.º n.º 4)"),
    ("M25", "M25 - Mercadorias à consignação"),
    ("M30", "M30 - IVA - autoliquidação (artigo 2.º n.º 1 i))"),
    ("M31", "M31 - IVA - autoliquidação (artigo 2.º n.º 1 j))"),
    ("M32", "M32 - IVA - autoliquidação (artigo 2.º n.º 1 l))"),
    ("M33", "M33 - IVA - autoliquidação (artigo 2.º n.º 1 m))"),
    ("M40", "M40 - IVA - autoliquidação (artigo 6.º n.º 6 a) a contrario)"),
    ("M41", "M41 - IVA - autoliquidação (artigo 8.º n.º 3 do RITI)"),
    ("M42", "M42 - IVA - autoliquidação (Decreto-Lei n.º 21/2007)"),
    ("M43", "M43 - IVA - autoliquidação (Decreto-Lei n.º 362/99)"),
    ("M99", "M99 - Não sujeito ou não tributado"),
]


class AccountTax(models.Model):
    _inherit = "account.tax"

    fiscal_tax_name = fields.Char(
        "Tax name at the provider",
        help="The tax as the invoicing service names it (InvoiceXpress: e.g. IVA23). Empty: IVA<rate>.",
    )
    fiscal_exemption_code = fields.Selection(
        EXEMPTION_CODES,
        "VAT exemption reason",
        help="Required by Portuguese law on 0 % lines; sent with every document that uses this tax.",
    )
