from datetime import date
from unittest.mock import patch

import psycopg2

from odoo.tests import tagged
from odoo.tools import mute_logger

from ..providers.invoicexpress import InvoiceXpressProvider
from .common import FiscalTestCommon


@tagged("post_install", "-at_install")
class TestOutbox(FiscalTestCommon):
    def test_confirming_an_order_only_queues_and_calls_no_provider(self):
        order = self.confirm(self.make_order())
        doc = order.fiscal_document_id
        self.assertEqual(order.state, "sale")
        self.assertEqual(doc.state, "to_send")
        self.assertEqual(order.fiscal_state, "to_send")
        self.assertTrue(doc.reference.startswith("ODOO-"))
        self.assertEqual(self.sim.requests, [], "no network call may happen in the user's transaction")

    def test_cron_issues_document_with_number_atcud_and_pdf(self):
        order = self.confirm(self.make_order(qty=2, price=100.0))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "issued", doc.last_error)
        self.assertRegex(doc.number, r"^FT A/\d+$")
        self.assertRegex(doc.atcud, r"^[A-Z0-9]{8}-\d+$")
        self.assertEqual(order.fiscal_number, doc.number)
        # The provider computed the same total as Odoo (2 x 100 + 23 % VAT).
        self.assertAlmostEqual(doc.remote_total, 246.0)
        self.assertAlmostEqual(order.amount_total, 246.0)
        finals = self.final_at_provider(doc)
        self.assertEqual(len(finals), 1)
        self.assertEqual(finals[0]["client"]["fiscal_id"], "508000009")
        self.assertEqual(finals[0]["items"][0]["tax"]["name"], "IVA23")
        # PDF fetched through the 202 -> 200 polling and attached to the order.
        self.assertEqual(doc.pdf_state, "done")
        self.assertTrue(doc.pdf_attachment_id.raw.startswith(b"%PDF"))
        order_pdfs = (
            self.env["ir.attachment"]
            .sudo()
            .search([("res_model", "=", "sale.order"), ("res_id", "=", order.id), ("mimetype", "=", "application/pdf")])
        )
        self.assertEqual(len(order_pdfs), 1)
        self.assertIn(doc.number, self.chatter_text(order))
        self.assertTrue(doc.attempt_ids, "every attempt is logged")
        self.assertIn("POST /invoices.json", doc.attempt_ids[0].summary)

    def test_provider_down_keeps_order_and_retries_later_without_duplicate(self):
        self.sim.inject(503, count=None)
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(order.state, "sale", "the order is never blocked by the provider")
        self.assertIn(doc.state, ("to_send", "sending"))
        self.assertEqual(doc.error_kind, "transient")
        self.assertGreater(doc.next_attempt, doc.create_date, "retried later, with backoff")
        # The queue does not hammer the provider before the next attempt time.
        calls = len(self.sim.requests)
        self.run_queue()
        self.assertEqual(len(self.sim.requests), calls)
        # The provider comes back.
        self.sim.clear_faults()
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(doc.state, "issued")
        self.assertEqual(len(self.final_at_provider(doc)), 1)

    def test_answer_lost_after_create_never_gives_two_final_documents(self):
        # The provider creates the draft but the connection dies before we read the id.
        self.sim.inject("reset", path_contains="/invoices.json", method="POST", when="after")
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "sending")
        self.assertTrue(doc.create_sent)
        self.assertFalse(doc.remote_id)
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(doc.state, "issued", doc.last_error)
        self.assertEqual(len(self.final_at_provider(doc)), 1, "exactly one legal document")
        probes = [r for r in self.sim.requests if r["method"] == "GET" and r["path"].startswith("/invoices.json")]
        self.assertTrue(probes, "the provider is probed by our reference before re-sending")

    def test_answer_lost_after_finalize_is_reconciled_as_success(self):
        self.sim.inject("reset", path_contains="change-state", when="after")
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "sending")
        self.assertTrue(doc.remote_id)
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(doc.state, "issued", doc.last_error)
        self.assertEqual(len(self.final_at_provider(doc)), 1)
        self.assertEqual(len(self.sim_docs_for(doc)), 1, "resumed, not restarted: one document at the provider")

    def test_validation_error_is_shown_on_document_and_chatter_and_not_retried(self):
        bad_zip = self.customer.copy({"zip": "1100", "vat": "PT255530307"})
        order = self.confirm(self.make_order(partner=bad_zip))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "error")
        self.assertEqual(doc.error_kind, "validation")
        self.assertIn("Postal Code must have the following format DDDD-DDD", doc.last_error)
        self.assertEqual(order.fiscal_state, "error")
        self.assertIn("Postal Code must have the following format", self.chatter_text(order))
        calls = len(self.sim.requests)
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(len(self.sim.requests), calls, "validation errors wait for a fix")
        # The user fixes the address and retries.
        bad_zip.zip = "1100-053"
        doc.action_retry()
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(doc.state, "issued")

    def test_zero_vat_line_without_exemption_reason_is_refused_before_sending(self):
        tax_zero = self.tax_exempt.copy({"fiscal_exemption_code": False, "name": "0% no reason"})
        product = self.make_product(tax_zero)
        order = self.confirm(self.make_order(product=product))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "error")
        self.assertIn("exemption reason", doc.last_error)
        self.assertFalse([r for r in self.sim.requests if r["method"] == "POST"])

    def test_exempt_line_sends_its_exemption_code(self):
        product = self.make_product(self.tax_exempt)
        order = self.confirm(self.make_order(product=product))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "issued", doc.last_error)
        self.assertEqual(self.final_at_provider(doc)[0]["tax_exemption"], "M07")

    def test_private_person_without_nif_is_issued_to_final_consumer(self):
        # Issue 13: only an empty NIF on a private person makes a final consumer (an invalid NIF on a
        # company is refused: test_portugal.py).
        partner = self.customer.copy({"vat": False, "name": "Cliente sem NIF", "is_company": False})
        order = self.confirm(self.make_order(partner=partner))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "issued", doc.last_error)
        self.assertFalse(self.final_at_provider(doc)[0]["client"].get("fiscal_id"))

    def test_two_live_documents_for_one_source_are_impossible(self):
        order = self.confirm(self.make_order())
        doc = order.fiscal_document_id
        with self.assertRaises(psycopg2.IntegrityError), mute_logger("odoo.sql_db"), self.env.cr.savepoint():
            self.env["fiscal.document"].sudo().create(
                {
                    "company_id": doc.company_id.id,
                    "account_id": doc.account_id.id,
                    "sale_order_id": order.id,
                    "kind": "invoice",
                }
            )
        # Enqueueing again (a second click, a replayed hook) returns the same document.
        again = self.env["fiscal.document"]._enqueue(self.account, order=order)
        self.assertEqual(again, doc)

    def test_transient_failures_end_failed_with_an_activity(self):
        self.account.max_attempts = 2
        self.sim.inject(502, count=None)
        order = self.confirm(self.make_order())
        doc = order.fiscal_document_id
        self.run_queue()
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(doc.state, "failed")
        self.assertEqual(doc.attempt_count, 2)
        self.assertTrue(doc.activity_ids, "the responsible accountant gets an activity")
        self.assertIn("failed after 2 attempts", self.chatter_text(order))
        self.assertEqual(order.state, "sale")

    def test_rate_limited_waits_retry_after(self):
        self.sim.inject(429, retry_after=120)
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.error_kind, "rate_limited")
        wait = (doc.next_attempt - doc.write_date).total_seconds()
        self.assertGreaterEqual(wait, 110)

    def test_malformed_answer_is_transient(self):
        self.sim.inject("malformed", path_contains="/invoices.json", method="POST")
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertIn(doc.state, ("to_send", "sending"))
        self.assertEqual(doc.error_kind, "transient")
        self.assertIn("unreadable answer", doc.last_error)
        self.make_due(doc)
        self.run_queue()
        self.assertEqual(doc.state, "issued")
        self.assertEqual(len(self.final_at_provider(doc)), 1)

    def test_issue_now_wizard_uses_the_dates_given(self):
        self.account.trigger = "manual"
        order = self.confirm(self.make_order())
        self.assertFalse(order.fiscal_document_id)
        action = order.action_issue_fiscal_now()
        wizard = (
            self.env[action["res_model"]]
            .with_context(action["context"])
            .create({"invoice_date": date(2026, 11, 2), "due_date": date(2026, 12, 2)})
        )
        wizard.action_issue()
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "issued", doc.last_error)
        final = self.final_at_provider(doc)[0]
        self.assertEqual((final["date"], final["due_date"]), ("02/11/2026", "02/12/2026"))

    def test_cancel_issued_document(self):
        order = self.confirm(self.make_order())
        self.run_queue()
        doc = order.fiscal_document_id
        wizard = self.env["fiscal.cancel.wizard"].create(
            {"document_ids": [(6, 0, doc.ids)], "reason": "Wrong customer"}
        )
        wizard.action_cancel()
        self.run_queue()
        self.assertEqual(doc.state, "cancelled")
        self.assertEqual(self.sim_docs_for(doc)[0]["status"], "canceled")


