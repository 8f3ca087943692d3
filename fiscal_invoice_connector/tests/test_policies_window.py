from datetime import datetime, timedelta

from odoo import fields
from odoo.tests import freeze_time, tagged

from .common import FiscalTestCommon


@tagged("post_install", "-at_install")
class TestRefundWindowAndRefunds(FiscalTestCommon):
    def _paid_invoice(self, order):
        invoice = order._create_invoices()
        invoice.action_post()
        self.env["account.payment.register"].with_context(active_model="account.move", active_ids=invoice.ids).create(
            {}
        )._create_payments()
        return invoice

    def _refund(self, invoice):
        reversal = (
            self.env["account.move.reversal"]
            .with_context(active_model="account.move", active_ids=invoice.ids)
            .create({"reason": "Cliente devolveu", "journal_id": invoice.journal_id.id})
        )
        action = reversal.refund_moves()
        refund = self.env["account.move"].browse(action["res_id"])
        refund.action_post()
        return refund

    def test_document_waits_for_the_refund_window_then_is_issued(self):
        self.account.write({"trigger": "payment_window", "refund_window_days": 7})
        with freeze_time("2026-03-02 10:00:00"):
            self.account.policy_start = fields.Datetime.now() - timedelta(hours=1)
            invoice = self._paid_invoice(self.confirm(self.make_order()))
            doc = invoice.fiscal_document_id
            self.assertEqual(doc.state, "to_send")
            self.assertEqual(doc.next_attempt, datetime(2026, 3, 9, 10, 0, 0))
            self.run_queue()
            self.assertEqual(self.sim.requests, [], "nothing is sent inside the window")
        with freeze_time("2026-03-09 10:01:00"):
            self.run_queue()
            self.run_until(doc, ("issued",))
            self.assertEqual(doc.state, "issued", doc.last_error)
            self.assertEqual(len(self.final_at_provider(doc)), 1)

    def test_refund_inside_window_drops_queued_document(self):
        self.account.write({"trigger": "payment_window", "refund_window_days": 7})
        with freeze_time("2026-03-02 10:00:00"):
            self.account.policy_start = fields.Datetime.now() - timedelta(hours=1)
            invoice = self._paid_invoice(self.confirm(self.make_order()))
            doc = invoice.fiscal_document_id
        with freeze_time("2026-03-05 10:00:00"):
            self._refund(invoice)
            self.assertEqual(doc.state, "dropped")
            self.assertIn("refunded", self.chatter_text(invoice))
        with freeze_time("2026-03-10 10:00:00"):
            self.run_queue()
        self.assertEqual(self.sim.requests, [], "a refunded sale inside the window sends nothing")

    def test_refund_window_is_for_new_sales_only(self):
        with freeze_time("2026-03-02 10:00:00"):
            self.account.trigger = "manual"
            order = self.confirm(self.make_order())
            invoice = order._create_invoices()
        with freeze_time("2026-03-03 10:00:00"):
            self.account.write({"trigger": "payment_window"})
            invoice.action_post()
            self.env["account.payment.register"].with_context(
                active_model="account.move", active_ids=invoice.ids
            ).create({})._create_payments()
        self.assertFalse(invoice.fiscal_document_id, "a sale from before the policy is left to the backfill")

    def test_chargeback_inside_window_drops_queued_document(self):
        self.account.write({"trigger": "payment_window", "refund_window_days": 7})
        with freeze_time("2026-03-02 10:00:00"):
            self.account.policy_start = fields.Datetime.now() - timedelta(hours=1)
            invoice = self._paid_invoice(self.confirm(self.make_order()))
            doc = invoice.fiscal_document_id
            self.assertEqual(doc.state, "to_send")
        with freeze_time("2026-03-04 10:00:00"):
            # The card payment is taken back: the payment is unreconciled from the invoice.
            invoice.line_ids.filtered(lambda ln: ln.account_type == "asset_receivable").remove_move_reconcile()
            self.assertEqual(invoice.payment_state, "not_paid")
            self.assertEqual(doc.state, "dropped")
            self.assertIn("chargeback", self.chatter_text(invoice))
        with freeze_time("2026-03-10 10:00:00"):
            self.run_queue()
        self.assertEqual(self.sim.requests, [], "nothing sent for a sale whose payment was taken back")

    def test_cancel_on_refund_cancels_the_document_at_the_provider(self):
        """An issued document is cancelled at the provider; at InvoiceXpress only a draft is (a finalized
        Portuguese document is credited instead: test_portugal), and it is deleted."""
        portuguese = self.provider == "invoicexpress"
        self.account.write(
            {"trigger": "invoice_post", "cancel_on_refund": True, "mode": "draft" if portuguese else "finalize"}
        )
        invoice = self.confirm(self.make_order())._create_invoices()
        invoice.action_post()
        doc = invoice.fiscal_document_id
        reached = "draft" if portuguese else "issued"
        self.assertEqual(self.run_until(doc, (reached,)), reached, doc.last_error)
        self._refund(invoice)
        self.assertEqual(doc.state, "to_cancel")
        self.assertEqual(self.run_until(doc, ("cancelled",)), "cancelled")
        self.assertEqual(self.remote_statuses(doc), ["deleted" if portuguese else "canceled"])
        self.assertIn("cancelled at the provider", self.chatter_text(invoice))

    def test_without_cancel_on_refund_an_issued_document_stays(self):
        self.account.write({"trigger": "invoice_post"})
        invoice = self.confirm(self.make_order())._create_invoices()
        invoice.action_post()
        doc = invoice.fiscal_document_id
        self.run_until(doc, ("issued",))
        self._refund(invoice)
        self.assertEqual(doc.state, "issued")

    def test_cancelled_order_drops_its_queued_document(self):
        self.account.cancel_on_refund = True
        self.sim.inject(503, count=None)
        order = self.confirm(self.make_order())
        doc = order.fiscal_document_id
        order._action_cancel()
        self.assertEqual(doc.state, "dropped")
        self.assertEqual(order.fiscal_state, "dropped")

    def test_trigger_on_invoice_creation(self):
        self.account.trigger = "invoice_create"
        order = self.confirm(self.make_order())
        self.assertFalse(order.fiscal_document_id)
        invoice = order._create_invoices()
        self.assertEqual(invoice.state, "draft")
        doc = invoice.fiscal_document_id
        self.assertTrue(doc)
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)

    def test_deleting_a_draft_invoice_drops_its_unsent_document(self):
        self.account.trigger = "invoice_create"
        invoice = self.confirm(self.make_order())._create_invoices()
        doc = invoice.fiscal_document_id
        invoice.unlink()
        self.assertFalse(doc.exists())


