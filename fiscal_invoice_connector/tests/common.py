from fiscal_simulators.enotas import EnotasSimulator
from fiscal_simulators.invoicexpress import InvoiceXpressSimulator
from fiscal_simulators.invoicy import InvoicySimulator
from fiscal_simulators.vendus import VendusSimulator

from odoo import Command
from odoo.tests import HttpCase, tagged

from odoo.addons.sale.tests.common import TestSaleCommon

API_KEY = "ix-test-key-4f9c2a7d1e"
ENOTAS_COMPANY = "5b0c7d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e"


class SimulatorAdapter:
    """What a test needs to know of one provider's simulator, in neutral words:
    the documents at the provider carrying our reference, and their state."""

    def __init__(self, sim):
        self.sim = sim

    def docs_for(self, reference):
        raise NotImplementedError

    def status(self, remote):  # final | draft | pending | rejected | canceled
        raise NotImplementedError

    def all_docs(self):
        raise NotImplementedError


class InvoiceXpressAdapter(SimulatorAdapter):
    def receipts(self):
        return list(self.sim.receipts.values())

    def is_credit_note(self, remote):
        return remote["type"] == "CreditNote"

    def credited_original(self, remote):
        return str(remote.get("owner_invoice_id"))

    def docs_for(self, reference):
        return [d for d in self.sim.documents.values() if reference in (d.get("reference") or "")]

    def all_docs(self):
        return list(self.sim.documents.values())

    def status(self, remote):
        return {"settled": "final"}.get(remote["status"], remote["status"])


class VendusAdapter(SimulatorAdapter):
    def receipts(self):
        return [d for d in self.sim.documents.values() if d["type"] == "RG"]

    def is_credit_note(self, remote):
        return remote["type"] == "NC"

    def credited_original(self, remote):
        numbers = {self.sim.documents[line["_source"][0]]["number"] for line in remote["_lines"] if "_source" in line}
        return next(iter(numbers)) if len(numbers) == 1 else numbers

    def docs_for(self, reference):
        return [d for d in self.sim.documents.values() if d.get("external_reference") == reference]

    def all_docs(self):
        return list(self.sim.documents.values())

    def status(self, remote):
        return {"N": "final", "A": "canceled"}.get(remote["status"]["id"], remote["status"]["id"])


class EnotasAdapter(SimulatorAdapter):
    def docs_for(self, reference):
        return self.sim.find(idExterno=reference)

    def all_docs(self):
        return self.sim.find()

    def status(self, remote):
        return {"Autorizada": "final", "Cancelada": "canceled", "Negada": "rejected"}.get(remote["status"], "pending")

    def nfse_figures(self, remote):
        """What the note declares: service value, discounts, ISS withheld, each federal withholding
        and the net value (computed by the simulator from what was sent)."""
        service = remote.get("servico") or {}
        figures = {
            "services": remote["valorTotal"],
            "discounts": remote.get("descontos", 0.0),
            "iss_withheld": remote.get("valorIssRetido", 0.0),
            "net": remote.get("valorLiquido"),
        }
        for kind, key in (("pis", "valorPis"), ("cofins", "valorCofins"), ("csll", "valorCsll")):
            figures[kind] = service.get(key, 0.0)
        figures.update(ir=service.get("valorIr", 0.0), inss=service.get("valorInss", 0.0))
        return {key: round(float(value or 0), 2) for key, value in figures.items()}

    def nfse_fields(self, remote):
        service = remote.get("servico") or {}
        reform = service.get("ibsCbs") or {}
        return {
            "national_code": service.get("codigoTributacaoNacional"),
            "nbs_code": service.get("codigoNBS"),
            "reform_class": reform.get("classificacaoTributaria"),
            "competence": remote.get("dataCompetencia"),
            "street": (remote.get("cliente") or {}).get("endereco", {}).get("logradouro"),
            "number": (remote.get("cliente") or {}).get("endereco", {}).get("numero"),
            "tax_id": (remote.get("cliente") or {}).get("cpfCnpj"),
            "cancel_motive": remote.get("motivoCancelamento"),
            "cancel_justification": remote.get("justificativaCancelamento"),
        }

    def set_regime(self, regime):
        """The company's regime as the provider knows it (eNotas keeps it on the company)."""
        names = {"simples": "SimplesNacional", "mei": "MEI", "presumido": "LucroPresumido", "real": "LucroReal"}
        for company in self.sim.companies.values():
            company["regimeTributario"] = names[regime]

    def hold(self):
        """The municipality takes its time: nothing is decided until release()."""
        self.sim.authorization_delay = None

    def release(self):
        self.sim.authorization_delay = 0
        for note in self.sim.find():
            if self.status(note) == "pending":
                self.sim.complete(note["id"])


