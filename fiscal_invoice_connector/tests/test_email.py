from odoo.tests import tagged

from .common import FiscalTestCommon


@tagged("post_install", "-at_install")
class TestEmailTheOdooWay(FiscalTestCommon):
    """Per account, the provider e-mails the document, or Odoo does with a mail template that
    attaches the legal PDF, logged in the chatter; Odoo's Send on an invoice attaches the legal
    PDF instead of Odoo's own, and says when the legal document is not issued yet."""

    def customer_messages(self, record):
        return record.message_ids.filtered(lambda m: m.message_type == "comment" and self.customer in m.partner_ids)

    def test_odoo_template_sends_the_legal_pdf_and_the_provider_does_not(self):
        self.account.write({"send_email": True, "email_sender": "odoo"})
        self.assertFalse(self.account.send_email, "the provider's e-mail is off when Odoo e-mails")
        self.account.send_email = True
        self.assertFalse(self.account.send_email, "and stays off")
        self.assertEqual(
            self.account.email_template_id, self.env.ref("fiscal_invoice_connector.mail_template_fiscal_document")
        )
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "issued", doc.last_error)
        self.assertFalse(self.sim.emails, "the provider was not asked to e-mail")
        self.assertEqual(doc.email_state, "sent")
        [message] = self.customer_messages(order)
        self.assertIn(doc.number, message.subject)
        self.assertIn(doc.number, str(message.body))
        self.assertEqual(message.attachment_ids.mapped("name"), [doc.pdf_attachment_id.name])
        self.assertEqual(message.attachment_ids.raw, doc.pdf_attachment_id.raw)
        mail = self.env["mail.mail"].sudo().search([("mail_message_id", "=", message.id)])
        self.assertIn(self.customer, mail.recipient_ids)
        # Running the queue again sends nothing more.
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(len(self.customer_messages(order)), 1)

    def test_edited_template_is_used(self):
        template = (
            self.env.ref("fiscal_invoice_connector.mail_template_fiscal_document")
            .sudo()
            .copy({"subject": "Loja: fatura {{ object.number }}", "body_html": "<p>Obrigado! {{ object.number }}</p>"})
        )
        self.account.write({"email_sender": "odoo", "email_template_id": template.id})
        order = self.confirm(self.make_order())
        self.run_queue()
        [message] = self.customer_messages(order)
        self.assertEqual(message.subject, f"Loja: fatura {order.fiscal_number}")

    def test_provider_email_stays_the_default(self):
        self.account.send_email = True
        self.assertEqual(self.account.email_sender, "provider")
        order = self.confirm(self.make_order())
        self.run_queue()
        self.assertEqual(order.fiscal_document_id.email_state, "sent")
        self.assertEqual(len(self.sim.emails), 1)
        self.assertFalse(self.customer_messages(order), "Odoo sent nothing itself")

    def test_customer_without_email_is_said_in_the_chatter(self):
        self.account.email_sender = "odoo"
        self.customer.email = False
        order = self.confirm(self.make_order())
        self.run_queue()
        self.assertEqual(order.fiscal_document_id.email_state, "none")
        self.assertIn("no email address", " ".join(order.message_ids.mapped("body")))

    # -- Odoo's Send on an invoice ------------------------------------------------
    def send_wizard(self, invoice):
        return (
            self.env["account.move.send.wizard"]
            .with_context(active_model="account.move", active_ids=invoice.ids)
            .create({})
        )

    def test_send_attaches_the_legal_pdf_not_odoos(self):
        self.account.trigger = "invoice_post"
        order = self.confirm(self.make_order())
        invoice = order._create_invoices()
        invoice.action_post()
        self.run_queue()
        self.assertEqual(invoice.fiscal_state, "issued", invoice.fiscal_error)
        legal = invoice.fiscal_pdf_id
        wizard = self.send_wizard(invoice)
        names = [a["name"] for a in wizard.mail_attachments_widget]
        self.assertEqual(names, [legal.name], "the legal PDF only, not Odoo's")
        self.assertNotIn("fiscal_invoice_connector_pending", wizard.alerts or {})
        wizard.action_send_and_print()
        [message] = invoice.message_ids.filtered(lambda m: m.message_type == "comment" and m.attachment_ids)
        self.assertEqual(message.attachment_ids.mapped("name"), [legal.name])
        self.assertEqual(message.attachment_ids.raw, legal.raw)
        self.assertTrue(invoice.is_move_sent)
        self.assertFalse(invoice.invoice_pdf_report_id, "Odoo's own PDF was not rendered as the invoice's document")

    def test_send_says_when_the_legal_document_is_pending(self):
        self.account.trigger = "invoice_post"
        order = self.confirm(self.make_order())
        invoice = order._create_invoices()
        invoice.action_post()
        self.assertEqual(invoice.fiscal_state, "to_send")
        wizard = self.send_wizard(invoice)
        alert = (wizard.alerts or {}).get("fiscal_invoice_connector_pending")
        self.assertTrue(alert, wizard.alerts)
        self.assertIn(invoice.name, alert["message"])
        self.assertIn("not issued yet", alert["message"])
