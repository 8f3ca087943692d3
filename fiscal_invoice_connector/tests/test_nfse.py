"""Brazilian NFS-e, the same behaviour through eNotas (REST) and InvoiCy (SOAP)."""

import json

from odoo import fields
from odoo.tests import HttpCase, tagged

from . import test_policies_window
from .common import FiscalTestCommon


class NfseCases:
    def test_pending_authorization_then_number_code_pdf_and_xml(self):
        self.adapter.hold()
        order = self.confirm(self.make_order(qty=1, price=1000.0))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual((doc.state, doc.remote_state), ("sending", "pending"), doc.last_error)
        self.assertFalse(doc.last_error, "waiting for the municipality is not an error")
        self.assertEqual(doc.attempt_count, 0)
        self.assertGreater(doc.next_attempt, fields.Datetime.now(), "read again after the poll interval")
        self.adapter.release()
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        self.assertTrue(doc.number)
        self.assertTrue(doc.atcud, "the verification code is stored")
        self.assertEqual(order.fiscal_number, doc.number)
        self.assertTrue(doc.pdf_attachment_id.raw.startswith(b"%PDF"))
        self.assertIn(b"<", doc.xml_attachment_id.raw[:200])
        self.assertEqual(len(self.final_at_provider(doc)), 1)

    def test_rejected_note_shows_the_reason_and_is_sent_again_after_the_fix(self):
        self.account.service_description = "REJEITAR este serviço"
        order = self.confirm(self.make_order(qty=1))
        doc = order.fiscal_document_id
        self.assertEqual(self.run_until(doc, ("error",)), "error")
        self.assertEqual(doc.remote_state, "rejected")
        self.assertIn("rejected the document", doc.last_error)
        self.assertIn("rejected the document", self.chatter_text(order))
        reference = doc.reference
        self.account.service_description = "Consultoria em sistemas"
        doc.action_retry()
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        self.assertEqual(doc.reference, reference, "the same reference on every attempt")
        self.assertEqual(len(self.final_at_provider(doc)), 1)

    def test_asynchronous_cancellation(self):
        order = self.confirm(self.make_order(qty=1))
        doc = order.fiscal_document_id
        self.run_until(doc, ("issued",))
        doc.action_request_cancel("Serviço não prestado")
        self.assertEqual(self.run_until(doc, ("cancelled",)), "cancelled", doc.last_error)
        self.assertEqual(self.remote_statuses(doc), ["canceled"])
        self.assertIn("cancelled at the provider", self.chatter_text(order))

    def test_invalid_cpf_and_missing_address_in_one_message_before_sending(self):
        partner = self.customer.copy({"vat": "123.456.789-00", "fiscal_district": False})
        order = self.confirm(self.make_order(partner=partner))
        doc = order.fiscal_document_id
        self.run_queue()
        self.assertEqual(doc.state, "error")
        self.assertIn("CPF/CNPJ", doc.last_error)
        self.assertIn("district", doc.last_error)
        self.assertEqual(self.adapter.all_docs(), [], "nothing sent")

    def test_lost_answer_recovered_by_our_reference_without_duplicate(self):
        self.sim.inject("reset", method="POST", when="after")
        order = self.confirm(self.make_order(qty=1))
        doc = order.fiscal_document_id
        self.run_queue()
        self.assertTrue(doc.create_sent)
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)
        self.assertEqual(len(self.adapter.docs_for(doc.reference)), 1, "one note at the provider")

    def test_payment_confirmation_policy(self):
        self.account.trigger = "payment"
        order = self.confirm(self.make_order(qty=1))
        invoice = self.invoice_and_post(order)
        self.assertFalse(invoice.fiscal_document_id)
        self.pay(invoice)
        doc = invoice.fiscal_document_id
        self.assertEqual(self.run_until(doc, ("issued",)), "issued", doc.last_error)

    def test_send_data_only_requests_no_emission(self):
        self.account.mode = "data_only"
        order = self.confirm(self.make_order(qty=1))
        doc = order.fiscal_document_id
        self.run_queue()
        self.assertEqual(doc.state, "registered", doc.last_error)
        self.assertEqual(self.adapter.all_docs(), [])


@tagged("post_install", "-at_install")
class TestNfseEnotas(NfseCases, FiscalTestCommon):
    provider = "enotas"


@tagged("post_install", "-at_install")
class TestNfseInvoicy(NfseCases, FiscalTestCommon):
    provider = "invoicy"


@tagged("post_install", "-at_install")
class TestRefundWindowEnotas(test_policies_window.TestRefundWindowAndRefunds):
    provider = "enotas"


@tagged("post_install", "-at_install")
class TestRefundWindowInvoicy(test_policies_window.TestRefundWindowAndRefunds):
    provider = "invoicy"


