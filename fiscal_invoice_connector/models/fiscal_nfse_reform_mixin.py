"""NFS-e reform fields of a service (2026 national standard), per product with its category's
and then the fiscal account's as defaults (models/fiscal_mapping_nfse.py picks them)."""

from odoo import fields, models

REFORM_HELP = {
    "fiscal_national_code": "NFS-e national standard: código de tributação nacional (cTribNac), 6 digits, e.g. 010701.",
    "fiscal_nbs_code": "Nomenclatura Brasileira de Serviços, 9 digits, e.g. 115021000.",
    "fiscal_reform_class": "Tax reform: IBS/CBS classificação tributária (cClassTrib), 6 digits, e.g. 000001.",
    "fiscal_operation_indicator": "Tax reform: IBS/CBS indicador da operação (cIndOp), 6 digits, e.g. 100301.",
}


class FiscalNfseReformMixin(models.AbstractModel):
    _name = "fiscal.nfse.reform.mixin"
    _description = "NFS-e reform fields (2026)"

    fiscal_national_code = fields.Char("National service code", help=REFORM_HELP["fiscal_national_code"])
    fiscal_nbs_code = fields.Char("NBS code", help=REFORM_HELP["fiscal_nbs_code"])
    fiscal_reform_class = fields.Char("IBS/CBS classification", help=REFORM_HELP["fiscal_reform_class"])
    fiscal_operation_indicator = fields.Char(
        "IBS/CBS operation indicator", help=REFORM_HELP["fiscal_operation_indicator"]
    )