@tagged("post_install", "-at_install")
class TestBackfill(FiscalTestCommon):
    def test_backfill_dry_run_count_enqueue_and_dedup(self):
        self.account.trigger = "manual"
        orders = self.env["sale.order"]
        for _ in range(5):
            orders |= self.confirm(self.make_order())
        # One of them already got its document by hand.
        self.env["fiscal.document"]._enqueue(self.account, order=orders[0])
        wizard = self.env["fiscal.backfill.wizard"].create({"account_id": self.account.id, "per_minute": 2})
        self.assertEqual(wizard.source, "orders")
        self.assertEqual((wizard.count, wizard.already), (4, 1))
        self.assertEqual(self.sim.requests, [], "the dry run sends nothing")
        wizard.action_enqueue()
        docs = self.env["fiscal.document"].search([("sale_order_id", "in", orders.ids)])
        self.assertEqual(len(docs), 5, "never two documents for a sale")
        # Spread over time: 2 per minute.
        backfilled = docs - orders[0].fiscal_document_id
        minutes = sorted({(d.next_attempt - min(backfilled.mapped("next_attempt"))).seconds // 60 for d in backfilled})
        self.assertEqual(minutes, [0, 1])
        again = self.env["fiscal.backfill.wizard"].create({"account_id": self.account.id})
        self.assertEqual((again.count, again.already), (0, 5))
        self.run_queue()
        self.assertEqual(set(backfilled.filtered(lambda d: d.state == "issued").ids) <= set(backfilled.ids), True)
        self.assertGreaterEqual(len(self.sim.final_documents()), 2)