@tagged("post_install", "-at_install")
class TestWebhooks(FiscalTestCommon, HttpCase):
    """eNotas notifications over real HTTP: a trigger only, behind a secret URL."""

    provider = "enotas"

    def _post(self, path, body, content_type="application/json"):
        return self.url_open(path, data=body, headers={"Content-Type": content_type}, timeout=20)

    def _pending_doc(self):
        self.account.poll_interval = 600  # only a notification can bring it forward
        self.adapter.hold()
        order = self.confirm(self.make_order(qty=1))
        self.run_queue()
        doc = order.fiscal_document_id
        self.assertEqual(doc.remote_state, "pending")
        return doc

    def _payload(self, doc):
        return json.dumps({"nfeId": doc.remote_id, "nfeIdExterno": doc.reference, "nfeStatus": "Autorizada"})

    def test_valid_notification_wakes_the_document_up(self):
        doc = self._pending_doc()
        self.assertGreater(doc.next_attempt, fields.Datetime.now())
        response = self._post(self._path(), self._payload(doc))
        self.assertEqual(response.status_code, 202)
        self.env.invalidate_all()
        self.assertLessEqual(doc.next_attempt, fields.Datetime.now())
        self.adapter.release()
        self.run_queue()
        self.assertEqual(doc.state, "issued", "read again from the provider, then issued")

    def test_after_the_notification_one_status_read_and_the_files_through_their_links(self):
        doc = self._pending_doc()
        self.sim.requests.clear()
        self.assertEqual(self._post(self._path(), self._payload(doc)).status_code, 202)
        self.adapter.release()
        self.run_queue()
        self.assertEqual((doc.state, doc.pdf_state), ("issued", "done"), doc.last_error)
        api = [(r["method"], r["path"]) for r in self.sim.requests if not r["path"].startswith("/simulator-files/")]
        self.assertEqual(api, [("GET", f"/v1/empresas/{self.account.company_ref}/nfes/{doc.remote_id}")])
        files = [r["path"].rsplit(".", 1)[-1] for r in self.sim.requests if r["path"].startswith("/simulator-files/")]
        self.assertEqual(sorted(files), ["pdf", "xml"], "PDF and XML from the download links (storage)")
        self.assertTrue(doc.pdf_attachment_id.raw.startswith(b"%PDF") and doc.xml_attachment_id)

        # The account is known to notify now: the next note costs its emission and one status read.
        self.sim.requests.clear()
        self.adapter.hold()
        order = self.confirm(self.make_order(qty=2))
        self.run_queue()
        second = order.fiscal_document_id
        self.assertEqual((second.state, second.remote_state), ("sending", "pending"), second.last_error)
        self.assertEqual([r["method"] for r in self.sim.requests], ["POST"], "not read back right after sending")
        self.assertEqual(self._post(self._path(), self._payload(second)).status_code, 202)
        self.adapter.release()
        self.run_queue()
        self.assertEqual((second.state, second.pdf_state), ("issued", "done"), second.last_error)
        api = [r["method"] for r in self.sim.requests if not r["path"].startswith("/simulator-files/")]
        self.assertEqual(api, ["POST", "GET"], "≤ 2 calls per note plus the notification")

    def _path(self, secret=None):
        return f"/fiscal_invoice_connector/webhook/{self.account.id}/{secret or self.account.webhook_secret}"

    def test_forged_secret_is_refused_and_changes_nothing(self):
        doc = self._pending_doc()
        before = doc.next_attempt
        response = self._post(self._path("forged-" + "x" * 20), self._payload(doc))
        self.assertEqual(response.status_code, 404)
        self.assertEqual(
            self._post(
                f"/fiscal_invoice_connector/webhook/99999/{self.account.webhook_secret}", self._payload(doc)
            ).status_code,
            404,
        )
        self.env.invalidate_all()
        self.assertEqual(doc.next_attempt, before)

    def test_malformed_oversized_and_unknown_notifications(self):
        doc = self._pending_doc()
        before = doc.next_attempt
        self.assertEqual(self._post(self._path(), b"{not json").status_code, 400)
        self.assertEqual(self._post(self._path(), json.dumps([1, 2, 3])).status_code, 400)
        self.assertEqual(self._post(self._path(), json.dumps({"nfeId": 12})).status_code, 400)
        self.assertEqual(self._post(self._path(), b"x" * (70 * 1024), "text/plain").status_code, 413)
        unknown = json.dumps({"nfeId": "00000000-dead-beef-0000-000000000000", "nfeIdExterno": "nope"})
        self.assertEqual(self._post(self._path(), unknown).status_code, 404)
        self.env.invalidate_all()
        self.assertEqual((doc.state, doc.next_attempt), ("sending", before))

    def test_replayed_notification_is_harmless(self):
        doc = self._pending_doc()
        self.adapter.release()
        self.run_until(doc, ("issued",))
        number, attempts = doc.number, len(doc.attempt_ids)
        for _ in range(3):
            self.assertEqual(self._post(self._path(), self._payload(doc)).status_code, 202)
        self.run_queue()
        self.assertEqual((doc.state, doc.number, len(doc.attempt_ids)), ("issued", number, attempts))
