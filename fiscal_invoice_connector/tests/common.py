from fiscal_simulators.enotas import EnotasSimulator
from fiscal_simulators.harness import (
    API_KEY,
    ENOTAS_COMPANY,
    INVOICY_COMPANY_CNPJ,
    EnotasAdapter,
    InvoiceXpressAdapter,
    InvoicyAdapter,
    VendusAdapter,
    br_customer_vals,
    br_service_vals,
    pt_customer_vals,
)
from fiscal_simulators.invoicexpress import InvoiceXpressSimulator
from fiscal_simulators.invoicy import InvoicySimulator
from fiscal_simulators.vendus import VendusSimulator

from odoo import Command
from odoo.tests import HttpCase, tagged

from odoo.addons.sale.tests.common import TestSaleCommon

__all__ = ["API_KEY", "ENOTAS_COMPANY", "FiscalTestCommon"]


@tagged("post_install", "-at_install")
class FiscalTestCommon(TestSaleCommon):
    """A company, a provider account pointing at a real local simulator, a customer and a
    product as that provider's country needs them. Tests run as the accounting test user
    (not a superuser), as users do. Subclasses choose the provider with ``provider``."""

    provider = "invoicexpress"
    pricelist = None
    # Run the behaviour tests a provider class inherits (Odoo's loader skips them otherwise).
    allow_inherited_tests_method = True

    @classmethod
    def get_default_groups(cls):
        return super().get_default_groups() | cls.quick_ref("fiscal_invoice_connector.group_fiscal_manager")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        params = cls.env["ir.config_parameter"].sudo()
        params.set_param("fiscal_invoice_connector.pdf_poll_interval", "0.01")
        # The simulators render PDFs at once unless a test says otherwise: no wait before the first poll.
        params.set_param("fiscal_invoice_connector.pdf_ready_after", "0")
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
        getattr(cls, f"_setup_{cls.provider}")()
        # The simulators here have no budget unless a test gives them one: no pacing.
        cls.account.rate_limit_per_minute = 0
        cls.company.fiscal_default_account_id = cls.account

    @classmethod
    def _start(cls, sim, adapter):
        cls.sim = sim.start()
        cls.addClassCleanup(cls.sim.stop)
        cls.adapter = adapter(cls.sim)

    @classmethod
    def _pt_customer(cls):
        return cls.env["res.partner"].create(pt_customer_vals(cls.env))

    @classmethod
    def _setup_invoicexpress(cls):
        cls._start(
            InvoiceXpressSimulator(api_key=API_KEY, rate_limit_per_minute=None, pdf_polls_before_ready=1),
            InvoiceXpressAdapter,
        )
        cls.customer = cls._pt_customer()
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

    @classmethod
    def _setup_vendus(cls):
        cls._start(VendusSimulator(api_key=API_KEY, rate_limit=None), VendusAdapter)
        cls.customer = cls._pt_customer()
        # Vendus issues in euros only; the test company keeps its own currency.
        eur = cls.setup_other_currency("EUR", rates=[("1900-01-01", 1.0)])
        cls.pricelist = cls.env["product.pricelist"].create({"name": "EUR", "currency_id": eur.id})
        cls.account = cls.env["fiscal.provider.account"].create(
            {
                "name": "Vendus test",
                "company_id": cls.company.id,
                "provider": "vendus",
                "base_url": cls.sim.base_url,
                "api_key": API_KEY,
                "register_id": "1",
                "trigger": "order_confirm",
                "document_type": "invoice",
            }
        )

    @classmethod
    def _setup_enotas(cls):
        cls._start(
            EnotasSimulator(api_key=API_KEY, company_id=ENOTAS_COMPANY, authorization_delay=0),
            EnotasAdapter,
        )
        cls.customer = cls._br_customer()
        cls._br_sale_setup()
        cls.account = cls.env["fiscal.provider.account"].create(
            {
                "name": "eNotas test",
                "company_id": cls.company.id,
                "provider": "enotas",
                "base_url": cls.sim.base_url,
                "api_key": API_KEY,
                "company_ref": ENOTAS_COMPANY,
                "trigger": "order_confirm",
                **cls._br_service(),
            }
        )

    @classmethod
    def _br_sale_setup(cls):
        """An NFS-e is issued in reais, for a service whose price carries no added tax."""
        brl = cls.setup_other_currency("BRL", rates=[("1900-01-01", 1.0)])
        cls.pricelist = cls.env["product.pricelist"].create({"name": "BRL", "currency_id": brl.id})
        cls.product = cls.env["product.product"].create(
            {
                "name": "Consultoria em sistemas",
                "default_code": "CONS-1",
                "list_price": 100.0,
                "type": "service",
                "invoice_policy": "order",
                "taxes_id": [Command.clear()],
            }
        )

    @classmethod
    def _br_customer(cls):
        return cls.env["res.partner"].create(br_customer_vals(cls.env))

    @classmethod
    def _br_service(cls):
        return br_service_vals()

    @classmethod
    def _setup_invoicy(cls):
        cls._start(
            InvoicySimulator(
                partner_key="pk-" + API_KEY,
                access_key="ak-" + API_KEY,
                company_code=INVOICY_COMPANY_CNPJ,
                authorization_delay=0,
            ),
            InvoicyAdapter,
        )
        cls.customer = cls._br_customer()
        cls._br_sale_setup()
        cls.account = cls.env["fiscal.provider.account"].create(
            {
                "name": "InvoiCy test",
                "company_id": cls.company.id,
                "provider": "invoicy",
                "base_url": cls.sim.base_url,
                "api_key": "pk-" + API_KEY,
                "access_key": "ak-" + API_KEY,
                "company_ref": INVOICY_COMPANY_CNPJ,
                "issuer_municipal_registration": "12345",
                "trigger": "order_confirm",
                **cls._br_service(),
            }
        )

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
        if self.pricelist and "pricelist_id" not in vals:
            vals["pricelist_id"] = self.pricelist.id
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
        if isinstance(self, HttpCase):  # an HttpCase is in registry test mode already
            self.env.flush_all()
            cron.method_direct_trigger()
        else:
            with self.enter_registry_test_mode():
                cron.method_direct_trigger()
        self.env.invalidate_all()

    def make_due(self, docs):
        docs.sudo().write({"next_attempt": "2000-01-01 00:00:00"})

    def run_until(self, doc, states, runs=5):
        """Run the queue (bringing the document's next attempt forward) until it reaches one
        of ``states``: asynchronous providers need a few reads."""
        for _ in range(runs):
            if doc.state in states:
                break
            self.make_due(doc)
            self.run_queue()
        return doc.state

    def sim_docs_for(self, doc):
        """Documents at the provider carrying our reference."""
        return self.adapter.docs_for(doc.reference)

    def final_at_provider(self, doc):
        return [d for d in self.sim_docs_for(doc) if self.adapter.status(d) == "final"]

    def remote_statuses(self, doc):
        return [self.adapter.status(d) for d in self.sim_docs_for(doc)]

    def chatter_text(self, record):
        return " ".join(record.sudo().message_ids.mapped("body"))

    def invoice_and_post(self, order):
        invoice = order._create_invoices()
        invoice.action_post()
        return invoice

    def pay(self, invoice, amount=None):
        vals = {"amount": amount} if amount else {}
        return (
            self.env["account.payment.register"]
            .with_context(active_model="account.move", active_ids=invoice.ids)
            .create(vals)
            ._create_payments()
        )

    def refund(self, invoice, lines_qty=None, reason="Cliente devolveu"):
        """Reverse the invoice (the accountant's Credit note button), optionally keeping only
        ``lines_qty`` {product: qty} for a partial credit, and post the credit note."""
        reversal = (
            self.env["account.move.reversal"]
            .with_context(active_model="account.move", active_ids=invoice.ids)
            .create({"reason": reason, "journal_id": invoice.journal_id.id})
        )
        action = reversal.refund_moves()
        refund = self.env["account.move"].browse(action["res_id"])
        if lines_qty:
            with self.env.cr.savepoint():
                for line in refund.invoice_line_ids:
                    if line.product_id in lines_qty:
                        line.quantity = lines_qty[line.product_id]
        refund.action_post()
        return refund
