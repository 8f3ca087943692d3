from odoo import fields, models

from ..providers.numbers import vat_tax_name

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

    # Odoo's Portuguese chart (l10n_pt) sale taxes -> (InvoiceXpress tax name, SAF-T exemption code),
    # used when the tax's own fields are empty (docs/mapping-rules.md §1, §9). InvoiceXpress names its
    # taxes IVA<rate> by default, regions included [?]; the exemption codes are the usual reasons of
    # each 0 % tax [choice]: domestic exempt sale art. 9 CIVA (M07), intra-EU supply of goods art. 14
    # RITI (M16), export art. 14 CIVA (M05). Change them on the tax when another reason applies.
    _FISCAL_PT_CHART = {
        "iva_pt_sale_normal": ("IVA23", None),
        "iva_pt_sale_intermedia": ("IVA13", None),
        "iva_pt_sale_reduzida": ("IVA6", None),
        "iva_pt_sale_isenta": ("IVA0", "M07"),
        "iva_pt_sale_eu_isenta": ("IVA0", "M16"),
        "iva_pt_sale_non_eu_isenta": ("IVA0", "M05"),
        "iva_pt_ma_sale_normal": ("IVA22", None),
        "iva_pt_ma_sale_intermedia": ("IVA12", None),
        "iva_pt_ma_sale_reduzida": ("IVA5", None),
        "iva_pt_ac_sale_normal": ("IVA16", None),
        "iva_pt_ac_sale_intermedia": ("IVA9", None),
        "iva_pt_ac_sale_reduzida": ("IVA4", None),
    }

    def _fiscal_pt_chart_key(self):
        """The l10n_pt template id of this tax (e.g. iva_pt_sale_eu_isenta), or None."""
        self.ensure_one()
        xmlid = self.sudo().get_external_id().get(self.id) or ""
        key = xmlid.split(".", 1)[-1].split("_", 1)[-1] if xmlid.startswith("account.") else ""
        return key if key in self._FISCAL_PT_CHART else None

    def _fiscal_tax_name(self):
        """The tax's name at the provider: its own setting, the Portuguese chart's, else IVA<rate>."""
        self.ensure_one()
        key = self.fiscal_tax_name or self._FISCAL_PT_CHART.get(self._fiscal_pt_chart_key(), (None,))[0]
        return key or vat_tax_name(self.amount)

    def _fiscal_exemption_code(self):
        """The SAF-T exemption code of a 0 % tax: its own setting, else the Portuguese chart's."""
        self.ensure_one()
        return self.fiscal_exemption_code or self._FISCAL_PT_CHART.get(self._fiscal_pt_chart_key(), (None, None))[1]