class InvoicyAdapter(SimulatorAdapter):
    def docs_for(self, reference):
        remote = self.sim.find(reference)
        return [remote] if remote else []

    def all_docs(self):
        return [self.sim.find(key) for key in list(self.sim.documents)]

    def status(self, remote):
        return {"authorized": "final"}.get(remote["status"], remote["status"])

    def nfse_figures(self, remote):
        values = remote.get("values") or {}

        def value(tag):
            return round(float(values.get(tag) or 0), 2)

        return {
            "services": value("ValServicos"),
            "discounts": value("ValDescIncond"),
            "iss_withheld": value("ValISSRetido"),
            "net": value("ValLiquido"),
            "pis": value("ValPIS"),
            "cofins": value("ValCOFINS"),
            "csll": value("ValCSLL"),
            "ir": value("ValIR"),
            "inss": value("ValINSS"),
        }

    def nfse_fields(self, remote):
        from lxml import etree

        rps = etree.fromstring(remote["envio"].encode()).find("RPS")
        return {
            "national_code": rps.findtext("Servico/codTributNacional"),
            "nbs_code": rps.findtext("Servico/cNBS"),
            "reform_class": rps.findtext("Servico/IBSCBS/cClassTrib"),
            "competence": (rps.findtext("dCompetencia") or "")[:10],
            "street": rps.findtext("Tomador/TomaEndereco"),
            "number": rps.findtext("Tomador/TomaNumero"),
            "tax_id": rps.findtext("Tomador/TomaCNPJ") or rps.findtext("Tomador/TomaCPF"),
            "cancel_motive": remote.get("cancel_code"),
            "cancel_justification": remote.get("cancel_reason"),
        }

    def set_regime(self, regime):
        """InvoiCy reads the regime from each RPS (OptSN): nothing to set at the provider."""

    def hold(self):
        self.sim.authorization_delay = 3600

    def release(self):
        self.sim.authorize_pending()
        self.sim.authorization_delay = 0


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
        return cls.env["res.partner"].create(
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
        return cls.env["res.partner"].create(
            {
                "name": "Ana Souza",
                "vat": "386.186.997-72",
                "street": "Rua Sergipe",
                "fiscal_street_number": "1014",
                "fiscal_district": "Savassi",
                "city": "Belo Horizonte",
                "fiscal_city_code": "3106200",
                "state_id": cls.env.ref("base.state_br_mg").id,
                "zip": "30130-174",
                "country_id": cls.env.ref("base.br").id,
                "email": "ana@example.com.br",
            }
        )

    @classmethod
    def _br_service(cls):
        return {
            "service_description": "Consultoria em sistemas",
            "service_code": "1.07",
            "service_lc116": "1.07",
            "iss_rate": 2.0,
            "service_city_code": "3106200",
            "tax_regime": "simples",
            "poll_interval": 1,
        }

    @classmethod
    def _setup_invoicy(cls):
        cls._start(
            InvoicySimulator(
                partner_key="pk-" + API_KEY,
                access_key="ak-" + API_KEY,
                company_code="11222333000181",
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
                "company_ref": "11222333000181",
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
