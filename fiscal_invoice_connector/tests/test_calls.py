"""Requests per document (issue 15): what each provider is asked, counted in the simulators'
request logs through the real outbox. Files behind the links a service gives (pre-signed
storage, /simulator-files/) are outside the API budget and counted apart."""

import threading

from odoo.tests import tagged

from .common import FiscalTestCommon


def api_calls(sim):
    return [r for r in sim.requests if not r["path"].startswith("/simulator-files/")]


def client_calls(sim):
    return [(r["method"], r["path"].split("?")[0]) for r in sim.requests if r["path"].startswith("/clients")]


def queries():
    """SQL queries run by this thread so far (Odoo's cursor counts them per thread once asked to)."""
    return threading.current_thread().query_count


@tagged("post_install", "-at_install")
class TestCallsInvoiceXpress(FiscalTestCommon):
    def issue(self, partner=None):
        order = self.confirm(self.make_order(partner=partner))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual((doc.state, doc.pdf_state), ("issued", "done"), doc.last_error)
        return doc

    def test_second_document_for_an_unchanged_customer_sends_no_client_call(self):
        self.issue()
        self.assertEqual([m for m, _p in client_calls(self.sim)], ["GET", "POST"], "a new customer: found or created")
        self.sim.requests.clear()
        self.issue()
        self.assertEqual(client_calls(self.sim), [], "unchanged since it was sent: neither looked up nor updated")
        self.assertEqual(len(self.sim.clients), 1)

    def test_changed_customer_is_updated_once(self):
        self.issue()
        (client_id,) = self.sim.clients
        self.sim.requests.clear()
        self.customer.write({"email": "compras@cliente.pt", "street": "Rua Nova 1"})
        self.confirm(self.make_order())
        self.confirm(self.make_order())
        self.run_queue()
        self.assertEqual(client_calls(self.sim), [("PUT", f"/clients/{client_id}.json")], "one update, no lookup")
        self.assertEqual(
            (self.sim.clients[client_id]["email"], self.sim.clients[client_id]["address"]),
            ("compras@cliente.pt", "Rua Nova 1"),
        )
        self.sim.requests.clear()
        self.issue()
        self.assertEqual(client_calls(self.sim), [], "sent already: nothing more")

    def test_final_document_costs_three_calls_and_one_pdf_poll_with_the_default_delay(self):
        """The PDF renders for a while after finalizing (no fixed number of 202s): with the account's
        default delay, the first poll finds it ready."""
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("fiscal_invoice_connector.pdf_ready_after", False)  # the provider's default
        self.addCleanup(setattr, self.sim, "pdf_polls_before_ready", self.sim.pdf_polls_before_ready)
        self.addCleanup(setattr, self.sim, "pdf_render_seconds", self.sim.pdf_render_seconds)
        self.sim.pdf_polls_before_ready, self.sim.pdf_render_seconds = 0, 1.0
        self.account.send_email = True
        self.issue()  # a new customer: its creation is not counted below
        self.sim.requests.clear()
        doc = self.issue()
        self.assertEqual(doc.email_state, "sent")
        polls = [r["status"] for r in self.sim.requests if r["path"].startswith("/api/pdf/")]
        others = [(r["method"], r["path"].split("?")[0]) for r in api_calls(self.sim) if "/api/pdf/" not in r["path"]]
        self.assertEqual(polls, [200], "one PDF poll, answered at once")
        self.assertEqual(
            [m for m, _p in others], ["POST", "PUT", "PUT"], f"create, finalize, e-mail and nothing else: {others}"
        )
        self.assertEqual(len(self.sim.requests) - len(api_calls(self.sim)), 1, "the PDF from its storage link")

    def issue_many(self, count):
        """SQL queries the queue runs to issue ``count`` new orders' documents (PDF included)."""
        orders = [self.confirm(self.make_order(qty=1 + n % 3)) for n in range(count)]
        self.env.flush_all()
        before = queries()
        self.run_queue()
        spent = queries() - before
        for order in orders:
            doc = order.fiscal_document_id
            self.assertEqual((doc.state, doc.pdf_state), ("issued", "done"), doc.last_error)
        return spent

    def test_sql_per_document_stays_flat_with_the_batch(self):
        """Issue 15: a document more in a batch costs its own writes (state, number, PDF, chatter, the
        attempt), not a read of its order, lines, taxes or customer of its own, nor a search per new
        number: what every document reads is read once for the batch."""
        thread = threading.current_thread()
        if not hasattr(thread, "query_count"):
            thread.query_count = 0  # Odoo counts this thread's queries from now on
            self.addCleanup(delattr, thread, "query_count")
        self.issue()  # the customer is known from now on
        small, large = self.issue_many(3), self.issue_many(9)
        per_document = (large - small) / 6
        self.assertLessEqual(per_document, 10, f"{small} queries for 3 documents, {large} for 9")


@tagged("post_install", "-at_install")
class TestCallsVendus(FiscalTestCommon):
    provider = "vendus"

    def test_one_call_per_document_plus_the_pdf(self):
        for _ in range(2):  # a new customer, then a known one: the same
            self.sim.requests.clear()
            order = self.confirm(self.make_order())
            self.run_queue()
            self.assertEqual(order.fiscal_document_id.state, "issued", order.fiscal_document_id.last_error)
            calls = [(r["method"], "output=pdf" in r["path"]) for r in api_calls(self.sim)]
            self.assertEqual(calls, [("POST", False), ("GET", True)], "the document, then its PDF")