@tagged("post_install", "-at_install")
class TestTotalsGuard(FiscalTestCommon):
    """The draft guard, the last line of defence: an unknown tax name is now refused before sending
    (test_portugal.py), so these tests skip that check to reach the guard, as a tax changed at
    InvoiceXpress between the check and the draft would."""

    def setUp(self):
        super().setUp()
        patcher = patch.object(InvoiceXpressProvider, "_check_tax_names", lambda provider, doc: None)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_draft_with_other_totals_stays_draft_with_both_figures(self):
        # A tax name the provider does not know: InvoiceXpress falls back to its default (23 %).
        tax_13 = self.tax_23.copy({"name": "IVA 13% (test)", "amount": 13.0, "fiscal_tax_name": "IVA-UNKNOWN"})
        order = self.confirm(self.make_order(product=self.make_product(tax_13, code="REST"), qty=1, price=100.0))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.state, "error")
        self.assertIn("Totals differ", doc.last_error)
        self.assertIn("113", doc.last_error)
        self.assertIn("123", doc.last_error)
        self.assertEqual(self.remote_statuses(doc), ["draft"], "nothing became final")
        # The accountant maps the tax; the wrong draft is replaced, the new one finalized.
        tax_13.fiscal_tax_name = "IVA13"
        doc.action_retry()
        self.run_queue()
        self.assertEqual(doc.state, "issued", doc.last_error)
        self.assertEqual(self.remote_statuses(doc), ["deleted", "final"])
        self.assertAlmostEqual(doc.remote_total, 113.0)

    def test_tolerance_accepts_a_small_difference(self):
        self.account.totals_tolerance = 20.0
        tax_13 = self.tax_23.copy({"name": "IVA 13% (t2)", "amount": 13.0, "fiscal_tax_name": "IVA-UNKNOWN"})
        order = self.confirm(self.make_order(product=self.make_product(tax_13, code="REST2"), qty=1, price=100.0))
        self.run_queue()
        self.assertEqual(order.fiscal_document_id.state, "issued")
