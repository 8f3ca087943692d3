"""One legal document per sale: an order's fiscal invoice and one of its invoices' can never
both be live, whatever the policy or the account said when each was queued."""

import psycopg2

from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import FiscalTestCommon


@tagged("post_install", "-at_install")
class TestOneDocumentPerSale(FiscalTestCommon):
    def live_invoice_docs(self, orders):
        invoices = orders.invoice_ids
        return (
            self.env["fiscal.document"]
            .sudo()
            .search(
                [
                    ("kind", "=", "invoice"),
                    ("state", "not in", ("cancelled", "dropped")),
                    "|",
                    ("sale_order_id", "in", orders.ids),
                    ("move_id", "in", invoices.ids),
                ]
            )
        )

    def issued_at_confirmation(self):
        order = self.confirm(self.make_order())
        doc = order.fiscal_document_id
        self.run_queue()
        self.assertEqual(doc.state, "issued", doc.last_error)
        return order, doc

    def assert_one_final_at_provider(self):
        finals = [d for d in self.adapter.all_docs() if self.adapter.status(d) == "final"]
        self.assertEqual(len(finals), 1, "one legal invoice at the provider for the sale")

    def test_policy_switch_then_invoice_post_reuses_the_order_document(self):
        order, doc = self.issued_at_confirmation()
        self.account.trigger = "invoice_post"  # the README invites trying policies
        invoice = self.invoice_and_post(order)
        self.assertEqual(self.live_invoice_docs(order), doc, "no second fiscal invoice queued")
        self.assertEqual(invoice.fiscal_document_id, doc)
        self.assertEqual(invoice.fiscal_number, doc.number)
        self.assertIn(doc.number, self.chatter_text(invoice), "the invoice says which document stands for it")
        self.run_queue()
        self.assert_one_final_at_provider()

    def test_account_changed_on_the_invoice_reuses_the_order_document(self):
        order, doc = self.issued_at_confirmation()
        other = self.account.copy({"name": "IX other store", "trigger": "invoice_post"})
        other.api_key = self.account.api_key
        invoice = order._create_invoices()
        invoice.fiscal_account_id = other
        invoice.action_post()
        self.assertEqual(self.live_invoice_docs(order), doc)
        self.assertFalse(self.env["fiscal.document"].sudo().search_count([("account_id", "=", other.id)]))
        # The hook replayed, or the user asks for it by hand: still the same document.
        self.env["fiscal.document"]._enqueue(other, move=invoice, order=order)
        action = invoice.action_issue_fiscal_now()
        wizard = self.env[action["res_model"]].with_context(action["context"]).create({"account_id": other.id})
        with self.assertRaisesRegex(UserError, "already has a fiscal document"):
            wizard.action_issue()
        self.assertEqual(self.live_invoice_docs(order), doc)
        self.run_queue()
        self.assert_one_final_at_provider()

    def test_invoice_document_excludes_one_for_its_order(self):
        self.account.trigger = "invoice_post"
        order = self.confirm(self.make_order())
        invoice = self.invoice_and_post(order)
        doc = invoice.fiscal_document_id
        self.assertTrue(doc)
        # Switching to "on order confirmation" and issuing the order by hand, or a backfill of orders.
        self.account.trigger = "order_confirm"
        action = order.action_issue_fiscal_now()
        with self.assertRaisesRegex(UserError, "already has a fiscal document"):
            self.env[action["res_model"]].with_context(action["context"]).create({}).action_issue()
        backfill = self.env["fiscal.backfill.wizard"].create({"account_id": self.account.id})
        self.assertEqual((backfill.count, backfill.already), (0, 1))
        self.assertEqual(self.env["fiscal.document"]._enqueue(self.account, order=order), doc)
        self.assertEqual(self.live_invoice_docs(order), doc)

    def test_database_refuses_a_second_live_document_for_the_sale(self):
        order = self.confirm(self.make_order())
        doc = order.fiscal_document_id
        invoice = order._create_invoices()
        invoice.action_post()
        vals = {
            "company_id": self.company.id,
            "account_id": self.account.id,
            "sale_order_id": order.id,
            "move_id": invoice.id,
            "kind": "invoice",
        }
        Doc = self.env["fiscal.document"].sudo()
        with self.assertRaises(psycopg2.errors.ExclusionViolation), mute_logger("odoo.sql_db"):
            with self.env.cr.savepoint():
                Doc.create(vals)
        # Once the order's document is cancelled, the invoice may have its own.
        doc.sudo().write({"state": "cancelled"})
        with self.env.cr.savepoint():  # flushed first, as _enqueue does
            self.assertTrue(Doc.create(vals))

    def test_several_invoices_of_one_order_each_have_theirs(self):
        """Invoicing per invoice (down payment, then the rest): each Odoo invoice is its own
        legal invoice; the order can then no longer get one of its own."""
        self.account.trigger = "invoice_post"
        order = self.confirm(self.make_order(qty=4))
        down_payment = (
            self.env["sale.advance.payment.inv"]
            .with_context(active_model="sale.order", active_ids=order.ids)
            .create({"advance_payment_method": "percentage", "amount": 50})
        )
        down_payment.create_invoices()
        first = order.invoice_ids
        first.action_post()
        second = order._create_invoices(final=True)
        second.action_post()
        docs = self.live_invoice_docs(order)
        self.assertEqual(docs.move_id, first | second, "one document per invoice")
        self.assertEqual(len(docs), 2)
        Doc = self.env["fiscal.document"]
        self.assertEqual(Doc._enqueue(self.account, order=order), docs, "the order is documented by its invoices")
        self.assertEqual(self.live_invoice_docs(order), docs)

    def test_invoice_of_two_orders_one_already_documented(self):
        documented, doc = self.issued_at_confirmation()
        self.account.trigger = "manual"
        other = self.confirm(self.make_order(qty=1))
        self.account.trigger = "invoice_post"
        invoice = (documented | other)._create_invoices()
        self.assertEqual(len(invoice), 1, "one invoice for both orders")
        invoice.action_post()
        self.assertEqual(self.live_invoice_docs(documented | other), doc, "no document doubling the first order")
        text = self.chatter_text(invoice)
        self.assertIn(other.name, text, "the invoice says which order still has no document")
        # The order left without one can still be documented on its own.
        action = other.action_issue_fiscal_now()
        self.env[action["res_model"]].with_context(action["context"]).create({}).action_issue()
        self.assertEqual(len(self.live_invoice_docs(documented | other)), 2)
