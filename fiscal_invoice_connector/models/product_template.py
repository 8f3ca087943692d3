"""NFS-e reform fields of a service (2026 national standard), per product with its category's
and then the fiscal account's as defaults (models/fiscal_mapping_nfse.py picks them)."""

from odoo import api, fields, models

from ..providers import brazil

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


class ProductCategory(models.Model):
    _name = "product.category"
    _inherit = ["product.category", "fiscal.nfse.reform.mixin"]


class ProductTemplate(models.Model):
    _name = "product.template"
    _inherit = ["product.template", "fiscal.nfse.reform.mixin"]

    fiscal_nfse_missing = fields.Char(
        "Missing for the NFS-e",
        compute="_compute_fiscal_nfse_missing",
        help="The tax-reform fields the company's NFS-e account requires (Lucro Presumido, Lucro Real) and this "
        "product lacks, its category's and the account's defaults included.",
    )

    @api.depends(
        "fiscal_national_code",
        "fiscal_nbs_code",
        "fiscal_reform_class",
        "fiscal_operation_indicator",
        "categ_id.fiscal_national_code",
        "categ_id.fiscal_nbs_code",
        "categ_id.fiscal_reform_class",
        "categ_id.fiscal_operation_indicator",
    )
    @api.depends_context("company")
    def _compute_fiscal_nfse_missing(self):
        account = self.env["fiscal.provider.account"]._default_for_company(self.env.company)
        for template in self:
            template.fiscal_nfse_missing = False
            if account and account._nfse_requires_reform():
                service = self.env["fiscal.mapping"]._nfse_service_fields(template, account)
                missing = brazil.missing_reform_fields(service)
                template.fiscal_nfse_missing = ", ".join(missing) or False
