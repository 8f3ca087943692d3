"""What orders and invoices show of their fiscal documents: the right document, its status
right after each transition, the PDF stored once and reachable from each of them, lists
that cost the same whatever their documents, and open forms told when a document changes."""

import json
from types import SimpleNamespace
from unittest.mock import patch

from lxml import etree

from odoo import Command
from odoo.tests import tagged

from ..models.fiscal_document import LIVE_CHANNEL, LIVE_NOTIFICATION
from .common import FiscalTestCommon


@tagged("post_install", "-at_install")
class TestFiscalSources(FiscalTestCommon):
    # -- helpers -----------------------------------------------------------------
    def pdfs_of(self, *records):
        """The PDF files attached to any of ``records``."""
        keys = {(r._name, r.id) for r in records}
        pdfs = self.env["ir.attachment"].sudo().search([("mimetype", "=", "application/pdf")])
        return pdfs.filtered(lambda a: (a.res_model, a.res_id) in keys)

    def live_notifications(self):
        """The records whose open forms are told to reload when this transaction commits."""
        self.env.flush_all()
        self.env.cr.precommit.run()  # what a commit runs first: builds the bus messages
        rows = self.env["bus.bus"].sudo().search([], order="id")
        found = set()
        for row in rows:
            message = json.loads(row.message)
            if message["type"] == LIVE_NOTIFICATION:
                channel = json.loads(row.channel)
                self.assertEqual(channel[-1], LIVE_CHANNEL)
                found.add((message["payload"]["model"], message["payload"]["id"]))
        rows.unlink()
        return found

    def list_queries(self, model, domain, **context):
        """Queries the web client runs to open a list view of ``model`` (80 records)."""
        Model = self.env[model].with_context(**context)
        views = Model.get_views([(False, "list")])
        arch = etree.fromstring(views["views"]["list"]["arch"])
        fields = Model.fields_get()
        spec = {}
        for node in arch.xpath("/list/field"):
            name = node.get("name")
            kind = fields[name]["type"]
            spec[name] = {"fields": {"display_name": {}}} if kind == "many2one" else {}
            if kind in ("one2many", "many2many"):
                spec[name] = {"fields": {"display_name": {}}}
        self.env.invalidate_all()
        Model.web_search_read(domain, spec, limit=80)  # warm-up (caches of views, rules, translations)
        self.env.invalidate_all()
        before = self.env.cr.sql_log_count
        result = Model.web_search_read(domain, spec, limit=80)
        count = self.env.cr.sql_log_count - before
        self.assertEqual(result["length"], 80)
        return count, result["records"]

    # -- status right after each transition -----------------------------------------
    def test_status_follows_each_transition_on_the_order_and_its_invoice(self):
        self.sim.inject(503, count=1)
        order = self.confirm(self.make_order())
        doc = order.fiscal_document_id
        self.assertEqual((order.fiscal_state, order.fiscal_number), ("to_send", False))
        self.assertIn(order, self.env["sale.order"].search([("fiscal_state", "=", "to_send")]))
        self.assertFalse(self.chatter_text(order).count("queued"), "no chatter message in the user's transaction")
        self.run_queue()  # the provider answers 503: still waiting, with the reason kept
        self.assertIn(order.fiscal_state, ("to_send", "sending"))
        self.assertTrue(order.fiscal_error)
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(order.fiscal_state, "issued", order.fiscal_error)
        self.assertEqual(order.fiscal_number, doc.number)
        self.assertEqual(order.fiscal_atcud, doc.atcud)
        self.assertEqual(order.fiscal_pdf_id, doc.pdf_attachment_id)
        self.assertFalse(order.fiscal_error)
        self.assertEqual(self.env["sale.order"].search([("fiscal_number", "=", doc.number)]), order)
        # The invoice of that order shows the order's document (no second one), and follows it.
        invoice = self.invoice_and_post(order)
        self.assertEqual(invoice.fiscal_document_id, doc)
        self.assertEqual((invoice.fiscal_state, invoice.fiscal_number), ("issued", doc.number))
        self.assertEqual(invoice.fiscal_pdf_id, doc.pdf_attachment_id)
        self.live_notifications()
        doc.action_request_cancel("Cliente desistiu")
        self.assertEqual((order.fiscal_state, invoice.fiscal_state), ("to_cancel", "to_cancel"))
        self.assertEqual(
            self.live_notifications(),
            {("sale.order", order.id), ("account.move", invoice.id)},
            "the open forms of the order and of the invoice showing its document are told",
        )
        self.run_queue()
        self.assertEqual((order.fiscal_state, invoice.fiscal_state), ("cancelled", "cancelled"), doc.last_error)
        self.assertIn(invoice, self.env["account.move"].search([("fiscal_state", "=", "cancelled")]))

    def test_confirming_only_inserts_the_outbox_row_with_no_chatter_on_the_order(self):
        """The user's transaction: one row in the outbox, the order's status on it, and nothing
        else a user sees (no note, no follower, no message on the document): as plain Odoo."""
        Message = self.env["mail.message"].sudo()
        self.account.trigger = "manual"
        plain = self.make_order()
        before = Message.search_count([])
        self.confirm(plain)
        plain_messages = Message.search_count([]) - before
        self.account.trigger = "order_confirm"
        order = self.make_order()
        docs_before = self.env["fiscal.document"].search_count([])
        before = Message.search_count([])
        self.confirm(order)
        self.assertEqual(self.env["fiscal.document"].search_count([]), docs_before + 1, "exactly one outbox row")
        self.assertEqual(Message.search_count([]) - before, plain_messages, "no message beyond plain Odoo's")
        doc = order.fiscal_document_id
        self.assertEqual((doc.sale_order_id, order.fiscal_state), (order, "to_send"))
        self.assertFalse(doc.sudo().message_ids)
        self.assertFalse(doc.sudo().message_follower_ids)
        self.assertEqual(self.sim.requests, [])

    def test_issuing_is_one_history_entry_and_one_note_per_event(self):
        """The queue's transitions a user cares about: issued (number), then the PDF. The
        document's history shows the issue once (not "Waiting -> Sending" before it); the
        order gets one note for each event, and stages that brought nothing (a PDF still being
        rendered) leave no trace."""
        order = self.confirm(self.make_order())
        doc = order.fiscal_document_id
        self.run_queue()
        self.assertEqual(doc.state, "issued", doc.last_error)
        state_field = self.env["ir.model.fields"]._get("fiscal.document", "state")
        changes = doc.sudo().message_ids.tracking_value_ids.filtered(lambda t: t.field_id == state_field)
        self.assertEqual(
            [(c.old_value_char, c.new_value_char) for c in changes], [("Sending", "Issued")], "one history entry"
        )
        notes = order.message_ids.filtered(lambda m: "Fiscal document" in (m.body or ""))
        self.assertEqual(len(notes), 2, notes.mapped("body"))
        self.assertEqual(notes.attachment_ids, doc.pdf_attachment_id, "the PDF comes with its note")

    def test_status_shows_a_rejection_then_the_retry(self):
        order = self.confirm(self.make_order(partner=self.customer.copy({"zip": "12345"})))
        self.run_queue()
        self.assertEqual(order.fiscal_state, "error")
        self.assertIn("Postal Code", order.fiscal_error)
        self.assertEqual(self.env["sale.order"].search([("fiscal_state", "in", ("error", "failed"))]), order)
        order.partner_id.zip = "1100-053"
        order.action_retry_fiscal()
        self.assertEqual((order.fiscal_state, order.fiscal_error), ("to_send", False))
        self.run_queue()
        self.assertEqual(order.fiscal_state, "issued", order.fiscal_error)

    # -- the PDF: stored once, reachable from the order, the invoice, the document ------
    def test_pdf_stored_once_and_reachable_from_order_invoice_and_document(self):
        self.account.trigger = "invoice_post"
        order = self.confirm(self.make_order())
        invoice = self.invoice_and_post(order)
        doc = invoice.fiscal_document_id
        self.assertEqual((doc.move_id, doc.sale_order_id), (invoice, order))
        self.run_queue()
        self.assertEqual(doc.state, "issued", doc.last_error)
        pdf = doc.pdf_attachment_id
        self.assertTrue(pdf.raw.startswith(b"%PDF"))
        self.assertEqual(self.pdfs_of(order, invoice, doc), pdf, "one PDF, not one per record")
        self.assertEqual((order.fiscal_pdf_id, invoice.fiscal_pdf_id), (pdf, pdf))
        for record in (order, invoice):
            self.assertEqual(record.action_open_fiscal_pdf()["url"], f"/web/content/{pdf.id}?download=false")
        # One chatter message brings it, on the invoice.
        messages = self.env["mail.message"].sudo().search([("attachment_ids", "in", pdf.ids)])
        self.assertEqual(len(messages), 1)
        self.assertEqual((messages.model, messages.res_id), ("account.move", invoice.id))
        self.assertEqual((order.fiscal_number, invoice.fiscal_number), (doc.number, doc.number))

    # -- the right number in the right place -------------------------------------------
    def test_paid_invoice_shows_its_own_number_with_receipts_and_credit_notes_beside(self):
        self.account.write({"trigger": "invoice_post", "issue_receipts": True})
        order = self.confirm(self.make_order(qty=4, price=50.0))
        invoice = self.invoice_and_post(order)
        original = invoice.fiscal_document_id
        self.run_queue()
        self.assertEqual(original.state, "issued", original.last_error)
        self.pay(invoice, amount=100.0)
        receipt = self.env["fiscal.document"].search([("related_document_id", "=", original.id)])
        self.assertEqual(receipt.kind, "receipt")
        self.assertEqual(self.run_until(receipt, ("issued",)), "issued", receipt.last_error)
        self.assertNotEqual(receipt.number, original.number)
        # The invoice keeps its own legal number and PDF; the receipt is beside it.
        self.assertEqual(invoice.fiscal_document_id, original)
        self.assertEqual((invoice.fiscal_number, invoice.fiscal_pdf_id), (original.number, original.pdf_attachment_id))
        self.assertEqual(order.fiscal_number, original.number)
        self.assertEqual((invoice.fiscal_related_count, invoice.fiscal_related_document_ids), (1, receipt))
        action = invoice.action_view_fiscal_related_documents()
        self.assertEqual((action["res_model"], action["res_id"]), ("fiscal.document", receipt.id))
        self.assertEqual(invoice.action_view_fiscal_documents()["res_id"], original.id)
        self.assertEqual(
            invoice.action_open_fiscal_pdf()["url"], f"/web/content/{original.pdf_attachment_id.id}?download=false"
        )
        # A credit note shows its own fiscal credit note; the invoice lists it beside the receipt.
        refund = self.refund(invoice, {self.product: 1})
        credit = refund.fiscal_document_id
        self.assertEqual((credit.kind, credit.move_id), ("credit_note", refund))
        self.assertEqual(self.run_until(credit, ("issued",)), "issued", credit.last_error)
        self.assertEqual(refund.fiscal_number, credit.number)
        self.assertNotEqual(refund.fiscal_number, original.number)
        self.assertEqual(invoice.fiscal_number, original.number)
        self.assertEqual(invoice.fiscal_related_document_ids, receipt | credit)
        self.assertIn(credit, order.fiscal_related_document_ids)
        self.assertEqual(order.fiscal_document_id, original)

    # -- lists ---------------------------------------------------------------------------
    def test_list_of_80_orders_costs_the_same_with_or_without_fiscal_documents(self):
        self.account.trigger = "manual"
        orders = self.env["sale.order"].create(
            [
                {
                    "partner_id": self.customer.id,
                    "order_line": [Command.create({"product_id": self.product.id, "product_uom_qty": 1})],
                }
                for _ in range(80)
            ]
        )
        orders.action_confirm()
        domain = [("id", "in", orders.ids)]
        without, rows = self.list_queries("sale.order", domain)
        self.assertFalse([r for r in rows if r.get("fiscal_state")])
        docs = self.env["fiscal.document"]._enqueue_many(self.account, orders)
        self.assertEqual(len(docs), 80)
        # All kinds of states and numbers.
        for index, doc in enumerate(docs):
            state = ("to_send", "issued", "error", "cancelled")[index % 4]
            doc.sudo().write({"state": state, "number": f"FT A/{index}" if state == "issued" else False})
        self.env.flush_all()
        with_docs, rows = self.list_queries("sale.order", domain)
        self.assertEqual(len([r for r in rows if r["fiscal_state"] == "issued"]), 20)
        self.assertEqual(with_docs, without, "opening the list costs the same whatever the fiscal documents")

    def test_list_of_80_invoices_costs_the_same_with_or_without_fiscal_documents(self):
        self.account.trigger = "manual"
        invoices = self.env["account.move"].create(
            [
                {
                    "move_type": "out_invoice",
                    "partner_id": self.customer.id,
                    "invoice_line_ids": [Command.create({"product_id": self.product.id, "price_unit": 10.0})],
                }
                for _ in range(80)
            ]
        )
        invoices.action_post()
        domain = [("id", "in", invoices.ids)]
        without, _rows = self.list_queries("account.move", domain, default_move_type="out_invoice")
        docs = self.env["fiscal.document"]._enqueue_many(self.account, invoices)
        for index, doc in enumerate(docs):
            state = ("to_send", "issued", "error", "failed")[index % 4]
            doc.sudo().write({"state": state, "number": f"FT A/{index}" if state == "issued" else False})
        self.env.flush_all()
        with_docs, rows = self.list_queries("account.move", domain, default_move_type="out_invoice")
        self.assertEqual(len([r for r in rows if r["fiscal_number"]]), 20)
        self.assertEqual(with_docs, without, "opening the list costs the same whatever the fiscal documents")

    # -- live ----------------------------------------------------------------------------
    def test_open_forms_are_told_at_each_change(self):
        self.account.trigger = "invoice_post"
        self.live_notifications()
        order = self.confirm(self.make_order())
        invoice = self.invoice_and_post(order)
        doc = invoice.fiscal_document_id
        self.assertEqual(
            self.live_notifications(), set(), "queued in the user's transaction: their form reloads with the action"
        )
        with patch.object(type(self.env["bus.bus"]), "_sendone", autospec=True) as sendone:
            self.run_queue()  # sending, issued, PDF: each commit tells the open forms
        self.assertEqual(doc.state, "issued", doc.last_error)
        told = {(args[1][0]._name, args[1][0].id) for args, _kw in sendone.call_args_list}
        self.assertEqual(told, {("sale.order", order.id), ("account.move", invoice.id)})
        self.assertGreaterEqual(len(sendone.call_args_list), 4, "each transition reaches the open forms")
        # Forms subscribe to what their user may read, nothing else.
        websocket = self.env["ir.websocket"]
        fake_request = SimpleNamespace(session=SimpleNamespace(uid=self.env.uid))
        with patch("odoo.addons.bus.models.ir_websocket.request", fake_request):
            channels = websocket._build_bus_channel_list(
                [f"{LIVE_CHANNEL}:sale.order:{order.id}", f"{LIVE_CHANNEL}:res.partner:{self.customer.id}"]
            )
            self.assertIn((order, LIVE_CHANNEL), channels)
            self.assertNotIn((self.customer, LIVE_CHANNEL), channels)
            salesman = (
                self.env["res.users"]
                .sudo()
                .create(
                    {
                        "name": "Vendedor",
                        "login": "vendedor-fiscal",
                        "company_id": self.company.id,
                        "company_ids": [Command.set(self.company.ids)],
                        "group_ids": [Command.set(self.env.ref("sales_team.group_sale_salesman_all_leads").ids)],
                    }
                )
            )
            other = self.env["res.company"].sudo().create({"name": "Outra empresa"})
            stranger = self.env["sale.order"].sudo().create({"partner_id": self.customer.id, "company_id": other.id})
            channels = websocket.with_user(salesman)._build_bus_channel_list(
                [f"{LIVE_CHANNEL}:sale.order:{order.id}", f"{LIVE_CHANNEL}:sale.order:{stranger.id}"]
            )
            self.assertIn((order, LIVE_CHANNEL), channels, "the salesman reads this order")
            self.assertNotIn((stranger, LIVE_CHANNEL), channels, "a record of another company is not reachable")

    # -- routing: decided when the sale is made, and for paid invoices when the payment policy fires
    def test_paid_invoice_routing_rule_applies_when_the_payment_policy_fires(self):
        self.account.trigger = "payment"
        paid_account = self.account.copy({"name": "Pagos", "trigger": "payment"})
        self.env["fiscal.routing.rule"].create(
            {"company_id": self.company.id, "payment_state": "paid", "account_id": paid_account.id}
        )
        invoice = self.env["account.move"].create(
            {
                "move_type": "out_invoice",
                "partner_id": self.customer.id,
                "invoice_line_ids": [Command.create({"product_id": self.product.id, "price_unit": 10.0})],
            }
        )
        invoice.action_post()
        self.assertEqual(invoice.fiscal_account_id, self.account, "not paid: the company's account")
        self.assertFalse(invoice.fiscal_document_id)
        self.pay(invoice)
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        self.assertEqual(invoice.fiscal_account_id, paid_account)
        self.assertEqual(invoice.fiscal_document_id.account_id, paid_account)
        self.assertEqual(invoice.fiscal_state, "to_send")
