import logging

from odoo import api, models

_logger = logging.getLogger(__name__)


class ResCompany(models.Model):
    _inherit = "res.company"

    @api.model
    def _fiscal_demo_load_chart(self, company_id, template_code, taxes):
        """Demo data only: give a demo company its country's chart of accounts (when the
        localization is installed; `scripts/demo.sh` installs l10n_pt first) and tag the chart's
        sale taxes with the names the provider knows.

        ``taxes`` maps an xml id of this module to ``(chart tax id, fallback rate, tax values)``:
        the chart's tax gets the xml id, so the demo records can refer to it.
        """
        company = self.browse(company_id)
        Chart = self.env["account.chart.template"]
        has_template = template_code in Chart._get_chart_template_mapping()
        currency = company.currency_id
        if company.chart_template != template_code:
            if not has_template:
                _logger.warning(
                    "demo: no %s chart of accounts (install its localization first): %s gets the generic one",
                    template_code,
                    company.name,
                )
            Chart.try_loading(template_code if has_template else "generic_coa", company, install_demo=False)
            if company.currency_id != currency:  # a generic chart brings its own currency: keep the company's
                company.currency_id = currency
        Tax = self.env["account.tax"].with_company(company)
        for xmlid, (chart_tax, rate, values) in taxes.items():
            tax = Chart.with_company(company).ref(chart_tax, raise_if_not_found=False) if has_template else Tax
            if not tax:
                tax = Tax.create(
                    {"name": f"IVA {rate:g}%", "amount": rate, "type_tax_use": "sale", "company_id": company.id}
                )
            tax.write(values)
            self.env["ir.model.data"]._update_xmlids(
                [{"xml_id": f"fiscal_invoice_connector.{xmlid}", "record": tax, "noupdate": True}]
            )
        return True
