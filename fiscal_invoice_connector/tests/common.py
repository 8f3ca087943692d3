from odoo import Command
from odoo.tests import tagged

from odoo.addons.sale.tests.common import TestSaleCommon

from ..simulators.invoicexpress import InvoiceXpressSimulator

API_KEY = "ix-test-key-4f9c2a7d1e"


@tagged("post_install", "-at_install")
class FiscalTestCommon(TestSaleCommon):
    """A company, an InvoiceXpress account pointing at a real local simulator, a
    Portuguese customer and a product with IVA 23 %. Tests run as the accounting
    test user (not a superuser), as users do."""

    @classmethod
    def get_default_groups(cls):
        return super().get_default_groups() | cls.quick_ref("fiscal_invoice_connector.group_fiscal_manager")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sim = InvoiceXpressSimulator(api_key=API_KEY, rate_limit_per_minute=None, pdf_polls_before_ready=1)
        cls.sim.start()
        cls.addClassCleanup(cls.sim.stop)
        params = cls.env["ir.config_parameter"].sudo()
        params.set_param("fiscal_invoice_connector.pdf_poll_interval", "0.01")
        cls.company = cls.company_data["company"]
        cls.tax_23 = cls.env["account.tax"].create(
            {
                "name": "IVA 23% (test)",
                "amount": 23.0,
                "amount_type": "percent",
                "type_tax_use": "sale",
                "company_id": cls.company.id,
                "fiscal_tax_name": "IVA23",
            }
        )
        cls.tax_exempt = cls.env["account.tax"].create(
            {
                "name": "Isento (test)",
                "amount": 0.0,
                "amount_type": "percent",
                "type_tax_use": "sale",
                "company_id": cls.company.id,
                "fiscal_tax_name": "IVA0",
                "fiscal_exemption_code": "M07",
            }
        )
        cls.product = cls.env["product.product"].create(
            {
                "name": "Vinho do Porto",
                "default_code": "PORTO-1",
                "list_price": 100.0,
                "type": "consu",
                "invoice_policy": "order",
                "taxes_id": [Command.set(cls.tax_23.ids)],
            }
        )
        cls.customer = cls.env["res.partner"].create(
            {
                "name": "Tasca do Bairro, Lda",
                "is_company": True,
                "vat": "PT508000009",
                "street": "Rua Augusta 120",
                "city": "Lisboa",
                "zip": "1100-053",
                "country_id": cls.env.ref("base.pt").id,
                "email": "contabilidade@tasca.example",
            }
        )
        cls.account = cls.env["fiscal.provider.account"].create(
            {
                "name": "IX test",
                "company_id": cls.company.id,
                "provider": "invoicexpress",
                "account_name": "test",
                "base_url": cls.sim.base_url,
                "api_key": API_KEY,
                "trigger": "order_confirm",
                "mode": "finalize",
                "document_type": "invoice",
            }
        )
        cls.company.fiscal_default_account_id = cls.account

    def setUp(self):
        super().setUp()
        self.sim.reset()

    # -- helpers ---------------------------------------------------------------
    def make_product(self, tax, name="Formação", code="FORM-1"):
        return self.env["product.product"].create(
            {
                "name": name,
                "default_code": code,
                "list_price": 100.0,
                "type": "service",
                "invoice_policy": "order",
                "taxes_id": [Command.set(tax.ids)],
            }
        )

    def make_order(self, partner=None, qty=2, price=100.0, product=None, **vals):
        order = self.env["sale.order"].create(
            {
                "partner_id": (partner or self.customer).id,
                "order_line": [
                    Command.create(
                        {
                            "product_id": (product or self.product).id,
                            "product_uom_qty": qty,
                            "price_unit": price,
                        }
                    )
                ],
                **vals,
            }
        )
        return order

    def confirm(self, order):
        order.action_confirm()
        return order

    def run_queue(self):
        """Run the real cron job, with its commits, on the test transaction."""
        cron = self.env.ref("fiscal_invoice_connector.ir_cron_process_fiscal_documents").sudo()
        with self.enter_registry_test_mode():
            cron.method_direct_trigger()
        self.env.invalidate_all()

    def make_due(self, docs):
        docs.sudo().write({"next_attempt": "2000-01-01 00:00:00"})

    def sim_docs_for(self, doc):
        """Documents at the provider carrying our reference."""
        return [d for d in self.sim.documents.values() if doc.reference in (d.get("reference") or "")]

    def final_at_provider(self, doc):
        return [d for d in self.sim_docs_for(doc) if d["status"] in ("final", "settled")]

    def chatter_text(self, record):
        return " ".join(record.sudo().message_ids.mapped("body"))
