from odoo.tests import tagged

from .common import FiscalTestCommon


@tagged("post_install", "-at_install")
class TestPolicies(FiscalTestCommon):
    def _invoice(self, order):
        invoice = order._create_invoices()
        invoice.action_post()
        return invoice

    def test_trigger_invoice_posting(self):
        self.account.trigger = "invoice_post"
        order = self.confirm(self.make_order())
        self.assertFalse(order.fiscal_document_id, "confirmation does not issue under this policy")
        invoice = self._invoice(order)
        doc = invoice.fiscal_document_id
        self.assertEqual(doc.move_id, invoice)
        self.assertEqual(doc.sale_order_id, order)
        self.run_queue()
        self.assertEqual(invoice.fiscal_state, "issued", doc.last_error)
        self.assertEqual(invoice.fiscal_number, doc.number)
        self.assertEqual(order.fiscal_number, doc.number, "the order shows its invoice's fiscal document")
        pdfs = (
            self.env["ir.attachment"].sudo().search([("res_model", "=", "account.move"), ("res_id", "=", invoice.id)])
        )
        self.assertTrue(pdfs.filtered(lambda a: a.mimetype == "application/pdf"))

    def test_trigger_payment(self):
        self.account.trigger = "payment"
        order = self.confirm(self.make_order())
        invoice = self._invoice(order)
        self.assertFalse(invoice.fiscal_document_id, "posting does not issue under this policy")
        self.env["account.payment.register"].with_context(active_model="account.move", active_ids=invoice.ids).create(
            {}
        )._create_payments()
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        doc = invoice.fiscal_document_id
        self.assertTrue(doc, invoice.payment_state)
        self.run_queue()
        self.assertEqual(doc.state, "issued", doc.last_error)

    def test_order_level_document_is_not_issued_again_for_its_invoice(self):
        order = self.confirm(self.make_order())
        self.run_queue()
        invoice = self._invoice(order)
        self.assertEqual(invoice.fiscal_document_id, order.fiscal_document_id)
        self.assertEqual(self.env["fiscal.document"].search_count([("sale_order_id", "=", order.id)]), 1)

    def test_manual_trigger_queues_nothing(self):
        self.account.trigger = "manual"
        order = self.confirm(self.make_order())
        invoice = self._invoice(order)
        self.assertFalse(order.fiscal_document_id or invoice.fiscal_document_id)

    def test_mode_draft_leaves_a_draft_at_the_provider(self):
        self.account.mode = "draft"
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "draft", doc.last_error)
        self.assertFalse(doc.number)
        self.assertEqual([d["status"] for d in self.sim_docs_for(doc)], ["draft"])

    def test_mode_data_only_sends_the_customer_and_no_document(self):
        self.account.mode = "data_only"
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "registered", doc.last_error)
        self.assertEqual(self.sim.documents, {})
        self.assertEqual([c["code"] for c in self.sim.clients.values()], [f"ODOO-{self.company.id}-{self.customer.id}"])

    def test_document_types(self):
        for doc_type in ("invoice_receipt", "simplified_invoice"):
            self.account.document_type = doc_type
            # 2 x 30.00 + VAT: under the 100 EUR a simplified invoice allows a customer with a NIF (art. 40 CIVA).
            order = self.confirm(self.make_order(price=30.0))
            self.run_queue()
            doc = order.fiscal_document_id
            self.assertEqual(doc.state, "issued", doc.last_error)
            self.assertEqual(doc.document_type, doc_type)
            self.assertEqual(len(self.final_at_provider(doc)), 1)

    def test_send_by_email(self):
        self.account.send_email = True
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.email_state, "sent", doc.last_error)
        self.assertEqual([e["email"] for e in self.sim.emails], ["contabilidade@tasca.example"])

    def test_inactive_account_queues_nothing(self):
        self.account.active = False
        order = self.confirm(self.make_order())
        self.assertFalse(order.fiscal_document_id)
