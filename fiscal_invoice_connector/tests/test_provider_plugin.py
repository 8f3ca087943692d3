"""Providers are plug-ins: a service defined outside the addon (tests/dummy_provider.py, a
client class plus a model extension, as a separate addon would ship them) is offered on the
account and issues documents through the real outbox and cron, without the addon knowing it."""

from decimal import Decimal

from odoo.orm.model_classes import add_to_registry
from odoo.tests import tagged

from . import dummy_provider
from .common import API_KEY, FiscalTestCommon


@tagged("post_install", "-at_install")
class TestProviderPlugin(FiscalTestCommon):
    provider = "dummy"

    @classmethod
    def _setup_dummy(cls):
        # What loading the other addon does: its extension joins the model's classes. Undone when
        # the class ends (the base classes put back; TransactionCase sets the models up again).
        Account = cls.registry["fiscal.provider.account"]
        cls.addClassCleanup(setattr, Account, "_base_classes__", Account._base_classes__)
        add_to_registry(cls.registry, dummy_provider.FiscalProviderAccount)
        cls.registry._setup_models__(cls.env.cr, ["fiscal.provider.account"])
        cls.sim = dummy_provider.DummyProvider.service
        cls.customer = cls._pt_customer()
        cls.account = cls.env["fiscal.provider.account"].create(
            {
                "name": "Dummy account",
                "company_id": cls.company.id,
                "provider": "dummy",
                "api_key": API_KEY,
                "trigger": "order_confirm",
                "mode": "finalize",
                "document_type": "invoice",
            }
        )

    def test_the_plugged_in_service_is_offered_next_to_the_builtin_ones(self):
        field = self.env["fiscal.provider.account"]._fields["provider"]
        codes = [code for code, _label in field._description_selection(self.env)]
        self.assertEqual(codes, ["invoicexpress", "vendus", "enotas", "invoicy", "dummy"])
        self.assertIs(self.account._get_provider_class(), dummy_provider.DummyProvider)
        # Its defaults come from its class, as for any service.
        self.assertEqual(self.account.base_url, "memory://dummy")
        self.assertEqual(self.account.action_test_connection()["params"]["type"], "success")
        self.assertEqual(self.sim.calls, [("test_connection", None)])

    def test_an_order_is_issued_through_the_plugged_in_service_by_the_queue(self):
        order = self.confirm(self.make_order(qty=2, price=100.0))
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "to_send")
        self.assertEqual(self.sim.documents, {}, "nothing is sent in the user's transaction")

        self.run_queue()

        self.assertEqual(doc.state, "issued", doc.last_error)
        [(remote_id, remote)] = self.sim.documents.items()
        self.assertEqual(doc.remote_id, remote_id)
        self.assertEqual(doc.number, remote["number"])
        self.assertEqual(order.fiscal_number, remote["number"])
        # What the service received is the neutral document mapped from the order.
        sent = remote["data"]
        self.assertEqual(sent.reference, doc.reference)
        self.assertEqual([(line.quantity, line.unit_price, line.tax_name) for line in sent.lines],
                         [(Decimal("2.0"), Decimal("100.0"), "IVA23")])  # fmt: skip
        self.assertEqual(remote["total"], Decimal(str(order.amount_total)))
        self.assertAlmostEqual(doc.remote_total, order.amount_total)
        # Follow-ups go through the same client: the PDF is the service's, attached to the order.
        self.assertEqual(doc.pdf_state, "done")
        self.assertIn(remote["number"].encode(), doc.pdf_attachment_id.raw)
        self.assertIn(remote["number"], self.chatter_text(order))
        self.assertEqual([op for op, _key in self.sim.calls], ["create", "fetch_pdf"])

    def test_an_unknown_service_is_refused_by_name(self):
        with self.assertRaisesRegex(ValueError, "Unknown fiscal provider 'nowhere'"):
            self.account._get_provider_class("nowhere")
