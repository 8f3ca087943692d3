"""Portugal, the two watches (issue 13 items 1 and 7, docs/mapping-rules.md §14 and §19): a sale that
reaches its legal deadline (5 working days, art. 36(1)(a) CIVA) without an issued document gets one
activity for the account's responsible; an invoice posted for an order whose document was issued at
confirmation and that says something else shows it, gets an activity, and the reconciliation report
lists it. Through the real outbox and the InvoiceXpress simulator."""

from datetime import datetime, timedelta

from freezegun import freeze_time

from odoo import Command, fields
from odoo.tests import tagged

from .common import FiscalTestCommon

DEADLINE = "fiscal_invoice_connector.mail_activity_type_fiscal_deadline"
BOOKS = "fiscal_invoice_connector.mail_activity_type_fiscal_books"


class PortugalWatchCases:
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company.partner_id.tz = "Europe/Lisbon"
        cls.responsible = cls.env["res.users"].create(
            {"name": "Contabilista", "login": f"contabilista-{cls.provider}", "email": "conta@example.com"}
        )
        cls.account.responsible_user_id = cls.responsible

    def activities(self, record, xmlid):
        kind = self.env.ref(xmlid)
        return record.sudo().activity_ids.filtered(lambda a: a.activity_type_id == kind)

    def watch(self):
        self.env.flush_all()
        self.env["fiscal.document"].sudo()._cron_watch_deadline()
        self.env.invalidate_all()

    # -- item 1: the legal deadline -----------------------------------------------------------
    def test_sale_not_issued_in_five_working_days_gets_one_activity(self):
        """Sold at 00:30 in Lisbon on Monday 8 June 2026 (still Sunday in UTC); Wednesday 10 June, Dia de
        Portugal, is a holiday in the company's calendar. The fifth working day is Tuesday 16 June (counted
        in UTC, or without the holiday, it would be Monday 15)."""
        self.account.trigger = "manual"
        calendar = self.company.resource_calendar_id
        self.assertTrue(calendar.attendance_ids, "the company's working calendar (resource module)")
        self.env["resource.calendar.leaves"].sudo().create(
            {
                "name": "Dia de Portugal",
                "calendar_id": calendar.id,
                "company_id": self.company.id,
                "date_from": datetime(2026, 6, 9, 23, 0),  # 10 June, Lisbon (UTC+1)
                "date_to": datetime(2026, 6, 10, 22, 59),
                "time_type": "leave",
            }
        )
        # The account existed before these sales (the watch ignores sales older than the account).
        self.env.cr.execute(
            "UPDATE fiscal_provider_account SET create_date = '2026-01-01' WHERE id = %s", [self.account.id]
        )
        self.account.invalidate_recordset(["create_date"])
        with freeze_time("2026-06-07 23:30:00"):
            late, fixed, issued = (self.confirm(self.make_order(qty=1, price=10.0)) for _ in range(3))
        # One is issued in time (Issue now), dated today and stating the sale's date as its supply date.
        self.issue_now(issued)
        self.assertEqual(issued.fiscal_document_id.state, "issued", issued.fiscal_document_id.last_error)

        with freeze_time("2026-06-15 12:00:00"):
            self.watch()
        self.assertFalse(self.activities(late | fixed | issued, DEADLINE), "Monday 15: within the deadline")

        with freeze_time("2026-06-16 08:00:00"):
            self.watch()
            self.watch()  # the next run says nothing again
        for order in (late, fixed):
            activity = self.activities(order, DEADLINE)
            self.assertEqual(len(activity), 1, "one activity per sale, not one per run")
            self.assertEqual(activity.user_id, self.responsible)
            self.assertEqual(activity.date_deadline, fields.Date.to_date("2026-06-16"))
            self.assertIn("by 2026-06-16", activity.note)
            self.assertIn("Issue fiscal document now", activity.note)
        self.assertFalse(self.activities(issued, DEADLINE), "an issued sale is never flagged")

        # Done by its responsible: never re-created.
        self.activities(late, DEADLINE).with_user(self.responsible).sudo().action_feedback("Vou tratar")
        with freeze_time("2026-06-17 08:00:00"):
            self.watch()
        self.assertFalse(self.activities(late, DEADLINE))

        # Issued late: its activity has no object any more and is closed.
        self.issue_now(fixed)
        self.assertEqual(fixed.fiscal_document_id.state, "issued", fixed.fiscal_document_id.last_error)
        self.assertFalse(self.activities(fixed, DEADLINE))

    def test_stuck_document_is_flagged_with_its_error(self):
        """A sale whose document failed: the activity says why and what to do."""
        self.env.cr.execute(
            "UPDATE fiscal_provider_account SET create_date = '2026-01-01' WHERE id = %s", [self.account.id]
        )
        self.account.invalidate_recordset(["create_date"])
        self.customer.with_context(no_vat_validation=True).vat = "PT508000008"  # invalid NIF: refused
        with freeze_time("2026-06-01 10:00:00"):
            order = self.confirm(self.make_order(qty=1, price=10.0))
        self.run_queue()
        self.assertEqual(order.fiscal_document_id.state, "error")
        with freeze_time("2026-06-09 10:00:00"):  # Monday 1 -> Monday 8 is the fifth working day
            self.watch()
        (activity,) = self.activities(order, DEADLINE)
        self.assertIn("is invalid: fix it on the contact", activity.note)
        self.assertIn("Retry", activity.note)

    def test_invoice_of_no_order_is_watched_and_an_order_s_invoice_is_not(self):
        """An invoice made without an order is the sale; an order's invoice (even with a line of no order
        line) is not: its order is watched."""
        self.account.trigger = "manual"
        self.env.cr.execute(
            "UPDATE fiscal_provider_account SET create_date = '2026-01-01' WHERE id = %s", [self.account.id]
        )
        self.account.invalidate_recordset(["create_date"])
        with freeze_time("2026-06-01 10:00:00"):
            direct = self.env["account.move"].create(
                {
                    "move_type": "out_invoice",
                    "partner_id": self.customer.id,
                    "invoice_date": "2026-06-01",
                    "currency_id": (self.pricelist.currency_id or self.company.currency_id).id,
                    "invoice_line_ids": [
                        Command.create({"product_id": self.product.id, "quantity": 1, "price_unit": 10.0})
                    ],
                }
            )
            direct.action_post()
            order = self.confirm(self.make_order(qty=1, price=10.0))
            billed = order._create_invoices()
            billed.invoice_line_ids = [Command.create({"name": "Portes", "quantity": 1, "price_unit": 3.0})]
            billed.action_post()
        with freeze_time("2026-06-09 10:00:00"):
            self.watch()
        self.assertEqual(len(self.activities(direct, DEADLINE)), 1)
        self.assertEqual(len(self.activities(order, DEADLINE)), 1)
        self.assertFalse(self.activities(billed, DEADLINE), "the order is the sale, not its invoice")

    def issue_now(self, order):
        action = order.action_issue_fiscal_now()
        self.env[action["res_model"]].with_context(action["context"]).create({}).action_issue()
        self.run_queue()

    # -- item 1: the dates of a late issue (verification of the rules the deadline relies on) ------
    def test_backfill_and_payment_issue_today_with_the_sale_date_as_supply_date(self):
        """Sold on 1 July 2026: issued months later by the backfill, or when paid, the document is dated
        the day it is issued and states 1 July as the date of supply."""
        today = self.env["fiscal.mapping"]._company_today(self.company)
        self.account.trigger = "manual"
        with freeze_time("2026-07-01 10:00:00"):
            backfilled = self.confirm(self.make_order(qty=1, price=10.0))
        self.env["fiscal.backfill.wizard"].create(
            {"account_id": self.account.id, "date_from": "2026-06-30", "date_to": "2026-07-02"}
        ).action_enqueue()
        self.run_queue()
        doc = backfilled.fiscal_document_id
        self.assertEqual(doc.state, "issued", doc.last_error)
        (final,) = self.final_at_provider(doc)
        self.assert_dates(final, today, "2026-07-01")

        self.account.trigger = "payment"
        with freeze_time("2026-07-01 10:00:00"):
            invoice = self.invoice_and_post(self.confirm(self.make_order(qty=1, price=20.0)))
        self.assertFalse(invoice._fiscal_documents(), "not before the payment")
        self.pay(invoice)
        self.run_queue()
        doc = invoice._fiscal_documents()
        self.assertEqual(doc.state, "issued", doc.last_error)
        (final,) = self.final_at_provider(doc)
        self.assert_dates(final, today, "2026-07-01")

    def test_queued_date_before_the_series_is_refused_before_sending(self):
        """Issue now dated two days ago, still queued when another document of the series is issued
        today: refused before anything is sent (the wizard's check is made again when sending)."""
        self.account.trigger = "manual"
        today = self.env["fiscal.mapping"]._company_today(self.company)
        early, late = (self.confirm(self.make_order(qty=1, price=10.0)) for _ in range(2))
        for order, day in ((early, today - timedelta(days=2)), (late, today)):
            action = order.action_issue_fiscal_now()
            wizard = self.env[action["res_model"]].with_context(action["context"]).create({})
            wizard.write({"invoice_date": day, "due_date": day})
            wizard.action_issue()
        early.fiscal_document_id.sudo().next_attempt = "2999-01-01 00:00:00"
        self.run_queue()
        self.assertEqual(late.fiscal_document_id.state, "issued", late.fiscal_document_id.last_error)
        self.make_due(early.fiscal_document_id)
        self.run_queue()
        doc = early.fiscal_document_id
        self.assertEqual(doc.state, "error")
        self.assertIn("is before the last document of this series", doc.last_error)
        self.assertFalse(self.sim_docs_for(doc), "nothing sent")

    # -- item 7: order vs books ---------------------------------------------------------------
    def order_of_two(self):
        other = self.make_product(self.tax_23, name="Rolha de cortiça", code="ROLHA-1")
        order = self.make_order(qty=10, price=10.0)
        order.order_line = [Command.create({"product_id": other.id, "product_uom_qty": 1, "price_unit": 5.0})]
        return self.confirm(order)

    def invoice_differently(self, order):
        """8 of 10 delivered, the cork at 4.00 instead of 5.00, and carriage added on the invoice."""
        invoice = order._create_invoices()
        wine, cork = invoice.invoice_line_ids.sorted("id")
        invoice.invoice_line_ids = [
            Command.update(wine.id, {"quantity": 8}),
            Command.update(cork.id, {"price_unit": 4.0}),
            Command.create(
                {"name": "Portes", "quantity": 1, "price_unit": 3.0, "tax_ids": [Command.set(self.tax_23.ids)]}
            ),
        ]
        invoice.action_post()
        return invoice

    def test_invoice_that_differs_from_the_order_document_says_so(self):
        order = self.order_of_two()
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "issued", doc.last_error)
        self.assertFalse(doc.move_id, "issued for the order")

        # An invoice that bills the order as it was: nothing to say.
        same = self.order_of_two()
        self.run_queue()
        same_invoice = self.invoice_and_post(same)
        self.assertFalse(same_invoice.fiscal_books_warning)
        self.assertFalse(self.activities(same_invoice, BOOKS))

        invoice = self.invoice_differently(order)
        self.assertEqual(invoice.fiscal_document_id, doc, "the invoice shows the order's document")
        warning = invoice.fiscal_books_warning
        self.assertTrue(warning, "the invoice shows the difference")
        self.assertIn(f"Fiscal document {doc.number} (total 129.15", warning)
        self.assertIn("(total 107.01)", warning)
        self.assertIn("quantity 10.0 on the document, 8.0 invoiced", warning)
        self.assertIn("price 5.0 (discount 0.0 %) on the document, 4.0", warning)
        self.assertIn("“Portes”", warning)
        self.assertIn("a credit note against", warning)
        self.assertIn("Nothing is issued automatically", warning)
        (activity,) = self.activities(invoice, BOOKS)
        self.assertEqual(activity.user_id, self.responsible)
        self.assertEqual(len(self.sim_docs_for(doc)), 1, "no legal document issued for the difference")
        self.assertEqual(self.env["fiscal.document"].search_count([("sale_order_id", "=", order.id)]), 1)

        # The reconciliation report lists it (the provider and Odoo agree on the document itself).
        today = fields.Date.context_today(self.account)
        report = self.env["fiscal.reconciliation"].create(
            {"account_id": self.account.id, "date_from": today - timedelta(days=1), "date_to": today}
        )
        report.action_compare()
        by_doc = {line.document_id: line for line in report.line_ids}
        self.assertEqual(by_doc[doc].status, "books")
        self.assertIn("quantity 10.0 on the document, 8.0 invoiced", by_doc[doc].note)
        self.assertEqual(by_doc[same.fiscal_document_id].status, "match")

        # Corrected at the provider by hand: marked as handled, the banner and the activity go, the
        # report matches; another invoice of the order brings it back.
        invoice.action_fiscal_books_handled()
        invoice.invalidate_recordset(["fiscal_books_warning"])
        self.assertFalse(invoice.fiscal_books_warning)
        self.assertFalse(self.activities(invoice, BOOKS))
        self.assertIn("marked as handled by", self.chatter_text(invoice))
        report.action_compare()
        self.assertEqual({line.document_id: line for line in report.line_ids}[doc].status, "match")
        second = order._create_invoices() if order.invoice_status == "to invoice" else None
        self.assertTrue(second, "2 bottles left to invoice")
        second.action_post()
        self.assertIn("(total 131.61)", second.fiscal_books_warning or "")
        self.assertNotIn("quantity", second.fiscal_books_warning, "all 10 bottles are invoiced now")

    def test_down_payment_then_final_invoice_agree_with_the_order_document(self):
        """A down payment, then the final invoice deducting it: together they bill the order as issued."""
        order = self.order_of_two()
        self.run_queue()
        self.assertEqual(order.fiscal_document_id.state, "issued", order.fiscal_document_id.last_error)
        Wizard = self.env["sale.advance.payment.inv"].with_context(active_model="sale.order", active_ids=order.ids)
        Wizard.create({"advance_payment_method": "percentage", "amount": 30}).create_invoices()
        down_payment = order.invoice_ids
        down_payment.action_post()
        self.assertFalse(down_payment.fiscal_books_warning, "a down payment is not the sale's invoice")
        Wizard.create({"advance_payment_method": "delivered"}).create_invoices()
        final = order.invoice_ids - down_payment
        final.action_post()
        self.assertFalse(final.fiscal_books_warning)
        self.assertFalse(self.activities(down_payment | final, BOOKS))

    def test_document_issued_after_the_invoice_is_compared_when_issued(self):
        """The invoice is posted while the order's document still waits in the queue: compared once
        the document is issued."""
        order = self.order_of_two()
        invoice = self.invoice_differently(order)
        self.assertFalse(self.activities(invoice, BOOKS), "nothing issued yet to compare with")
        self.run_queue()
        self.assertEqual(order.fiscal_document_id.state, "issued")
        (activity,) = self.activities(invoice, BOOKS)
        self.assertIn("8.0 invoiced", activity.note)


@tagged("post_install", "-at_install", "fiscal_portugal")
class TestPortugalWatchInvoiceXpress(PortugalWatchCases, FiscalTestCommon):
    provider = "invoicexpress"

    def assert_dates(self, final, issued, supplied):
        self.assertEqual(final["date"], issued.strftime("%d/%m/%Y"))
        supplied = datetime.strptime(supplied, "%Y-%m-%d").strftime("%d/%m/%Y")
        self.assertIn(f"Data de fornecimento: {supplied}", final["observations"])


@tagged("post_install", "-at_install", "fiscal_portugal")
class TestPortugalWatchVendus(PortugalWatchCases, FiscalTestCommon):
    provider = "vendus"

    def assert_dates(self, final, issued, supplied):
        self.assertEqual(final["date"], issued.isoformat())
        self.assertEqual(final["date_supply"], supplied)
