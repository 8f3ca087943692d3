from odoo import api, fields, models

from ..providers import brazil


class ProductTemplate(models.Model):
    _name = "product.template"
    _inherit = ["product.template", "fiscal.nfse.reform.mixin"]

    fiscal_service_description = fields.Char(
        "NFS-e service description", help="Empty: the category's, then the fiscal account's."
    )
    fiscal_service_code = fields.Char("Municipal service code")
    fiscal_service_lc116 = fields.Char("LC 116 item")
    fiscal_service_cnae = fields.Char("CNAE")
    fiscal_iss_rate = fields.Float("ISS rate (%)", digits=(5, 2))

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
