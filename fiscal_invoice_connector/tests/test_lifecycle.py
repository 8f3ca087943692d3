"""The accountant's lifecycle, the same behaviour for each Portuguese provider:
invoice -> partial credit -> full credit -> receipts, never a duplicate."""

from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import FiscalTestCommon


class LifecycleCases:
    def setUp(self):
        super().setUp()
        self.account.write({"trigger": "invoice_post", "issue_receipts": False})

    def _issued_invoice(self, qty=4):
        invoice = self.invoice_and_post(self.confirm(self.make_order(qty=qty, price=50.0)))
        doc = invoice.fiscal_document_id
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        return invoice, doc

    def test_partial_then_full_credit_each_with_one_fiscal_credit_note(self):
        invoice, original = self._issued_invoice(qty=4)
        partial = self.refund(invoice, {self.product: 1}, reason="Uma garrafa partida")
        credit = partial.fiscal_document_id
        self.assertEqual((credit.kind, credit.related_document_id), ("credit_note", original))
        self.assertEqual(self.run_until(credit, ("issued",)), "issued", credit.last_error)
        self.assertTrue(partial.fiscal_number, "the number is on the Odoo credit note")
        self.assertNotEqual(partial.fiscal_number, invoice.fiscal_number)
        remote = self.final_at_provider(credit)
        self.assertEqual(len(remote), 1)
        self.assertTrue(self.adapter.is_credit_note(remote[0]))
        self.assertIn(self.adapter.credited_original(remote[0]), (original.remote_id, original.number))
        self.assertAlmostEqual(credit.remote_total, partial.amount_total, places=2)
        # The rest, then nothing more can be credited.
        rest = self.refund(invoice, {self.product: 3}, reason="Devolução do resto")
        self.assertEqual(self.run_until(rest.fiscal_document_id, ("issued",)), "issued")
        too_much = self.refund(invoice, {self.product: 1}, reason="Engano")
        extra = too_much.fiscal_document_id
        self.run_until(extra, ("error",))
        self.assertEqual(extra.state, "error")
        self.assertIn("exceeds what remains creditable", extra.last_error)
        self.assertEqual(len([d for d in self.adapter.all_docs() if self.adapter.is_credit_note(d)]), 2)

    def test_credit_note_answer_lost_gives_one_credit_note(self):
        invoice, original = self._issued_invoice()
        self.sim.inject("reset", method="POST", when="after")
        refund = self.refund(invoice, {self.product: 1})
        credit = refund.fiscal_document_id
        self.run_queue()
        self.assertEqual(self.run_until(credit, ("issued",)), "issued", credit.last_error)
        credits = [d for d in self.adapter.all_docs() if self.adapter.is_credit_note(d)]
        finals = [d for d in credits if self.adapter.status(d) == "final"]
        self.assertEqual(len(finals), 1, "one legal credit note, whatever the retries")
        # Posting the same credit note again (a replayed hook) cannot create a second one.
        self.env["fiscal.document"]._enqueue_credit_note(refund)
        self.assertEqual(self.env["fiscal.document"].search_count([("move_id", "=", refund.id)]), 1)

    def test_receipts_for_each_payment(self):
        self.account.issue_receipts = True
        invoice, original = self._issued_invoice(qty=4)  # 4 x 50 + 23 % = 246
        self.pay(invoice, amount=100.0)
        self.pay(invoice, amount=146.0)
        receipts = self.env["fiscal.document"].search(
            [("related_document_id", "=", original.id), ("kind", "=", "receipt")]
        )
        self.assertEqual(sorted(receipts.mapped("payment_amount")), [100.0, 146.0])
        for receipt in receipts:
            self.assertEqual(self.run_until(receipt, ("issued",)), "issued", receipt.last_error)
            self.assertTrue(receipt.number)
        self.assertEqual(len(self.adapter.receipts()), 2)

    def test_credit_note_waits_for_its_original(self):
        self.sim.inject(503, count=None)
        invoice = self.invoice_and_post(self.confirm(self.make_order()))
        original = invoice.fiscal_document_id
        self.run_queue()
        refund = self.refund(invoice, {self.product: 1})
        credit = refund.fiscal_document_id
        self.sim.clear_faults()
        self.make_due(credit)
        self.run_queue()
        self.assertIn(credit.state, ("to_send", "sending"), "not before the original is issued")
        self.make_due(original | credit)
        self.run_until(original, ("issued",))
        self.assertEqual(self.run_until(credit, ("issued",)), "issued", credit.last_error)


@tagged("post_install", "-at_install")
class TestLifecycleInvoiceXpress(LifecycleCases, FiscalTestCommon):
    provider = "invoicexpress"

    def test_invoice_marked_settled_when_paid(self):
        invoice, original = self._issued_invoice(qty=1)
        self.pay(invoice)
        self.assertEqual(original.settle_state, "pending")
        self.run_until(original, ("issued",))
        self.make_due(original)
        self.run_queue()
        self.assertEqual(original.settle_state, "done", original.last_error)
        self.assertEqual(self.sim_docs_for(original)[0]["status"], "settled")

    def test_invoice_can_be_cancelled_with_a_reason(self):
        invoice, original = self._issued_invoice(qty=1)
        original.action_request_cancel("Cliente errado")
        self.run_queue()
        self.assertEqual(original.state, "cancelled")

    def test_half_payment_whose_answer_is_lost_gives_one_receipt(self):
        """InvoiceXpress recorded the payment, its answer never came back (reset after
        processing): the retry finds that receipt through related_documents, it posts no
        second partial payment."""
        self.account.issue_receipts = True
        invoice, original = self._issued_invoice(qty=2)  # 2 x 50 + 23 % = 123
        self.sim.inject("reset", path_contains="partial_payments", method="POST", when="after")
        self.pay(invoice, amount=invoice.amount_total / 2)
        receipt = self.env["fiscal.document"].search(
            [("related_document_id", "=", original.id), ("kind", "=", "receipt")]
        )
        self.run_queue()
        self.assertEqual(len(self.adapter.receipts()), 1, "the provider holds the receipt")
        self.assertFalse(receipt.remote_id, "its answer was lost")
        self.assertEqual(self.run_until(receipt, ("issued",)), "issued", receipt.last_error)
        (remote,) = self.adapter.receipts()
        self.assertEqual(receipt.remote_id, str(remote["id"]))
        self.assertEqual(receipt.number, "RG A/1")
        posts = [r for r in self.sim.requests if "partial_payments" in r["path"] and r["method"] == "POST"]
        self.assertEqual(len(posts), 1, "the payment was sent once")


@tagged("post_install", "-at_install")
class TestLifecycleVendus(LifecycleCases, FiscalTestCommon):
    provider = "vendus"

    def test_vendus_invoice_cannot_be_cancelled_only_credited(self):
        invoice, original = self._issued_invoice(qty=1)
        with self.assertRaises(UserError) as error:
            original.action_request_cancel("Cliente errado")
        self.assertIn("credit note", str(error.exception))
        self.assertEqual(original.state, "issued")

    def test_invoice_receipt_carries_its_payment(self):
        self.account.write({"trigger": "order_confirm", "document_type": "invoice_receipt"})
        order = self.confirm(self.make_order(qty=1))
        doc = order.fiscal_document_id
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        remote = self.final_at_provider(doc)[0]
        self.assertEqual(remote["type"], "FR")
        self.assertTrue(remote.get("payments"))

    def test_test_mode_numbers(self):
        invoice, original = self._issued_invoice(qty=1)
        self.assertIn(" T", original.number, "test-mode documents are numbered with a T")
